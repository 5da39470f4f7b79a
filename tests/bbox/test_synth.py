"""Catalogue-to-photo simulator: scenes whose box is exactly the pasted watch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from bbox.box import BoundingBox
from bbox.scenery import procedural_clutter
from bbox.segment import product_mask, segment_product
from bbox.synth import PhotoSimulator, Scene, SceneParams, simulate_photo
from tests.helpers import draw_catalog_watch

SHARED_CATALOG = Path(__file__).resolve().parents[2].parent / "shared/data/watch-catalog-dev"
MAGENTA = (230, 40, 200)


def draw_elongated_product(size: int = 128) -> np.ndarray:
    """A tall, thin dark product (aspect ~0.2), so rotating it must visibly change its box."""
    image = np.full((size, size, 3), 255, np.uint8)
    cv2.rectangle(image, (54, 10), (74, size - 11), (30, 30, 90), -1)
    return image


def quiet_params(**changes: object) -> SceneParams:
    """Scene settings without distractors or shadow, for assertions about pixels."""
    return replace(SceneParams(), distractor_prob=0.0, shadow_prob=0.0, **changes)


# ------------------------------------------------------------------ scenes


def assert_scene_is_consistent(scene: Scene, params: SceneParams) -> None:
    h, w = scene.image.shape[:2]
    assert scene.image.dtype == np.uint8 and scene.image.shape[2] == 3
    assert scene.mask.shape == (h, w) and scene.mask.dtype == bool and scene.mask.any()
    assert scene.box == BoundingBox.from_mask(scene.mask)
    assert params.long_side_range[0] <= max(h, w) <= params.long_side_range[1]
    assert scene.box.x0 >= 0 and scene.box.y0 >= 0 and scene.box.x1 <= w and scene.box.y1 <= h
    side = max(scene.box.width, scene.box.height)
    low, high = params.watch_size_range
    assert low * min(h, w) - 2 <= side <= high * min(h, w) + 2


@pytest.mark.parametrize("seed", range(6))
def test_scene_box_is_the_tight_box_of_the_pasted_watch(seed: int) -> None:
    params = SceneParams()
    scene = PhotoSimulator(params=params, seed=seed)(draw_catalog_watch())
    assert_scene_is_consistent(scene, params)


def test_pasted_pixels_differ_from_the_background_inside_the_mask() -> None:
    backdrop = np.full((400, 400, 3), MAGENTA, np.uint8)
    params = quiet_params(background_defocus_prob=0.0, exposure_gain_range=(1.0, 1.0), color_cast=0.0)
    for seed in range(4):
        scene = PhotoSimulator(backgrounds=[backdrop], params=replace(params, photo_background_prob=1.0), seed=seed)(
            draw_catalog_watch()
        )
        image = scene.image.astype(np.int16)
        far = ~cv2.dilate(scene.mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        backdrop_colour = np.median(image[far], axis=0)
        # the magenta backdrop survives the camera model as one colour away from the watch ...
        assert np.abs(image[far] - backdrop_colour).max(axis=1).mean() < 20
        # ... while nearly every pixel under the mask is the watch (dark case/strap or white dial), not it
        differs = np.abs(image[scene.mask] - backdrop_colour).max(axis=1) > 60
        assert differs.mean() > 0.97


def test_nothing_changes_outside_the_watch_without_camera_effects() -> None:
    """With shadow, distractors and the camera model switched off, only pixels at the watch may change:
    the paste must not leave a faint rectangle around it (an alpha that is not 0 away from the product)."""
    backdrop = np.full((300, 300, 3), MAGENTA, np.uint8)
    params = quiet_params(
        photo_background_prob=1.0,
        background_defocus_prob=0.0,
        exposure_gain_range=(1.0, 1.0),
        color_cast=0.0,
        gamma_range=(1.0, 1.0),
        vignette_range=(0.0, 0.0),
        light_gradient_range=(0.0, 0.0),
        blur_prob=0.0,
        motion_blur_prob=0.0,
        noise_sigma_range=(0.0, 0.0),
        jpeg_quality_range=(100, 100),
    )
    for seed in range(6):
        scene = PhotoSimulator(backgrounds=[backdrop], params=params, seed=seed)(draw_catalog_watch())
        near = cv2.dilate(scene.mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        deviation = np.abs(scene.image.astype(np.int16) - np.array(MAGENTA)).max(axis=2)
        assert deviation[~near].max() <= 6, f"seed {seed}: background changed away from the watch"


def test_configured_watch_size_is_respected() -> None:
    params = quiet_params(watch_size_range=(0.5, 0.5), long_side_range=(400, 400))
    for seed in range(5):
        scene = PhotoSimulator(params=params, seed=seed)(draw_catalog_watch())
        h, w = scene.image.shape[:2]
        assert max(scene.box.width, scene.box.height) == pytest.approx(0.5 * min(h, w), abs=2.5)


def test_rotation_changes_the_box_aspect_of_an_elongated_product() -> None:
    product = draw_elongated_product()
    upright = quiet_params(max_rotation_deg=0.0, perspective_jitter=0.0)
    aspects = []
    for seed in range(3):
        box = PhotoSimulator(params=upright, seed=seed)(product).box
        aspects.append(box.width / box.height)
    assert max(aspects) < 0.3  # ~21 x 107 source pixels

    tilted = quiet_params(max_rotation_deg=35.0, perspective_jitter=0.0)
    checked = 0
    for seed in range(12):
        scene = PhotoSimulator(params=tilted, seed=seed)(product)
        if abs(scene.params["rotation_deg"]) > 20:
            assert scene.box.width / scene.box.height > 0.45
            checked += 1
    assert checked >= 2


def test_same_seed_same_scene_and_different_seed_different_scene() -> None:
    watch = draw_catalog_watch()
    a = PhotoSimulator(seed=7)(watch)
    b = PhotoSimulator(seed=7)(watch)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.box == b.box and a.params == b.params
    c = simulate_photo(watch, np.random.default_rng(7))
    d = simulate_photo(watch, np.random.default_rng(7))
    np.testing.assert_array_equal(c.image, d.image)
    e = PhotoSimulator(seed=8)(watch)
    assert e.image.shape != a.image.shape or not np.array_equal(e.image, a.image)


def test_simulator_sequence_is_reproducible() -> None:
    watch = draw_catalog_watch()
    first = PhotoSimulator(seed=11)
    second = PhotoSimulator(seed=11)
    for _ in range(3):
        assert first(watch).box == second(watch).box


def test_procedural_only_and_distractors_keep_the_box_exact() -> None:
    params = replace(SceneParams(), distractor_prob=1.0, max_distractors=2)
    simulator = PhotoSimulator(backgrounds=[], params=params, seed=2)
    for _ in range(4):
        scene = simulator(draw_catalog_watch())
        assert scene.params["background"] == "procedural"
        assert_scene_is_consistent(scene, params)


def test_precomputed_mask_is_used() -> None:
    watch = draw_catalog_watch()
    scene = PhotoSimulator(seed=0)(watch, mask=product_mask(watch))
    assert scene.params["catalog_status"] == "given"
    assert scene.box == BoundingBox.from_mask(scene.mask)
    with pytest.raises(ValueError):
        PhotoSimulator(seed=0)(watch, mask=np.zeros((128, 128), bool))


def test_catalogue_photo_not_on_white_is_pasted_whole() -> None:
    photo = procedural_clutter(100, 80, np.random.default_rng(5))
    scene = PhotoSimulator(params=quiet_params(max_rotation_deg=0.0, perspective_jitter=0.0), seed=1)(photo)
    assert scene.params["catalog_status"] == "not_on_plain_background"
    assert scene.box.width / scene.box.height == pytest.approx(0.8, abs=0.05)


# ------------------------------------------------------------------ the real dev catalogue


@pytest.fixture
def real_catalog_photos() -> list[np.ndarray]:
    if not SHARED_CATALOG.is_dir():
        pytest.skip(f"shared dev catalogue not found at {SHARED_CATALOG}")
    paths = sorted(SHARED_CATALOG.glob("*.jpg"))[:12]
    if len(paths) < 12:
        pytest.skip(f"shared dev catalogue at {SHARED_CATALOG} has fewer than 12 photos")
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def test_real_catalogue_masks(real_catalog_photos: list[np.ndarray]) -> None:
    untouched = 0
    for photo in real_catalog_photos:
        segmentation = segment_product(photo)
        assert segmentation.status == "product"
        assert 0.05 < segmentation.mask.mean() < 0.9  # found something, not the whole frame
        # straps may run off the top/bottom of a catalogue photo, never off the sides of a typical one
        assert "left" not in segmentation.border_sides and "right" not in segmentation.border_sides
        untouched += not segmentation.border_sides
    assert untouched >= 4


def test_real_catalogue_scenes(real_catalog_photos: list[np.ndarray]) -> None:
    simulator = PhotoSimulator(seed=0)
    for photo in real_catalog_photos[:4]:
        assert_scene_is_consistent(simulator(photo), simulator.params)


def test_a_draw_without_a_watch_pixel_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    import bbox.synth

    paste = bbox.synth._paste_watch
    calls: list[int] = []

    def empty_first(frame: np.ndarray, *args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray | None]:
        mask, glare = paste(frame, *args, **kwargs)
        calls.append(int(mask.sum()))
        return (np.zeros_like(mask) if len(calls) == 1 else mask), glare

    monkeypatch.setattr(bbox.synth, "_paste_watch", empty_first)
    params = SceneParams()
    with pytest.warns(UserWarning, match="without a watch pixel"):
        scene = PhotoSimulator(params=params, seed=3)(draw_catalog_watch())
    assert len(calls) == 2
    assert_scene_is_consistent(scene, params)


def test_a_watch_smaller_than_a_pixel_in_every_draw_is_refused() -> None:
    params = quiet_params(watch_size_range=(0.0005, 0.0005))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no watch pixel"):
        PhotoSimulator(params=params, seed=0)(draw_catalog_watch())
