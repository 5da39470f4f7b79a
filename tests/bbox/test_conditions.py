"""Named photo conditions: each renders what its name says, and the true box stays the pasted watch's."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import cv2
import numpy as np
import pytest

from bbox.box import BoundingBox
from bbox.conditions import CONDITIONS, ConditionSimulator, condition_params, cut_to_watch, scene_simulator
from bbox.synth import ILLUMINANT_GAINS, PhotoSimulator, SceneParams, tilted


def draw_watch(size: int = 128) -> np.ndarray:
    """A grey watch on white, tall like a catalogue shot: strap top to bottom, a round case and a light dial."""
    image = np.full((size, size, 3), 255, np.uint8)
    c = size // 2
    cv2.rectangle(image, (c - 12, 6), (c + 12, size - 7), (70, 70, 70), -1)
    cv2.circle(image, (c, c), 30, (90, 90, 90), -1)
    cv2.circle(image, (c, c), 24, (200, 200, 200), -1)
    return image


def scenes(name: str, count: int, **changes: object) -> list:
    params = replace(condition_params(name), **changes)
    simulator = PhotoSimulator(backgrounds=[], params=params, seed=0)
    rng = np.random.default_rng(1)
    return [simulator(draw_watch(), rng) for _ in range(count)]


@pytest.mark.parametrize("name", [n for n in CONDITIONS if n != "phone"])
def test_every_condition_boxes_exactly_the_pasted_watch(name: str) -> None:
    for scene in scenes(name, 6):
        h, w = scene.image.shape[:2]
        assert scene.mask.shape == (h, w) and scene.mask.any()
        assert scene.box == BoundingBox.from_mask(scene.mask)
        assert 0 <= scene.box.x0 < scene.box.x1 <= w and 0 <= scene.box.y0 < scene.box.y1 <= h


def test_close_ups_fill_the_frame_and_are_cut_by_its_edges() -> None:
    shots = scenes("close-up", 12)
    touching = 0
    for scene in shots:
        h, w = scene.image.shape[:2]
        drawn = BoundingBox(*scene.params["predicted_box"])
        assert drawn.width >= 0.75 * min(h, w) or drawn.height >= 0.75 * min(h, w)
        # The box is the visible part of the watch: inside the drawn outline's box clipped to the frame.
        visible = drawn.clip(w, h)
        assert visible.x0 - 1 <= scene.box.x0 and scene.box.x1 <= visible.x1 + 1
        assert visible.y0 - 1 <= scene.box.y0 and scene.box.y1 <= visible.y1 + 1
        assert scene.box.iou(visible) > 0.7
        touching += scene.box.x0 <= 1 or scene.box.y0 <= 1 or scene.box.x1 >= w - 1 or scene.box.y1 >= h - 1
    assert touching >= len(shots) // 2


def test_far_watches_are_a_small_part_of_the_frame() -> None:
    for scene in scenes("far", 6):
        h, w = scene.image.shape[:2]
        assert max(scene.box.width, scene.box.height) <= 0.21 * min(h, w) + 2


def test_tiny_watches_are_a_few_percent_of_the_frame_yet_keep_their_pixels() -> None:
    for scene in scenes("tiny", 6):
        h, w = scene.image.shape[:2]
        long_side = max(scene.box.width, scene.box.height)
        assert 960 <= max(h, w) <= 1440  # a larger frame, so a 4-8 % watch is still 30-100 px
        assert 0.03 * min(h, w) - 2 <= long_side <= 0.08 * min(h, w) + 2


def test_tilting_the_dial_foreshortens_it_across_the_axis() -> None:
    square = np.float32([[-10, -10], [10, -10], [10, 10], [-10, 10]])
    assert np.allclose(tilted(square, 0.0, 0.0, 1e6), square, atol=1e-3)
    seen = tilted(square, 60.0, 0.0, 1e6)  # axis along x, a far camera: y halves, x stays
    assert np.allclose(seen[:, 0], square[:, 0], atol=1e-2)
    assert np.allclose(seen[:, 1], square[:, 1] * 0.5, atol=1e-2)
    near = tilted(square, 60.0, 0.0, 40.0)  # a near camera: the near edge is wider than the far one
    assert abs(near[0, 0] - near[1, 0]) != pytest.approx(abs(near[2, 0] - near[3, 0]), rel=0.05)


def test_tilted_scenes_record_their_tilt() -> None:
    tilts = [scene.params["tilt_deg"] for scene in scenes("tilt", 6)]
    assert all(30.0 <= t <= 60.0 for t in tilts)


def test_glare_brightens_the_glass_towards_white() -> None:
    quiet = {"distractor_prob": 0.0, "shadow_prob": 0.0, "tilt_range": (0.0, 0.0)}
    lit = scenes("glare", 4, **quiet)
    plain = scenes("glare", 4, glare_prob=0.0, **quiet)
    for with_glare, without in zip(lit, plain, strict=True):
        assert "glare_strength" in with_glare.params and "glare_strength" not in without.params

    def brightest(shots: list) -> float:
        return float(np.mean([np.percentile(s.image[s.mask].max(axis=1), 99.5) for s in shots]))

    assert brightest(lit) > brightest(plain) + 25


def test_lamp_light_tints_the_scene_and_dims_it() -> None:
    for scene in scenes("lamp", 8, illuminants=("tungsten",), illuminant_strength_range=(0.9, 0.9)):
        red, _, blue = scene.image[scene.mask].reshape(-1, 3).mean(axis=0)
        assert red > 1.3 * blue  # a grey watch turns orange under tungsten
        assert scene.params["illuminant"] == "tungsten"
    shade = scenes("lamp", 4, illuminants=("shade",), illuminant_strength_range=(0.9, 0.9))
    for scene in shade:
        red, _, blue = scene.image[scene.mask].reshape(-1, 3).mean(axis=0)
        assert blue > red
    assert ILLUMINANT_GAINS["tungsten"][0] > ILLUMINANT_GAINS["tungsten"][2]


def test_a_wrist_lies_under_the_watch_and_the_straps_curve_away() -> None:
    flat = scenes("wrist", 6, wrist_prob=0.0, tilt_range=(0.0, 0.0), max_rotation_deg=0.0, perspective_jitter=0.0)
    worn = scenes("wrist", 6, tilt_range=(0.0, 0.0), max_rotation_deg=0.0, perspective_jitter=0.0)
    for scene in worn:
        box = scene.box
        # Skin beside the case, along the arm (which runs across the strap): reddish, not the grey watch.
        y = int(box.center[1])
        x = max(0, int(box.x0) - 3)
        r, g, b = scene.image[y, x].astype(int)
        assert r > b, (r, g, b)
        assert "arm_tone" in scene.params
    # Bent straps end sooner: the worn watch is shorter along the strap for its width than the flat one.
    flat_aspect = np.mean([s.box.height / s.box.width for s in flat])
    worn_aspect = np.mean([s.box.height / s.box.width for s in worn])
    assert worn_aspect < flat_aspect


def test_phone_photos_are_twelve_megapixels() -> None:
    scene = scenes("phone", 1)[0]
    assert sorted(scene.image.shape[:2]) == [3024, 4032]
    capped = condition_params("phone", long_side_cap=1024)
    assert capped.long_side_range == (1024, 1024)
    assert capped.motion_blur_length_range[1] < condition_params("phone").motion_blur_length_range[1]


def test_standard_condition_is_the_default_scene() -> None:
    assert condition_params("standard") == SceneParams()
    with pytest.raises(ValueError, match="unknown photo condition"):
        condition_params("underwater")


def test_condition_simulator_mixes_by_weight_and_names_each_scene() -> None:
    simulator = ConditionSimulator(backgrounds=[], weights={"far": 3.0, "close-up": 1.0}, seed=0)
    drawn = Counter(simulator(draw_watch()).params["condition"] for _ in range(40))
    assert set(drawn) == {"far", "close-up"} and drawn["far"] > drawn["close-up"]
    with pytest.raises(ValueError):
        ConditionSimulator(backgrounds=[], weights={"far": 0.0})


def test_scene_simulator_is_the_standard_scene_for_no_conditions_and_caps_the_others() -> None:
    assert type(scene_simulator({}, backgrounds=[])) is PhotoSimulator
    assert type(scene_simulator(None, backgrounds=[])) is PhotoSimulator
    phone = scene_simulator({"phone": 1.0}, seed=0, long_side_cap=800, backgrounds=[])
    scene = phone(draw_watch())
    assert scene.params["condition"] == "phone" and max(scene.image.shape[:2]) == 800  # not 4,032


def test_a_photo_cut_to_its_watch_is_all_watch_and_keeps_the_watch_s_mask() -> None:
    for scene in scenes("standard", 6):
        cut = cut_to_watch(scene)
        x0, y0, x1, y1 = cut.params["cut"]
        assert (x0, y0) == (int(scene.box.x0), int(scene.box.y0)) and (x1, y1) == (scene.box.x1, scene.box.y1)
        assert np.array_equal(cut.image, scene.image[y0:y1, x0:x1])
        assert np.array_equal(cut.mask, scene.mask[y0:y1, x0:x1])
        h, w = cut.image.shape[:2]
        assert cut.box == BoundingBox.from_mask(cut.mask) == BoundingBox(0, 0, w, h)  # the watch touches every side


def test_cut_margins_add_background_or_cut_into_the_watch_and_stay_in_the_frame() -> None:
    rng = np.random.default_rng(3)
    for scene in scenes("close-up", 8):  # close-ups run off the frame: the cut must clip, not wrap
        h, w = scene.image.shape[:2]
        loose = cut_to_watch(scene, rng, (0.05, 0.1))
        x0, y0, x1, y1 = loose.params["cut"]
        assert 0 <= x0 <= scene.box.x0 and 0 <= y0 <= scene.box.y0
        assert scene.box.x1 <= x1 <= w and scene.box.y1 <= y1 <= h
        assert loose.box == BoundingBox.from_mask(loose.mask)
        assert loose.mask.sum() == scene.mask.sum()  # nothing of the watch is lost
        tight = cut_to_watch(scene, rng, (-0.1, -0.05))
        assert tight.mask.sum() < scene.mask.sum()  # cut into the watch: it runs off every side
        assert tight.mask[0].any() and tight.mask[-1].any() and tight.mask[:, 0].any() and tight.mask[:, -1].any()
        assert tight.image.shape[0] < scene.box.height and tight.image.shape[1] < scene.box.width
    with pytest.raises(ValueError, match="margin"):
        cut_to_watch(scene, rng, (0.1, 0.0))
