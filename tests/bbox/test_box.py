"""BoundingBox: geometry, IoU/GIoU values, square crops that stay inside the image, padded crops."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bbox.box import BoundingBox


def test_basic_geometry() -> None:
    box = BoundingBox(10, 20, 40, 80)
    assert (box.width, box.height, box.area) == (30, 60, 1800)
    assert box.center == (25, 50)


def test_coordinates_are_plain_floats_for_json() -> None:
    box = BoundingBox(np.float64(1), np.int64(2), 3, np.float32(4.5))
    assert all(type(v) is float for v in box.as_list())
    assert json.loads(json.dumps(box.as_list())) == [1.0, 2.0, 3.0, 4.5]


@pytest.mark.parametrize("coords", [(5, 0, 4, 1), (0, 5, 1, 4), (0, 0, math.nan, 1), (0, 0, math.inf, 1)])
def test_invalid_boxes_are_rejected(coords: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        BoundingBox(*coords)


def test_iou_and_giou_known_values() -> None:
    a = BoundingBox(0, 0, 2, 2)
    b = BoundingBox(1, 1, 3, 3)
    # intersection 1, union 4 + 4 - 1 = 7, enclosing box 3 x 3 = 9
    assert a.iou(b) == pytest.approx(1 / 7)
    assert a.giou(b) == pytest.approx(1 / 7 - (9 - 7) / 9)
    assert a.iou(a) == pytest.approx(1.0)
    assert a.giou(a) == pytest.approx(1.0)
    assert a.iou(b) == pytest.approx(b.iou(a))


def test_giou_ranks_disjoint_boxes_by_distance() -> None:
    a = BoundingBox(0, 0, 1, 1)
    near = BoundingBox(2, 0, 3, 1)  # enclosing 3 x 1, union 2 -> giou = -1/3
    far = BoundingBox(9, 0, 10, 1)  # enclosing 10 x 1, union 2 -> giou = -8/10
    assert a.iou(near) == a.iou(far) == 0.0
    assert a.giou(near) == pytest.approx(-1 / 3)
    assert a.giou(far) == pytest.approx(-0.8)


def test_empty_boxes_have_zero_iou() -> None:
    point = BoundingBox(1, 1, 1, 1)
    assert point.iou(point) == 0.0
    assert point.giou(point) == 0.0


def test_clip_scale_and_normalisation() -> None:
    box = BoundingBox(-5, 10, 120, 90)
    assert box.clip(100, 80) == BoundingBox(0, 10, 100, 80)
    assert BoundingBox(200, 200, 300, 300).clip(100, 80) == BoundingBox(100, 80, 100, 80)
    assert BoundingBox(10, 20, 30, 40).scale(2) == BoundingBox(20, 40, 60, 80)
    assert BoundingBox(10, 20, 30, 40).scale(0.5, 2) == BoundingBox(5, 40, 15, 80)
    norm = BoundingBox(32, 24, 96, 72).normalized(128, 96)
    assert norm == BoundingBox(0.25, 0.25, 0.75, 0.75)
    assert norm.denormalized(128, 96) == BoundingBox(32, 24, 96, 72)


def test_list_round_trip() -> None:
    box = BoundingBox(1.5, 2, 3, 4.25)
    assert BoundingBox.from_list(box.as_list()) == box
    assert BoundingBox.from_list(np.array([1.5, 2, 3, 4.25])) == box
    with pytest.raises(ValueError):
        BoundingBox.from_list([1, 2, 3])


def test_from_mask_uses_exclusive_edges() -> None:
    mask = np.zeros((10, 12), bool)
    mask[3, 4] = True
    assert BoundingBox.from_mask(mask) == BoundingBox(4, 3, 5, 4)
    mask[7, 9] = True
    box = BoundingBox.from_mask(mask)
    assert box == BoundingBox(4, 3, 10, 8)
    assert (box.width, box.height) == (6, 5)
    with pytest.raises(ValueError, match="empty"):
        BoundingBox.from_mask(np.zeros((4, 4), bool))


def test_to_square_without_image_keeps_centre() -> None:
    box = BoundingBox(10, 20, 30, 60)  # 20 x 40
    square = box.to_square(pad=0.1)
    assert square.width == pytest.approx(square.height)
    assert square.width == pytest.approx(40 * 1.2)
    assert square.center == pytest.approx(box.center)
    assert box.to_square(pad=0).width == pytest.approx(40)


@pytest.mark.parametrize(
    "box",
    [
        BoundingBox(0, 0, 30, 50),  # top-left corner: must shift right/down
        BoundingBox(90, 60, 100, 80),  # bottom-right corner
        BoundingBox(40, 30, 60, 50),  # middle: unchanged centre
        BoundingBox(15, 5, 85, 75),  # padded square (91 px) taller than the image: padding shrinks to fit
    ],
)
def test_to_square_stays_square_and_inside_the_image(box: BoundingBox) -> None:
    w, h = 100, 80
    square = box.to_square(pad=0.15, w=w, h=h)
    assert square.width == pytest.approx(square.height)
    assert square.x0 >= 0 and square.y0 >= 0
    assert square.x1 <= w + 1e-9 and square.y1 <= h + 1e-9
    # it still contains the whole box
    assert square.x0 <= box.x0 and square.y0 <= box.y0 and square.x1 >= box.x1 and square.y1 >= box.y1


def test_to_square_of_a_box_wider_than_the_image_is_tall_stays_square() -> None:
    box = BoundingBox(0, 30, 100, 50)  # 100 wide in a 100 x 80 image: no square can hold it
    square = box.to_square(pad=0.1, w=100, h=80)
    assert square.width == pytest.approx(square.height) == pytest.approx(100)
    assert square.x0 == pytest.approx(0)
    assert square.center[1] == pytest.approx(40)
    assert square.crop(np.zeros((80, 100, 3), np.uint8)).shape == (100, 100, 3)


def test_to_square_needs_both_sizes() -> None:
    with pytest.raises(ValueError):
        BoundingBox(0, 0, 1, 1).to_square(w=10)


def test_crop_inside_is_a_plain_slice() -> None:
    image = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    crop = BoundingBox(5, 4, 15, 10).crop(image)
    assert crop.shape == (6, 10, 3)
    np.testing.assert_array_equal(crop, image[4:10, 5:15])


def test_crop_outside_the_image_pads_by_edge_replication() -> None:
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, :, 0] = np.arange(30, dtype=np.uint8)[None, :]  # red encodes the column
    image[:, :, 1] = np.arange(20, dtype=np.uint8)[:, None]  # green encodes the row
    crop = BoundingBox(-5, -3, 10, 7).crop(image)
    assert crop.shape == (10, 15, 3)
    assert (crop[:, :5, 0] == 0).all()  # columns left of the image repeat column 0
    assert (crop[:3, :, 1] == 0).all()  # rows above repeat row 0
    np.testing.assert_array_equal(crop[3:, 5:], image[0:7, 0:10])
    far = BoundingBox(100, 100, 108, 104).crop(image)  # entirely outside: the corner pixel, repeated
    assert far.shape == (4, 8, 3)
    assert (far[..., 0] == 29).all() and (far[..., 1] == 19).all()


def test_crop_works_on_grey_images() -> None:
    assert BoundingBox(-2, -2, 3, 3).crop(np.ones((4, 4), np.uint8)).shape == (5, 5)


def test_a_box_that_nearly_spans_the_frame_is_spread_to_its_edges_axis_by_axis() -> None:
    # 10 % inside the photo on every side: all watch, so both axes span the frame
    assert BoundingBox(10, 8, 90, 72).spread_to_frame(100, 80, 0.2) == BoundingBox(0, 0, 100, 80)
    # spans the height, but with background either side across: only the height is spread
    assert BoundingBox(30, 3, 70, 77).spread_to_frame(100, 80, 0.2) == BoundingBox(30, 0, 70, 80)
    # near one edge only (a watch at the side of a scene): left alone
    box = BoundingBox(2, 20, 40, 60)
    assert box.spread_to_frame(100, 80, 0.2) == box
    # gaps larger than the share of the box's own size, or the share 0: left alone
    assert BoundingBox(10, 8, 90, 72).spread_to_frame(100, 80, 0.1) == BoundingBox(10, 8, 90, 72)
    assert BoundingBox(10, 8, 90, 72).spread_to_frame(100, 80, 0.0) == BoundingBox(10, 8, 90, 72)
