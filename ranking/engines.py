"""Inference engines: the same torch weights run by torch (GPU, or CPU fallback) or ONNX Runtime (CPU).

On two CPU cores ONNX Runtime runs EfficientNet-Lite2 several times faster than eager torch. The ONNX graph is
exported from the very module torch runs, for one fixed input size (TF-"same" padding is baked in at export
time, so a graph exported for 260 px must never see another size), and cached on disk by a key of the weights
and size.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "onnx")


def onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_engine(engine: str, device: torch.device) -> str:
    """``auto``: ONNX Runtime on CPU when installed, torch otherwise (always torch on CUDA)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; use one of {ENGINES}")
    if engine == "onnx" and device.type != "cpu":
        raise ValueError("the onnx engine runs on the CPU; use --engine torch with --device cuda")
    if engine == "onnx" and not onnx_available():
        raise ValueError("--engine onnx needs onnxruntime: pip install 'tiefwatch[onnx]'")
    if engine == "auto":
        return "onnx" if device.type == "cpu" and onnx_available() else "torch"
    return engine


class TorchEngine:
    """Eager torch; channels-last memory is ~2x faster for depthwise convolutions on CPU."""

    def __init__(self, module: nn.Module, device: torch.device) -> None:
        self.device = device
        current = next(module.parameters(), None)
        if current is not None and current.device != device:
            # The cached backbone is shared (embedder, crop trunk): moving it would pull it from under the others.
            module = copy.deepcopy(module)
        self.module = module.to(device).eval()
        if device.type == "cpu":
            self.module = self.module.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        tensor = torch.from_numpy(batch).to(self.device)
        if self.device.type == "cpu":
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        outputs = self.module(tensor)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return [out.float().contiguous().cpu().numpy() for out in outputs]


class OnnxEngine:
    """ONNX Runtime session over an export of ``module`` for ``3 x size x size`` inputs (any batch)."""

    def __init__(self, module: nn.Module, size: int, cache_dir: Path | None, key: str, threads: int = 0) -> None:
        import onnxruntime as ort

        self.size = size
        path = self._export(module, size, cache_dir, key)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    @staticmethod
    def _export(module: nn.Module, size: int, cache_dir: Path | None, key: str) -> Path:
        digest = hashlib.sha256(f"{key}|{size}|{torch.__version__}".encode()).hexdigest()[:16]
        folder = cache_dir or Path(tempfile.gettempdir()) / "tiefwatch-onnx"
        path = folder / f"{digest}.onnx"
        if path.exists():
            return path
        folder.mkdir(parents=True, exist_ok=True)
        log.info("exporting %s to ONNX at %d px (once)", key, size)
        example = torch.zeros(2, 3, size, size)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".onnx.tmp")
        os.close(fd)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module.cpu().eval(),
                    example,
                    tmp,
                    input_names=["images"],
                    dynamic_axes={"images": {0: "batch"}},
                    opset_version=17,
                    dynamo=False,
                )
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return path

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        if batch.shape[-1] != self.size or batch.shape[-2] != self.size:
            raise ValueError(f"this ONNX graph takes {self.size} px inputs, got {batch.shape[-2:]}")
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})


class FeatureMapModule(nn.Module):
    """``forward_features`` as ``forward``, so the backbone exports as a feature-map graph."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(images)


def make_engine(
    module: nn.Module, size: int, device: torch.device, engine: str, cache_dir: Path | None, key: str
) -> TorchEngine | OnnxEngine:
    if resolve_engine(engine, device) == "onnx":
        return OnnxEngine(module, size, cache_dir, key)
    return TorchEngine(module, device)
