from __future__ import annotations

import cv2
import numpy as np
import pytest

from ranking.colour import COLOUR_DIM, ColourScaling, colour_descriptor, colour_descriptors

# Where the numbers sit: region r (0 dial, 1 case ring, 2 strap above, 3 strap below) starts at 7 * r with
# (mean, spread) of L, then a, then b, then the region's foreground share; the 15 histogram bins follow.
DIAL_A, DIAL_B, RING_L, RING_B = 2, 4, 7, 11
TOP_SHARE, HUES, GREYS = 2 * 7 + 6, 28, 40


def _watch(dial: tuple[int, int, int], case: tuple[int, int, int], strap: tuple[int, int, int], side: int = 200):
    """A front view on white: strap above and below, a case disc, a dial inside it (RGB)."""
    image = np.full((side, side, 3), 255, np.uint8)
    c = side // 2
    cv2.rectangle(image, (c - side // 8, 0), (c + side // 8, side - 1), strap, -1)
    cv2.circle(image, (c, c), int(side * 0.3), case, -1)
    cv2.circle(image, (c, c), int(side * 0.15), dial, -1)
    return image


def test_descriptor_tells_the_dial_and_case_colours_apart() -> None:
    steel, black = (170, 170, 175), (30, 30, 30)
    red_dial = colour_descriptor(_watch((200, 20, 20), steel, black))
    blue_dial = colour_descriptor(_watch((20, 40, 200), steel, black))
    assert red_dial.shape == (COLOUR_DIM,) and red_dial.dtype == np.float32
    assert red_dial[DIAL_A] > 0.5 and abs(blue_dial[DIAL_A]) < red_dial[DIAL_A]  # red sits on +a
    assert blue_dial[DIAL_B] < -0.5 < red_dial[DIAL_B]  # blue on -b
    ring = [RING_L, RING_B]  # the case ring's mean lightness and yellowness: the same case either way
    np.testing.assert_allclose(red_dial[ring], blue_dial[ring], atol=0.1)

    gold = colour_descriptor(_watch((240, 240, 235), (212, 175, 55), black))
    silver = colour_descriptor(_watch((240, 240, 235), steel, black))
    assert gold[RING_B] > silver[RING_B] + 0.3  # a gold case is yellower (+b) than steel
    assert gold[HUES:GREYS].sum() > silver[HUES:GREYS].sum()  # and its pixels are coloured, not grey


def test_white_background_is_not_counted_as_the_watch() -> None:
    bare = colour_descriptor(np.full((64, 64, 3), 255, np.uint8))
    assert bare[TOP_SHARE] == 0 and not bare[HUES:].any()
    strapped = colour_descriptor(_watch((240, 240, 235), (170, 170, 175), (90, 50, 20)))
    assert strapped[TOP_SHARE] > 0.5  # a brown strap fills most of the band above the case


def test_descriptors_stack_and_refuse_what_is_not_a_colour_picture() -> None:
    pictures = [_watch((200, 20, 20), (170, 170, 175), (30, 30, 30), side=s) for s in (200, 400)]
    stacked = colour_descriptors(pictures)
    assert stacked.shape == (2, COLOUR_DIM)
    np.testing.assert_allclose(stacked[0], stacked[1], atol=0.05)  # the size it is given does not matter
    assert colour_descriptors([]).shape == (0, COLOUR_DIM)
    with pytest.raises(ValueError, match="RGB"):
        colour_descriptor(np.zeros((32, 32), np.uint8))


def test_scaling_standardises_each_number_to_the_weight_and_survives_a_round_trip() -> None:
    rng = np.random.default_rng(0)
    colours = rng.normal(3.0, 2.0, size=(500, COLOUR_DIM)).astype(np.float32)
    colours[:, 5] = 1.0  # a number that never varies must not blow up
    scaling = ColourScaling.fit(colours, weight=0.1)
    scaled = scaling.apply(colours)
    assert scaling.dim == COLOUR_DIM
    np.testing.assert_allclose(scaled.mean(axis=0), 0.0, atol=1e-4)
    varying = np.delete(scaled.std(axis=0), 5)
    np.testing.assert_allclose(varying, 0.1, rtol=1e-3)
    assert np.all(scaled[:, 5] == 0)
    again = ColourScaling.from_state(scaling.to_state())
    np.testing.assert_array_equal(again.apply(colours), scaled)
    with pytest.raises(ValueError):
        ColourScaling.fit(np.zeros((0, COLOUR_DIM)), 0.1)
    with pytest.raises(ValueError, match="must match"):
        ColourScaling.from_state({"mean": np.zeros(3), "scale": np.zeros(4)})
