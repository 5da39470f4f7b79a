"""What goes into the crop network and what comes out, in numpy: the letterboxed input, its normalisation, and
the box read from the output grid. Kept apart from the torch modules so a cached ONNX crop graph runs without
importing torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

LETTERBOX_VALUE = 128  # mid grey: neither the white of a catalogue nor the dark of a room


@dataclass(frozen=True)
class CropNetSpec:
    """What a crop checkpoint needs to rebuild its network."""

    backbone: str = "efficientnet_lite2"
    input_size: int = 256
    width: int = 64
    c4_stage: int = 4  # timm block index whose output is the stride-16 map
    c3_stage: int = -1  # block index of a stride-8 map folded into the 16x16 grid (-1: none)
    tower_layers: int = 1

    def as_dict(self) -> dict:
        return asdict(self)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize the long side to ``size`` and pad to a square; returns the image, the scale and the (x, y) offset."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.full((size, size, 3), LETTERBOX_VALUE, np.uint8)
    ox, oy = (size - nw) // 2, (size - nh) // 2
    out[oy : oy + nh, ox : ox + nw] = resized
    return out, scale, (ox, oy)


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 NxHxWx3 -> float32 Nx3xHxW with mean = std = 0.5 (the backbone's training normalisation)."""
    return np.ascontiguousarray(((images.astype(np.float32) / 127.5) - 1.0).transpose(0, 3, 1, 2))


def decode(heat_logits: np.ndarray, boxes: np.ndarray, agree: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Per image: the box averaged over cells whose heat is within ``agree`` of the peak, and the peak heat.

    Returns boxes (N,4) in 0..1 letterbox coordinates and confidences (N,).
    """
    n = heat_logits.shape[0]
    heat = 1.0 / (1.0 + np.exp(-heat_logits.reshape(n, -1).astype(np.float64)))
    flat = boxes.reshape(n, 4, -1)
    peak = heat.max(axis=1)
    out = np.zeros((n, 4), np.float64)
    for i in range(n):
        weights = np.where(heat[i] >= agree * peak[i], heat[i], 0.0)
        out[i] = (flat[i] * weights).sum(axis=1) / max(weights.sum(), 1e-12)
    return out.astype(np.float32), peak.astype(np.float32)
