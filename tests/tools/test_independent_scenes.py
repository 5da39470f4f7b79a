"""The held-out simulator: exact boxes, its conditions' sizes, and kept out of everything that trains."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from bbox.box import BoundingBox
from tests.helpers import draw_catalog_watch
from tools.independent_scenes import CONDITIONS, IndependentSimulator, cut_out, kelvin_gains

ROOT = Path(__file__).resolve().parents[2]


def _blue_disc(size: int = 128) -> np.ndarray:
    image = np.full((size, size, 3), 255, np.uint8)
    cv2.circle(image, (size // 2, size // 2), size // 3, (20, 40, 230), -1)
    return image


def test_the_mask_lies_on_the_watch_in_the_photo() -> None:
    """The photo's pixels under the (eroded) mask are the pasted watch's colour: mask and image agree."""
    simulator = IndependentSimulator(replace(CONDITIONS["standard"], glare_prob=0.0), photos=[])
    rng = np.random.default_rng(1)
    for _ in range(4):
        scene = simulator(_blue_disc(), rng)
        inside = cv2.erode(scene.mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        pixels = scene.image[inside].astype(int)
        assert ((pixels[:, 2] > pixels[:, 0] + 40) & (pixels[:, 2] > pixels[:, 1] + 40)).mean() > 0.95


def test_cut_out_keeps_a_white_dial_inside_the_watch_and_drops_the_studio_white() -> None:
    catalog = draw_catalog_watch()
    alpha = cut_out(catalog)
    c = catalog.shape[0] // 2
    assert alpha[c, c] > 0.99  # the white dial is enclosed by the case: watch, not background
    assert alpha[2, 2] < 0.01 and alpha[c, 2] < 0.01  # the studio white around it
    assert BoundingBox.from_mask(alpha >= 0.5).iou(BoundingBox(c - 34, 8, c + 35, 119)) > 0.95


@pytest.mark.parametrize("name", list(CONDITIONS))
def test_scenes_box_exactly_the_pasted_watch_at_the_conditions_size(name: str) -> None:
    simulator = IndependentSimulator(CONDITIONS[name], photos=[])
    rng = np.random.default_rng(3)
    low, high = CONDITIONS[name].watch_size
    for _ in range(4):
        scene = simulator(draw_catalog_watch(), rng)
        h, w = scene.image.shape[:2]
        assert scene.mask.shape == (h, w) and scene.image.dtype == np.uint8
        assert scene.box == BoundingBox.from_mask(scene.mask)
        assert 0 <= scene.box.x0 < scene.box.x1 <= w and 0 <= scene.box.y0 < scene.box.y1 <= h
        cut_by_edge = scene.box.x0 == 0 or scene.box.y0 == 0 or scene.box.x1 == w or scene.box.y1 == h
        size = max(scene.box.width, scene.box.height) / min(h, w)
        if not cut_by_edge:
            assert low - 0.02 <= size <= high + 0.02, (name, size)


def test_close_ups_are_often_cut_by_the_frame_and_far_watches_are_small() -> None:
    rng = np.random.default_rng(0)
    close = IndependentSimulator(CONDITIONS["close-up"], photos=[])
    cut = 0
    for _ in range(10):
        scene = close(draw_catalog_watch(), rng)
        h, w = scene.image.shape[:2]
        cut += scene.box.x0 == 0 or scene.box.y0 == 0 or scene.box.x1 == w or scene.box.y1 == h
    assert cut >= 5
    far = IndependentSimulator(CONDITIONS["far"], photos=[])(draw_catalog_watch(), rng)
    assert far.box.area / (far.image.shape[0] * far.image.shape[1]) < 0.05


def test_the_same_draws_give_the_same_photo() -> None:
    simulator = IndependentSimulator(replace(CONDITIONS["harsh"], glare_prob=1.0), photos=[])
    one = simulator(draw_catalog_watch(), np.random.default_rng(9))
    two = simulator(draw_catalog_watch(), np.random.default_rng(9))
    np.testing.assert_array_equal(one.image, two.image)
    assert one.params["glare"]


def test_lamp_light_is_warm_and_shade_cold() -> None:
    lamp, daylight, shade = kelvin_gains(2700), kelvin_gains(6500), kelvin_gains(9500)
    assert lamp[0] > 1.2 and lamp[2] < 0.7
    assert np.allclose(daylight, 1.0, atol=0.05)
    assert shade[2] > shade[0]


def test_nothing_that_trains_or_ships_imports_the_held_out_simulator() -> None:
    """Its photos measure generalisation only while no model has learned from them."""
    sources = [p for folder in ("bbox", "ranking", "tiefwatch") for p in (ROOT / folder).rglob("*.py")]
    sources += [ROOT / "tools" / "tune_tail.py", ROOT / "tools" / "bench_conditions.py"]
    importing = [p for p in sources if re.search(r"\bindependent_scenes\b", p.read_text())]
    assert len(sources) > 50 and importing == []
