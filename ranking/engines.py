"""Inference engines: the same torch weights run by torch (GPU, or CPU fallback) or ONNX Runtime (CPU).

On two CPU cores ONNX Runtime runs EfficientNet-Lite2 about four times faster than eager torch. The ONNX graph
is exported once from the very module torch runs, for images of one fixed size (TF-"same" padding is baked in at
export time, so a graph exported for 260 px must never see another size) and any number of them, and cached on
disk by a key of the weights and size. A query's three crops and a catalogue batch each go through in one run
(``batch_free``; the crop graph too): a run of three took 6-9 % less a picture than three runs of one, a run of
sixteen 9-13 % less (docs/benchmarks.md, session 13).

A cached graph is opened without importing torch: that is what lets a fresh ``tiefwatch search`` process
answer in about a second instead of spending five seconds importing torch and timm. The module is therefore
passed as a factory, called only when the graph has to be exported (or torch runs it).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import logging
import os
import platform
import re
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "onnx")
EXPORT_FORMAT = "dynamic-batch"  # part of the cache key: graphs cached by older exports are not reused
RUN_BATCH = 16  # pictures per ONNX Runtime run: 9-13 % less a picture than one at a time; bounds activation memory

ModuleFactory = Callable[[], "nn.Module"]
# Building a module and exporting a graph, one thread at a time: a searcher opens its crop model and its backbone
# side by side, and ``torch.onnx.export`` keeps process-wide state while it traces.
TORCH_LOCK = threading.RLock()


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


@functools.lru_cache(maxsize=1)
def torch_release() -> str:
    """The installed torch's release (``2.14.1``, no local build tag), read from its ``version.py`` without importing
    torch: ``importlib.metadata`` scans every installed package's metadata, 60 ms of a fresh search process."""
    spec = importlib.util.find_spec("torch")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        try:
            text = (Path(folder) / "version.py").read_text(encoding="utf-8")
        except OSError:
            continue
        found = re.search(r"^__version__\s*=\s*['\"]([^'\"+]+)", text, re.MULTILINE)
        if found:
            return found.group(1)
    from importlib import metadata  # an unusual install without version.py

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:  # pragma: no cover - torch is a dependency
        return "unknown"


def onnx_cache_path(cache_dir: Path | None, key: str, size: int) -> Path:
    """Where the graph for ``key`` at ``size`` px lives; the torch release is read from torch's files
    (``torch_release``), so finding a cached graph never imports torch."""
    digest = hashlib.sha256(f"{key}|{size}|{torch_release()}|{EXPORT_FORMAT}".encode()).hexdigest()[:16]
    return (cache_dir or Path(tempfile.gettempdir()) / "tiefwatch-onnx") / f"{digest}.onnx"


STALE_TEMP_SECONDS = 3600.0  # a cache temp this old is a killed writer's: an export takes a minute or two


def remove_stale_cache_temps(folder: Path, older_than: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Remove what killed writers of this module left in a cache folder (``tmp*.tmp`` files of
    ``write_cache_file`` and the runtime's optimised copies, ``.export-*`` folders of ``export_onnx``) once older than
    ``older_than`` seconds; returns what was removed. Other files in the folder are never touched."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        ours = (entry.name.startswith("tmp") and entry.name.endswith(".tmp")) or entry.name.startswith(".export-")
        try:
            if not ours or now - entry.stat(follow_symlinks=False).st_mtime < older_than:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:  # removed meanwhile by another process, or not ours to remove
            continue
        removed.append(Path(entry.path))
    if removed:
        log.info("removed %d leftover(s) of interrupted cache writes in %s", len(removed), folder)
    return removed


def write_cache_file(path: Path, data: bytes) -> None:
    """Write a cache entry atomically: a reader sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="tmp", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def export_onnx(module: nn.Module, size: int, path: Path) -> Path:
    """Export ``module`` for ``3 x size x size`` images, any number at once where ``batch_free`` can make the
    graph so (else one at a time), written atomically (a killed export leaves nothing)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("exporting to ONNX at %d px (once): %s", size, path.name)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as work:
        static = Path(work) / "static.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # One picture of a fixed size: the exporter writes timm's TF-"same" padding as arithmetic on the input's
            # shape, which only folds to constants where every dimension is known (a graph exported with a free
            # batch kept that arithmetic and ran 30-40 % slower).
            torch.onnx.export(
                module.cpu().eval(),
                torch.zeros(1, 3, size, size),
                str(static),
                input_names=["images"],
                opset_version=17,
                dynamo=False,
            )
        batched = batch_free(static, Path(work))
        write_cache_file(path, batched if batched is not None else static.read_bytes())
    return path


def batch_free(static: Path, work: Path) -> bytes | None:
    """The one-picture graph at ``static`` with its constants folded and its batch dimension left free, or None
    where that changes what it computes (checked on two pictures against the one-picture graph)."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    folded = work / "folded.onnx"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # portable: standard ops only
    options.optimized_model_filepath = str(folded)
    options.log_severity_level = 3
    reference = ort.InferenceSession(str(static), options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(folded))
    constants = {tensor.name: tensor for tensor in model.graph.initializer}
    inferred = onnx.shape_inference.infer_shapes(model).graph
    shapes = {
        value.name: [dim.dim_value for dim in value.type.tensor_type.shape.dim]
        for value in [*inferred.value_info, *inferred.input]
    }
    for node in model.graph.node:
        if node.op_type == "Reshape":
            shape = constants.get(node.input[1])
            if shape is None:
                return None  # a shape computed at run time: leave the graph as exported
            values = numpy_helper.to_array(shape).copy()
            if len(values) and values[0] == 1:
                values[0] = 0  # 0 copies the input's dimension: the batch, whatever its size
                shape.CopyFrom(numpy_helper.from_array(values, shape.name))
        elif node.op_type == "Resize" and len(node.input) > 3 and node.input[3]:
            # Sizes name a batch of one (the crop head's upsampling); the same sizes as scales hold for any batch.
            sizes, source = constants.get(node.input[3]), shapes.get(node.input[0])
            if sizes is None or not source or 0 in source:
                return None
            scales = (numpy_helper.to_array(sizes) / np.asarray(source, np.float64)).astype(np.float32)
            name = f"{node.input[3]}/as_scales"
            model.graph.initializer.append(numpy_helper.from_array(scales, name))
            node.input[2], node.input[3] = name, ""
    for value in [model.graph.input[0], *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del model.graph.value_info[:]  # shapes inferred for one picture
    data = model.SerializeToString()
    quiet = ort.SessionOptions()
    quiet.log_severity_level = 3  # the sizes a Resize no longer reads are dropped with a warning
    try:
        batched = ort.InferenceSession(data, quiet, providers=["CPUExecutionProvider"])
        name = reference.get_inputs()[0].name
        pictures = np.random.default_rng(0).normal(size=(2, *reference.get_inputs()[0].shape[1:])).astype(np.float32)
        together = batched.run(None, {name: pictures})
        apart = [reference.run(None, {name: pictures[i : i + 1]}) for i in range(2)]
    except Exception as error:  # any failure means: keep the graph as exported
        log.info("kept the one-picture graph: %s", error)
        return None
    for joint, *single in zip(together, *apart, strict=True):
        if joint.shape[0] != 2 or not np.allclose(joint, np.concatenate(single), rtol=1e-4, atol=1e-4):
            return None
    return data


def optimised_cache_path(path: Path) -> Path:
    """Where ONNX Runtime's fully optimised form of the graph at ``path`` is kept for this machine: the layout it
    chooses depends on the runtime's version and the CPU's instruction sets, so both name the file."""
    import onnxruntime as ort

    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:  # not Linux: the machine's name stands in
        pass
    digest = hashlib.sha256(f"{ort.__version__}|{platform.machine()}|{flags}".encode()).hexdigest()[:12]
    return path.with_name(f"{path.stem}.{digest}.optimised.onnx")


def _open_optimised(ort: Any, path: Path, options: Any) -> Any:
    """A session over ``path`` fully optimised. The first opening on a machine saves the optimised graph beside it
    (temp file, then rename); later ones open that without optimising again: a fresh process's two sessions
    opened in about 35 ms instead of 105 (docs/benchmarks.md, session 13)."""
    optimised = optimised_cache_path(path)
    if optimised.exists():
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return ort.InferenceSession(str(optimised), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # a damaged cache file: optimise from the export again
            log.info("re-optimising %s: %s", path.name, error)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="tmp", suffix=".optimised.tmp")
    except OSError:  # a read-only cache: optimise on every opening
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    os.close(fd)
    try:
        options.optimized_model_filepath = tmp
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        if Path(tmp).stat().st_size:
            os.replace(tmp, optimised)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return session


class OnnxEngine:
    """ONNX Runtime session over a cached export for ``3 x size x size`` images; any number per call."""

    def __init__(self, module: ModuleFactory, size: int, cache_dir: Path | None, key: str, threads: int = 0) -> None:
        import onnxruntime as ort

        self.size = size
        path = onnx_cache_path(cache_dir, key, size)
        remove_stale_cache_temps(path.parent)
        if not path.exists():
            with TORCH_LOCK:
                if not path.exists():
                    export_onnx(module(), size, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_threads()
        options.log_severity_level = 3
        # Spinning worker threads keep a core busy after each run: with two sessions (crop, embed) or numpy work
        # between runs on two cores, that doubled the time of every run (measured 45 ms against 21 ms).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = _open_optimised(ort, path, options)
        self.input_name = self.session.get_inputs()[0].name
        batch = self.session.get_inputs()[0].shape[0]
        self.run_batch = RUN_BATCH if not isinstance(batch, int) else max(1, batch)

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        if batch.shape[-1] != self.size or batch.shape[-2] != self.size:
            raise ValueError(f"this ONNX graph takes {self.size} px inputs, got {batch.shape[-2:]}")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        runs = [
            self.session.run(None, {self.input_name: batch[i : i + self.run_batch]})
            for i in range(0, len(batch), self.run_batch)
        ]
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
    with TORCH_LOCK:
        return TorchEngine(module(), device)
