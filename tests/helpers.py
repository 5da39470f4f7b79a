"""Small images made in code for tests, and where the shared dev catalogue lives."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SHARED_CATALOG = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "watch-catalog-dev"


def draw_watch(seed: int, size: int = 96) -> np.ndarray:
    """A crude watch on white: coloured case, dial, strap; different seeds give different watches."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 255, np.uint8)
    strap = tuple(int(c) for c in rng.integers(0, 200, 3))
    case = tuple(int(c) for c in rng.integers(0, 255, 3))
    dial = tuple(int(c) for c in rng.integers(0, 255, 3))
    c = size // 2
    cv2.rectangle(image, (c - size // 8, 0), (c + size // 8, size), strap, -1)
    if seed % 2:
        cv2.circle(image, (c, c), size // 3, case, -1)
        cv2.circle(image, (c, c), size // 4, dial, -1)
    else:
        cv2.rectangle(image, (c - size // 3, c - size // 3), (c + size // 3, c + size // 3), case, -1)
        cv2.rectangle(image, (c - size // 4, c - size // 4), (c + size // 4, c + size // 4), dial, -1)
    cv2.line(image, (c, c), (c + size // 6, c - size // 8), (10, 10, 10), 2)
    return image


def draw_catalog_watch(size: int = 128, background: int = 255) -> np.ndarray:
    """A watch on white as a shop photographs it: dark case ring around a *white* dial, straps above and below
    (not touching the frame), a dark hand on the dial."""
    image = np.full((size, size, 3), background, np.uint8)
    c = size // 2
    cv2.rectangle(image, (c - 12, 8), (c + 12, size - 9), (60, 40, 30), -1)  # strap
    cv2.circle(image, (c, c), 34, (40, 40, 45), -1)  # case
    cv2.circle(image, (c, c), 27, (252, 252, 250), -1)  # white dial, nearly the background colour
    cv2.line(image, (c, c), (c + 15, c - 10), (20, 20, 20), 2)  # hand
    return image


def on_unevenly_lit_desk(size: int = 256) -> np.ndarray:
    """``draw_catalog_watch``'s watch small on a white desk whose light falls off towards one corner (238 levels
    there, about 186 in the other), as a phone photographs it."""
    from bbox.segment import product_mask

    yy, xx = np.mgrid[0:size, 0:size]
    light = 238.0 * (1.0 - 0.22 * (xx + yy) / (2 * size))
    photo = np.repeat(light[..., None], 3, axis=2)
    watch = draw_catalog_watch()
    at = size // 2 - 64
    region = photo[at : at + 128, at : at + 128]
    mask = product_mask(watch)
    region[mask] = watch[mask]
    return photo.round().astype(np.uint8)
