from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bbox.box import BoundingBox
from bbox.predict import BoxPrediction, BoxPredictor, closer_look, zoom_windows


def test_zoom_windows_are_four_corners_and_the_centre() -> None:
    windows = zoom_windows(100, 50, 0.6)
    assert [(b.x0, b.y0) for b in windows] == [(0, 0), (40, 0), (0, 20), (40, 20), (20, 10)]
    assert all((b.width, b.height) == (60, 30) for b in windows)
    covered = np.zeros((50, 100), bool)
    for b in windows:
        covered[int(b.y0) : int(b.y1), int(b.x0) : int(b.x1)] = True
    assert covered.all()  # a watch anywhere in the photo is inside some window


def test_closer_look_takes_the_surest_peak_and_keeps_the_first_box_as_a_candidate() -> None:
    first_box, best, other, low = (
        BoundingBox(*c) for c in ((0, 0, 10, 10), (50, 50, 60, 60), (80, 0, 90, 10), (0, 80, 5, 85))
    )
    first = BoxPrediction(first_box, 0.1)
    twin = BoundingBox(51, 50, 61, 60)  # the same watch seen from an overlapping window
    merged = closer_look(first, [(other, 0.6), (best, 0.9), (twin, 0.8), (low, 0.3)], ratio=0.5, limit=2)
    assert merged.box == best and merged.confidence == 0.9
    assert merged.alternatives == ((other, 0.6), (first_box, 0.1))  # no twin, nothing under half as sure
    assert closer_look(first, [(best, 0.9)], ratio=0.5, limit=0).alternatives == ()
    # where no window is surer than the first look, nothing changes
    assert closer_look(BoxPrediction(first_box, 0.95), [(best, 0.9)], 0.5, 2) == BoxPrediction(first_box, 0.95)


def test_look_closer_maps_window_boxes_back_to_the_photo_and_leaves_sure_photos_alone() -> None:
    predictor = BoxPredictor.__new__(BoxPredictor)  # the network stubbed: only the second look's plumbing
    predictor.alternatives_ratio, predictor.max_alternatives = 0.5, 2
    windows_seen: list[tuple[int, int]] = []

    def once(images: Sequence[np.ndarray]) -> list[BoxPrediction]:
        # each window finds a 4-px box at its own (2, 2); only the bottom-right window (marked red) is sure of it
        windows_seen.extend(image.shape[:2] for image in images)
        return [BoxPrediction(BoundingBox(2, 2, 6, 6), 0.9 if image[0, 0, 0] else 0.05) for image in images]

    predictor._predict_once = once
    photo = np.zeros((50, 100, 3), np.uint8)
    photo[20:, 40:, 0] = 255  # the bottom-right window's corner pixel is red
    unsure, sure = BoxPrediction(BoundingBox(0, 0, 10, 10), 0.2), BoxPrediction(BoundingBox(0, 0, 10, 10), 0.8)
    out = predictor.look_closer([photo, photo], [unsure, sure], below=0.35, window=0.6)
    assert windows_seen == [(30, 60)] * 5  # five windows of the unsure photo, none of the sure one
    assert out[0].box == BoundingBox(42, 22, 46, 26) and out[0].confidence == 0.9
    assert out[0].alternatives[-1] == (unsure.box, 0.2)
    assert out[1] is sure
