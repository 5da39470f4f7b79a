"""Inference engines: the same torch weights run by torch (GPU, or CPU fallback) or ONNX Runtime (CPU).

On two CPU cores ONNX Runtime runs EfficientNet-Lite2 about four times faster than eager torch. The ONNX graph
is exported once from the very module torch runs, for one image of one fixed size (TF-"same" padding is baked
in at export time, so a graph exported for 260 px must never see another size; a static batch of one measured
15-20 % faster than a dynamic batch, and batching bought nothing on two cores), and cached on disk by a key of
the weights and size.

A cached graph is opened without importing torch: that is what lets a fresh ``tiefwatch search`` process
answer in about a second instead of spending five seconds importing torch and timm. The module is therefore
passed as a factory, called only when the graph has to be exported (or torch runs it).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "onnx")
EXPORT_FORMAT = "static-batch-1"  # part of the cache key: graphs cached by older exports are not reused

ModuleFactory = Callable[[], "nn.Module"]


def onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_engine(engine: str, device: str) -> str:
    """``auto``: ONNX Runtime on CPU when installed, torch otherwise (always torch on CUDA)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; use one of {ENGINES}")
    on_cpu = str(device) == "cpu"
    if engine == "onnx" and not on_cpu:
        raise ValueError("the onnx engine runs on the CPU; use --engine torch with --device cuda")
    if engine == "onnx" and not onnx_available():
        raise ValueError("--engine onnx needs onnxruntime: pip install 'tiefwatch[onnx]'")
    if engine == "auto":
        return "onnx" if on_cpu and onnx_available() else "torch"
    return engine


def cpu_threads() -> int:
    """Cores this process may use (a container's affinity, not the host's count), or ``TIEFWATCH_THREADS`` where
    set (a Ray actor given one core of a node: ``tiefwatch.distributed``)."""
    chosen = os.environ.get("TIEFWATCH_THREADS", "")
    if chosen.isdigit() and int(chosen) > 0:
        return int(chosen)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class TorchEngine:
    """Eager torch; channels-last memory is ~2x faster for depthwise convolutions on CPU."""

    def __init__(self, module: nn.Module, device: str | torch.device) -> None:
        import torch

        self.device = torch.device(device)
        current = next(module.parameters(), None)
        if current is not None and current.device != self.device:
            # The cached backbone is shared (embedder, crop trunk): moving it would pull it from under the others.
            module = copy.deepcopy(module)
        self.module = module.to(self.device).eval()
        if self.device.type == "cpu":
            self.module = self.module.to(memory_format=torch.channels_last)

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            tensor = torch.from_numpy(batch).to(self.device)
            if self.device.type == "cpu":
                tensor = tensor.contiguous(memory_format=torch.channels_last)
            outputs = self.module(tensor)
            if isinstance(outputs, torch.Tensor):
                outputs = (outputs,)
            return [out.float().contiguous().cpu().numpy() for out in outputs]


def onnx_cache_path(cache_dir: Path | None, key: str, size: int) -> Path:
    """Where the graph for ``key`` at ``size`` px lives; the torch version is read from package metadata, so
    finding a cached graph never imports torch."""
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - torch is a dependency
        torch_version = "unknown"
    digest = hashlib.sha256(f"{key}|{size}|{torch_version}|{EXPORT_FORMAT}".encode()).hexdigest()[:16]
    return (cache_dir or Path(tempfile.gettempdir()) / "tiefwatch-onnx") / f"{digest}.onnx"


def write_cache_file(path: Path, data: bytes) -> None:
    """Write a cache entry atomically: a reader sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def export_onnx(module: nn.Module, size: int, path: Path) -> Path:
    """Export ``module`` for one ``3 x size x size`` image, written atomically (a killed export leaves nothing)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("exporting to ONNX at %d px (once): %s", size, path.name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.cpu().eval(),
                torch.zeros(1, 3, size, size),
                tmp,
                input_names=["images"],
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


class OnnxEngine:
    """ONNX Runtime session over a cached export for ``3 x size x size`` images; any number per call."""

    def __init__(self, module: ModuleFactory, size: int, cache_dir: Path | None, key: str, threads: int = 0) -> None:
        import onnxruntime as ort

        self.size = size
        path = onnx_cache_path(cache_dir, key, size)
        if not path.exists():
            export_onnx(module(), size, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Spinning worker threads keep a core busy after each run: with two sessions (crop, embed) or numpy work
        # between runs on two cores, that doubled the time of every run (measured 45 ms against 21 ms).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        if batch.shape[-1] != self.size or batch.shape[-2] != self.size:
            raise ValueError(f"this ONNX graph takes {self.size} px inputs, got {batch.shape[-2:]}")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        runs = [self.session.run(None, {self.input_name: batch[i : i + 1]}) for i in range(len(batch))]
        return [np.concatenate(outputs) for outputs in zip(*runs, strict=True)]


def feature_map_module(backbone: nn.Module) -> nn.Module:
    """``forward_features`` as ``forward``, so the backbone exports as a feature-map graph."""
    from torch import nn

    class FeatureMapModule(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.backbone.forward_features(images)

    return FeatureMapModule()


def make_engine(
    module: ModuleFactory, size: int, device: str, engine: str, cache_dir: Path | None, key: str
) -> TorchEngine | OnnxEngine:
    """The engine ``engine`` resolves to. ``module`` is a factory, called only if torch runs the module or the
    ONNX graph is not cached yet."""
    if resolve_engine(engine, device) == "onnx":
        return OnnxEngine(module, size, cache_dir, key)
    return TorchEngine(module(), device)
