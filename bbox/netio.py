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


PEAK_RADIUS = 2  # cells around a heat peak whose boxes are averaged into its box


def decode(heat_logits: np.ndarray, boxes: np.ndarray, agree: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Per image: the box of the highest heat peak (``decode_peaks``), and that peak's heat.

    Returns boxes (N,4) in 0..1 letterbox coordinates and confidences (N,).
    """
    peaks = decode_peaks(heat_logits, boxes, agree=agree, ratio=1.0, limit=1)
    out = np.array([found[0][0] for found in peaks], np.float32).reshape(-1, 4)
    return out, np.array([found[0][1] for found in peaks], np.float32)


def decode_peaks(
    heat_logits: np.ndarray, boxes: np.ndarray, agree: float = 0.5, ratio: float = 0.5, limit: int = 3
) -> list[list[tuple[np.ndarray, float]]]:
    """Per image: up to ``limit`` (box, heat) pairs, highest first, one per local maximum of the heat map whose
    heat is at least ``ratio`` of the highest.

    A peak's box is averaged over the cells within ``PEAK_RADIUS`` of it whose heat is within ``agree`` of the
    peak's, so one bad cell cannot throw the crop. Averaging over the whole map instead (as before) blended two
    distant peaks into a box on neither: 2 of the 300 benchmark photos lost their watch that way.
    """
    n = heat_logits.shape[0]
    h, w = heat_logits.shape[-2:]
    heat = 1.0 / (1.0 + np.exp(-heat_logits.reshape(n, h, w).astype(np.float64)))
    flat = boxes.reshape(n, 4, h, w).astype(np.float64)
    padded = np.pad(heat, ((0, 0), (1, 1), (1, 1)), constant_values=-1.0)
    local_max = np.ones(heat.shape, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                local_max &= heat >= padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
    out: list[list[tuple[np.ndarray, float]]] = []
    for i in range(n):
        candidates = np.flatnonzero(local_max[i].ravel())
        candidates = candidates[np.argsort(-heat[i].ravel()[candidates], kind="stable")]
        top = heat[i].ravel()[candidates[0]]
        found: list[tuple[np.ndarray, float]] = []
        taken = np.zeros((h, w), bool)
        for cell in candidates:
            y, x = divmod(int(cell), w)
            peak = heat[i, y, x]
            if len(found) >= limit or peak < ratio * top:
                break
            if taken[y, x]:
                continue  # a plateau's second cell: the same peak
            y0, y1, x0, x1 = max(0, y - PEAK_RADIUS), y + PEAK_RADIUS + 1, max(0, x - PEAK_RADIUS), x + PEAK_RADIUS + 1
            window = heat[i, y0:y1, x0:x1]
            weights = np.where(window >= agree * peak, window, 0.0)
            box = (flat[i, :, y0:y1, x0:x1] * weights).sum(axis=(1, 2)) / max(weights.sum(), 1e-12)
            taken[y0:y1, x0:x1] = True
            found.append((box.astype(np.float32), float(peak)))
        out.append(found)
    return out
