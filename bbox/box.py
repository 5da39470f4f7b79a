"""Axis-aligned bounding boxes in float pixel coordinates.

Convention: a pixel with integer index ``i`` covers ``[i, i + 1)``, so a box ``(x0, y0, x1, y1)`` has
``x1``/``y1`` as *exclusive* edges and the tight box of a one-pixel mask at column 3 is ``x0=3, x1=4``.
With this convention width/height are pixel counts and scaling a box with an image (``scale``) is exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BoundingBox:
    """Immutable box ``(x0, y0, x1, y1)``; frozen so boxes can be dict keys and shared without copies."""

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        # Plain Python floats (not numpy scalars or ints) so as_list() is JSON-ready and equality is exact.
        for name in ("x0", "y0", "x1", "y1"):
            object.__setattr__(self, name, float(getattr(self, name)))
        # Fail early on NaN or inverted boxes: they silently poison IoU losses and crops downstream.
        coords = (self.x0, self.y0, self.x1, self.y1)
        if not all(math.isfinite(c) for c in coords):
            raise ValueError(f"BoundingBox coordinates must be finite, got {coords}")
        if self.x1 < self.x0 or self.y1 < self.y0:
            raise ValueError(f"BoundingBox needs x0 <= x1 and y0 <= y1, got {coords}")

    # ------------------------------------------------------------------ geometry
    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        """``(cx, cy)``, the point a square crop or a rotation is built around."""
        return (self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0

    def _intersection_area(self, other: BoundingBox) -> float:
        iw = min(self.x1, other.x1) - max(self.x0, other.x0)
        ih = min(self.y1, other.y1) - max(self.y0, other.y0)
        return max(iw, 0.0) * max(ih, 0.0)

    def iou(self, other: BoundingBox) -> float:
        """Intersection over union in [0, 1]; 0 for two empty boxes (nothing to agree on)."""
        inter = self._intersection_area(other)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def giou(self, other: BoundingBox) -> float:
        """Generalised IoU in [-1, 1]: unlike IoU it still ranks disjoint boxes by how far apart they are,
        which is why box regressors are trained and evaluated with it."""
        inter = self._intersection_area(other)
        union = self.area + other.area - inter
        iou = inter / union if union > 0 else 0.0
        hull = (max(self.x1, other.x1) - min(self.x0, other.x0)) * (max(self.y1, other.y1) - min(self.y0, other.y0))
        if hull <= 0:
            return iou
        return iou - (hull - union) / hull

    # ------------------------------------------------------------------ transforms
    def clip(self, w: float, h: float) -> BoundingBox:
        """Restrict to the image ``[0, w] x [0, h]`` (a box fully outside collapses onto the edge)."""
        x0 = min(max(self.x0, 0.0), w)
        y0 = min(max(self.y0, 0.0), h)
        x1 = min(max(self.x1, 0.0), w)
        y1 = min(max(self.y1, 0.0), h)
        return BoundingBox(x0, y0, x1, y1)

    def spread_to_frame(self, w: float, h: float, within: float) -> BoundingBox:
        """The box stretched edge to edge along each axis where it comes within ``within`` of its own size of both
        frame edges (0: unchanged). A box that nearly spans a photo that way is a watch that fills it, and a crop
        network's box a little inside the frame then cuts off the watch's own edges. An axis with background on
        one side only is left alone: a watch near one edge is not one that fills the photo."""
        if within <= 0:
            return self
        x0, y0, x1, y1 = self.x0, self.y0, self.x1, self.y1
        if x0 < within * self.width and w - x1 < within * self.width:
            x0, x1 = 0.0, float(w)
        if y0 < within * self.height and h - y1 < within * self.height:
            y0, y1 = 0.0, float(h)
        return BoundingBox(x0, y0, x1, y1)

    def scale(self, sx: float, sy: float | None = None) -> BoundingBox:
        """Scale coordinates, e.g. to follow an image resize by ``(new_w / w, new_h / h)``."""
        sy = sx if sy is None else sy
        if sx < 0 or sy < 0:
            raise ValueError("scale factors must be non-negative")
        return BoundingBox(self.x0 * sx, self.y0 * sy, self.x1 * sx, self.y1 * sy)

    def to_square(self, pad: float = 0.1, w: float | None = None, h: float | None = None) -> BoundingBox:
        """Square box around the centre, side = longer side * (1 + 2 * pad) (``pad`` of the longer side on
        each side), so the embedding network sees the whole watch undistorted with a little context.

        With an image size ``w, h`` the square is shifted to lie inside the image where it fits; if the
        padded square is larger than the image's shorter side the padding is reduced (never below the box's
        own longer side). A square that still cannot fit (a very elongated box) stays centred on the box on
        the overflowing axis and :meth:`crop` pads it by edge replication.
        """
        if pad < 0:
            raise ValueError("pad must be >= 0")
        longer = max(self.width, self.height)
        side = longer * (1.0 + 2.0 * pad)
        cx, cy = self.center
        if w is None or h is None:
            if w is not None or h is not None:
                raise ValueError("give both w and h, or neither")
            return BoundingBox(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
        side = max(longer, min(side, float(min(w, h))))
        x0 = _place_interval(cx - side / 2, side, float(w))
        y0 = _place_interval(cy - side / 2, side, float(h))
        return BoundingBox(x0, y0, x0 + side, y0 + side)

    def normalized(self, w: float, h: float) -> BoundingBox:
        """Coordinates as fractions of the image size (0..1), the resolution-free form a regressor predicts."""
        return BoundingBox(self.x0 / w, self.y0 / h, self.x1 / w, self.y1 / h)

    def denormalized(self, w: float, h: float) -> BoundingBox:
        """Inverse of :meth:`normalized`: fractions back to pixels of a ``w x h`` image."""
        return BoundingBox(self.x0 * w, self.y0 * h, self.x1 * w, self.y1 * h)

    # ------------------------------------------------------------------ conversions
    @classmethod
    def from_mask(cls, mask: np.ndarray) -> BoundingBox:
        """Tight box of the True pixels of a 2-D mask (exclusive right/bottom edges)."""
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            raise ValueError("mask is empty: no True pixel to box")
        cols = np.flatnonzero(mask.any(axis=0))
        return cls(float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))

    def as_list(self) -> list[float]:
        """``[x0, y0, x1, y1]`` for JSON files and tensors."""
        return [self.x0, self.y0, self.x1, self.y1]

    @classmethod
    def from_list(cls, values: Sequence[float]) -> BoundingBox:
        """Inverse of :meth:`as_list` (accepts any length-4 sequence or array)."""
        if len(values) != 4:
            raise ValueError(f"expected 4 values [x0, y0, x1, y1], got {len(values)}")
        return cls(*(float(v) for v in values))

    def crop(self, image: np.ndarray) -> np.ndarray:
        """Pixels under the box (coordinates rounded to the pixel grid). Parts outside the image are filled
        by replicating the edge, so the crop always has the box's size and a square box gives a square
        crop, whatever the box's position."""
        if image.ndim < 2 or image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"cannot crop an image of shape {image.shape}")
        # Round the origin and the size, not each edge: equal sides stay equal (x0=0.5, x1=160.6 would
        # otherwise give 160 columns against 161 rows for a square box).
        x0, y0 = round(self.x0), round(self.y0)
        x1 = x0 + max(round(self.width), 1)
        y1 = y0 + max(round(self.height), 1)
        h, w = image.shape[:2]
        if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
            return image[y0:y1, x0:x1].copy()
        rows = np.clip(np.arange(y0, y1), 0, h - 1)
        cols = np.clip(np.arange(x0, x1), 0, w - 1)
        return image[np.ix_(rows, cols)]


def _place_interval(start: float, length: float, limit: float) -> float:
    """Shift ``[start, start + length)`` into ``[0, limit]`` if it fits; otherwise leave it centred."""
    if length > limit:
        return start
    return min(max(start, 0.0), limit - length)
