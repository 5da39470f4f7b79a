from __future__ import annotations

import numpy as np
import pytest

import tiefwatch.views
from bbox.box import BoundingBox
from bbox.synth import PhotoSimulator
from tests.helpers import draw_watch
from tiefwatch.views import catalogue_crop, jittered, photo_view_crops


def test_jitter_moves_and_resizes_the_box_within_its_bounds() -> None:
    box = BoundingBox(100, 50, 200, 250)
    rng = np.random.default_rng(0)
    boxes = [jittered(box, rng, 0.1) for _ in range(200)]
    widths = np.array([b.width for b in boxes]) / box.width
    shifts = np.array([b.center[0] - box.center[0] for b in boxes]) / box.width
    assert widths.min() >= 0.9 - 1e-9 and widths.max() <= 1.1 + 1e-9 and widths.std() > 0.03
    assert np.abs(shifts).max() <= 0.1 + 1e-9 and np.abs(shifts).max() > 0.05
    assert jittered(box, rng, 0.0) == box


def test_views_are_square_crops_of_new_scenes_and_the_catalogue_is_cut_out() -> None:
    watch = draw_watch(5, 128)
    crops = photo_view_crops(watch, 3, PhotoSimulator(seed=1), np.random.default_rng(1), pad=0.08)
    assert len(crops) == 3 and all(c.shape[0] == c.shape[1] and c.shape[2] == 3 for c in crops)
    assert not np.array_equal(crops[0], crops[1])
    framed = catalogue_crop(watch, pad=0.08)
    assert framed.shape[0] == framed.shape[1] <= watch.shape[0]


def test_a_share_of_views_is_cut_to_the_watch_and_none_without_one(monkeypatch: pytest.MonkeyPatch) -> None:
    watch = draw_watch(5, 128)
    cuts: list[tuple[int, int]] = []
    real = tiefwatch.views.cut_to_watch

    def spy(scene, rng, margin):
        cut = real(scene, rng, margin)
        cuts.append(cut.image.shape[:2])
        assert cut.image.shape[0] < scene.image.shape[0] or cut.image.shape[1] < scene.image.shape[1]
        return cut

    monkeypatch.setattr(tiefwatch.views, "cut_to_watch", spy)
    plain = photo_view_crops(watch, 4, PhotoSimulator(seed=1), np.random.default_rng(1), pad=0.08)
    again = photo_view_crops(watch, 4, PhotoSimulator(seed=1), np.random.default_rng(1), pad=0.08, cut_share=0.0)
    assert not cuts and all(np.array_equal(a, b) for a, b in zip(plain, again, strict=True))
    photo_view_crops(watch, 40, PhotoSimulator(seed=1), np.random.default_rng(2), pad=0.08, cut_share=0.5)
    assert 10 <= len(cuts) <= 30
