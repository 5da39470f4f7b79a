"""The room light judged around the watch: a lamp's cast is found and taken out, a neutral room left alone."""

from __future__ import annotations

import cv2
import numpy as np

from bbox.scenery import procedural_clutter
from ranking.illuminant import DEAD_ZONE, correct_warm_cool, light_correction, warm_cool_shift


def neutral_room(seed: int = 0) -> np.ndarray:
    """Procedural clutter balanced to grey on average, with a grey watch-sized disc in the middle."""
    room = procedural_clutter(240, 320, np.random.default_rng(seed)).astype(np.float32)
    room *= room.reshape(-1, 3).mean(axis=0).mean() / room.reshape(-1, 3).mean(axis=0)  # grey world holds
    image = np.clip(room, 0, 255).astype(np.uint8)
    cv2.circle(image, (160, 120), 50, (150, 150, 150), -1)
    return image


def under_light(image: np.ndarray, gains: tuple[float, float, float]) -> np.ndarray:
    return np.clip(image.astype(np.float32) * np.float32(gains), 0, 255).astype(np.uint8)


WATCH_BOX = (100.0, 60.0, 220.0, 180.0)


def test_a_tungsten_cast_reads_warm_and_shade_reads_cool() -> None:
    room = neutral_room()
    neutral = warm_cool_shift(room, WATCH_BOX)
    warm = warm_cool_shift(under_light(room, (1.0, 0.75, 0.5)), WATCH_BOX)
    cool = warm_cool_shift(under_light(room, (0.8, 0.9, 1.0)), WATCH_BOX)
    assert neutral is not None and warm is not None and cool is not None
    assert abs(neutral) < 0.15
    assert warm > neutral + 0.4 and cool < neutral - 0.1


def test_correction_turns_the_lamp_lit_watch_back_towards_grey() -> None:
    lit = under_light(neutral_room(1), (1.0, 0.7, 0.45))
    shift = light_correction(lit, WATCH_BOX)
    assert shift > 0
    fixed = correct_warm_cool(lit, shift)
    before = lit[120, 160].astype(float)
    after = fixed[120, 160].astype(float)
    assert after[0] / after[2] < before[0] / before[2]  # the grey disc is less orange
    assert abs(after.mean() - before.mean()) < 0.1 * before.mean()  # brightness kept


def test_small_shifts_are_left_alone_and_the_watch_alone_tells_nothing() -> None:
    room = neutral_room(2)
    assert light_correction(room, WATCH_BOX) == 0.0 or abs(warm_cool_shift(room, WATCH_BOX)) > DEAD_ZONE
    assert warm_cool_shift(room, (0.0, 0.0, 320.0, 240.0)) is None  # all watch: no room to judge the light by
    assert light_correction(room, (0.0, 0.0, 320.0, 240.0)) == 0.0
    assert correct_warm_cool(room, 0.0) is room


def test_without_a_box_the_watch_colour_is_never_taken_for_the_light() -> None:
    photo = np.full((128, 128, 3), 255, np.uint8)
    cv2.circle(photo, (64, 64), 40, (200, 150, 40), -1)  # a gold case: the watch's colour, not the light's
    assert light_correction(photo, None) == 0.0
