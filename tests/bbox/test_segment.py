"""Product cut-out: the watch's mask in a catalogue photo on a plain light background."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bbox.box import BoundingBox
from bbox.scenery import procedural_clutter
from bbox.segment import product_box, product_mask, segment_product
from tests.helpers import draw_catalog_watch, on_unevenly_lit_desk

# ------------------------------------------------------------------ product mask


def test_product_mask_fills_the_white_dial_and_excludes_the_background() -> None:
    image = draw_catalog_watch()
    mask = product_mask(image)
    assert mask.dtype == bool and mask.shape == (128, 128)
    assert mask[64, 64 - 15]  # white dial pixel inside the case ring
    assert mask[64 - 20 : 64 + 20, 64 - 20 : 64 + 20].all()  # the whole dial, not just its outline
    assert not mask[:, :30].any() and not mask[:, 99:].any()  # white background beside the watch
    assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
    box = BoundingBox.from_mask(mask)
    assert box == BoundingBox(30, 8, 99, 120)  # strap top/bottom and case left/right edges


def test_product_mask_survives_jpeg_noise() -> None:
    ok, data = cv2.imencode(".jpg", draw_catalog_watch(), [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    segmentation = segment_product(image)
    assert segmentation.status == "product"
    assert segmentation.mask[64, 49]  # dial still filled
    clean = product_mask(draw_catalog_watch())
    assert (segmentation.mask ^ clean).sum() < 0.05 * clean.sum()
    assert segmentation.border_sides == ()


def test_light_grey_studio_backdrop_is_still_a_plain_background() -> None:
    segmentation = segment_product(draw_catalog_watch(background=228))
    assert segmentation.status == "product"
    assert segmentation.background_rgb == (228, 228, 228)
    assert segmentation.mask[64, 64] and not segmentation.mask[5, 5]


def test_an_evenly_lit_backdrop_has_little_border_spread_and_an_unevenly_lit_desk_much() -> None:
    studio = segment_product(draw_catalog_watch())
    desk = segment_product(on_unevenly_lit_desk())
    assert studio.status == "product" and studio.border_spread < 2
    assert desk.status == "product" and desk.border_spread > 16


def test_product_box_declines_a_backdrop_lit_unevenly_when_asked() -> None:
    photo = on_unevenly_lit_desk()
    assert product_box(photo) is not None  # catalogue photos: no limit
    assert product_box(photo, max_border_spread=12.0) is None
    studio = draw_catalog_watch()
    assert product_box(studio, max_border_spread=12.0) == product_box(studio) == BoundingBox(30, 8, 99, 120)


def test_photo_not_on_white_gets_the_whole_frame() -> None:
    rng = np.random.default_rng(0)
    photo = procedural_clutter(96, 128, rng)
    segmentation = segment_product(photo)
    assert segmentation.status == "not_on_plain_background"
    assert not segmentation.on_plain_background
    assert segmentation.mask.all()
    assert product_mask(photo).all()


def test_blank_image_is_reported_blank() -> None:
    segmentation = segment_product(np.full((64, 64, 3), 255, np.uint8))
    assert segmentation.status == "blank"
    assert segmentation.mask.all()


def test_product_mask_rejects_non_uint8() -> None:
    with pytest.raises(TypeError):
        product_mask(np.zeros((8, 8, 3), np.float32))
