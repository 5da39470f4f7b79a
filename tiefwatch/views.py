"""Training views for photo invariance: photo-like shots of catalogue watches, framed as a query would be.

The crop model's boxes are off by a few percent, so a view is cut around the true box moved and resized by a
random ``jitter``; the network then learns to match loose crops too. Catalogue photos are framed by their
product cut-out, as ``tiefwatch index`` frames them.
"""

from __future__ import annotations

import numpy as np

from bbox.box import BoundingBox
from bbox.conditions import ConditionSimulator, cut_to_watch
from bbox.segment import product_box, segment_product
from bbox.synth import PhotoSimulator

CUT_MARGIN = (-0.03, 0.06)  # a cut photo's sides: from 3 % into the watch to 6 % of background beyond it


def jittered(box: BoundingBox, rng: np.random.Generator, jitter: float) -> BoundingBox:
    """``box`` moved by up to ``jitter`` of its size and resized by up to ``1 +- jitter`` (uniform)."""
    scale = float(rng.uniform(1 - jitter, 1 + jitter))
    cx, cy = box.center
    cx += float(rng.uniform(-jitter, jitter)) * box.width
    cy += float(rng.uniform(-jitter, jitter)) * box.height
    half_w, half_h = box.width * scale / 2, box.height * scale / 2
    return BoundingBox(cx - half_w, cy - half_h, cx + half_w, cy + half_h)


def square_crop(image: np.ndarray, box: BoundingBox, pad: float) -> np.ndarray:
    h, w = image.shape[:2]
    return box.to_square(pad=pad, w=w, h=h).crop(image)


def catalogue_crop(image: np.ndarray, pad: float) -> np.ndarray:
    """A catalogue photo framed by its product cut-out (the whole photo where it has no plain background)."""
    box = product_box(image)
    return image if box is None else square_crop(image, box, pad)


def photo_view_crops(
    image: np.ndarray,
    views: int,
    simulator: PhotoSimulator | ConditionSimulator,
    rng: np.random.Generator,
    pad: float,
    jitter: float = 0.1,
    cut_share: float = 0.0,
    cut_margin: tuple[float, float] = CUT_MARGIN,
) -> list[np.ndarray]:
    """``views`` simulated phone photos of one catalogue watch, each cropped around a jittered true box. The
    watch is cut out of its photo once for all of them (the same mask each view would find). A ``cut_share`` of
    the photos are first cut to the watch (:func:`bbox.conditions.cut_to_watch`, sides moved by ``cut_margin``):
    a photo that is all watch, with no background to judge its light by. With ``cut_share`` 0 no random number
    is drawn for it, so views stay what they were (catalogue views are part of an index's signature)."""
    crops: list[np.ndarray] = []
    if views <= 0:
        return crops
    mask = segment_product(image).mask
    mask = mask if mask.any() else None  # nothing found: each view falls back as it always did
    for _ in range(views):
        scene = simulator(image, rng, mask=mask)
        if cut_share > 0 and rng.random() < cut_share:
            scene = cut_to_watch(scene, rng, cut_margin)
        crops.append(square_crop(scene.image, jittered(scene.box, rng, jitter), pad))
    return crops
