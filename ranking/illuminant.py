"""The room's light, judged from around the watch, so a gold case stays gold under a lamp and steel stays steel in
shade.

A crop's own colours cannot tell a gold watch in daylight from a steel one under a tungsten lamp: the percentile
white balance the backbone's input gets (``ranking.features.normalise_light``) maps the brightest pixels to white,
which turns both into the same pale metal. The photo around the watch can: a room's surfaces and edges average
out to grey under neutral light (grey-edge, Van de Weijer et al. 2007), and to the lamp's colour under a lamp.
Only the warm-cool (orange-blue) axis is corrected, because a room's light lies near the black-body locus; a
green or magenta tint is more often the surroundings' own colour (grass, a sofa) than the light's.
"""

from __future__ import annotations

import cv2
import numpy as np

MIN_CONTEXT = 0.15  # share of the photo that must lie around the box before the light is judged from it
MAX_LOG_SHIFT = float(np.log(3.0))  # no room light is warmer or cooler than this (red/blue ratio 3)
NORM_P = 6.0  # Minkowski norm of the grey-edge estimate: between the mean (1) and the max (inf), as the paper
# The estimate is noisy (a wooden table or a wrist reads warm): shifts within DEAD_ZONE are left alone and larger
# ones corrected by STRENGTH of what lies beyond it. On simulated photos the residual cast went 0.36 -> 0.25 under
# lamps and 0.116 -> 0.109 in the standard envelope (full correction: 0.20 and 0.19; docs/benchmarks.md).
DEAD_ZONE = 0.2
STRENGTH = 0.7


def warm_cool_shift(image: np.ndarray, box: tuple[float, float, float, float] | None = None) -> float | None:
    """log(red / blue) of the light falling on the photo, from the edges outside ``box`` (x0, y0, x1, y1);
    None where too little of the photo lies outside the box to say."""
    small, scale = _working_copy(image)
    h, w = small.shape[:2]
    outside = np.ones((h, w), bool)
    if box is not None:
        x0, y0, x1, y1 = (round(float(v) * scale) for v in box)
        outside[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = False
    if outside.mean() < MIN_CONTEXT:
        return None
    pixels = cv2.GaussianBlur(small.astype(np.float32), (0, 0), 1.0)
    gx = cv2.Sobel(pixels, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(pixels, cv2.CV_32F, 0, 1, ksize=3)
    brightest = small.max(axis=2)
    usable = outside & (brightest < 250) & (brightest > 12)  # clipped and black pixels lie
    if usable.sum() < 64:
        return None
    # |gradient| ** 6 as (gx² + gy²) ** 3: no square root and no float power over the photo
    squared = gx[usable] ** 2 + gy[usable] ** 2
    strength = (squared * squared * squared).astype(np.float64).mean(axis=0) ** (1.0 / NORM_P)
    if strength.min() <= 1e-3:
        return None
    return float(np.clip(np.log(strength[0] / strength[2]), -MAX_LOG_SHIFT, MAX_LOG_SHIFT))


def light_correction(image: np.ndarray, box: tuple[float, float, float, float] | None) -> float:
    """The warm-cool shift to take out of a query photo: the estimate shrunk towards none (``DEAD_ZONE``,
    ``STRENGTH``), 0 where the photo around the box cannot tell, and without a box: a photo that may be all watch
    would have the watch's own colour taken for the light's."""
    shift = None if box is None else warm_cool_shift(image, box)
    if shift is None:
        return 0.0
    return float(np.sign(shift) * max(0.0, abs(shift) - DEAD_ZONE) * STRENGTH)


def correct_warm_cool(image: np.ndarray, shift: float | None) -> np.ndarray:
    """``image`` with a light of ``log(red / blue) = shift`` turned neutral: red and blue gains about green,
    brightness kept; unchanged for None or no shift."""
    if shift is None or abs(shift) < 1e-3:
        return image
    gains = np.array([np.exp(-shift / 2), 1.0, np.exp(shift / 2)], np.float32)
    gains /= gains.mean()
    table = np.clip(np.arange(256, dtype=np.float32)[:, None] * gains[None, :], 0, 255).astype(np.uint8)
    return cv2.LUT(np.ascontiguousarray(image), table.reshape(256, 1, 3))


def _working_copy(image: np.ndarray, side: int = 256) -> tuple[np.ndarray, float]:
    """The photo at about ``side`` pixels on its long side: the light needs no detail, a 12 MP photo no time."""
    h, w = image.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale >= 1.0:
        return image, 1.0
    step = max(1, max(h, w) // (2 * side))  # every step-th pixel first: an area filter over 12 MP costs 20 ms
    sampled = image[::step, ::step]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(sampled, size, interpolation=cv2.INTER_AREA), scale
