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
