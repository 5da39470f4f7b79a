"""The synthetic catalogue must look like product photos and carry trustworthy attributes."""

from __future__ import annotations

import csv
import dataclasses

import cv2
import numpy as np
import pytest

from tiefwatch.synthetic import (
    ATTRIBUTE_NAMES,
    BRACELET_COLOURS,
    CASE_COLOURS,
    DIAL_COLOURS,
    DIAL_RGB,
    HANDS,
    INDICES,
    SHAPES,
    STRAP_COLOURS,
    STRAP_KINDS,
    WatchAttributes,
    make_catalog,
    random_attributes,
    render_watch,
    shared_attributes,
)

SIZE = 96
BASE = WatchAttributes("round", "silver", "blue", "leather", "brown", "baton", "dots", False)


def _non_white(image: np.ndarray, threshold: int = 245) -> np.ndarray:
    return (image < threshold).any(axis=2)


def test_render_is_rgb_uint8_of_requested_size() -> None:
    for size, rng in ((SIZE, None), (64, np.random.default_rng(1)), (128, np.random.default_rng(2))):
        image = render_watch(BASE, size=size, rng=rng)
        assert image.shape == (size, size, 3)
        assert image.dtype == np.uint8


def test_render_is_rgb_not_bgr() -> None:
    """A blue dial must be blue in channel 2 at the API boundary."""
    image = render_watch(BASE, size=SIZE).astype(int)
    centre = image[SIZE // 2 + 8, SIZE // 2 + 8]
    assert centre[2] > centre[0] + 60


def test_background_is_white_and_strap_runs_off_top_and_bottom() -> None:
    image = render_watch(BASE, size=SIZE, rng=np.random.default_rng(3))
    for corner in (image[:4, :4], image[:4, -4:], image[-4:, :4], image[-4:, -4:]):
        assert corner.min() == 255
    side_columns = np.concatenate([image[:, : SIZE // 8], image[:, -SIZE // 8 :]], axis=1)
    assert side_columns.min() >= 235, "shadow must stay very light"
    assert _non_white(image[:1]).any() and _non_white(image[-1:]).any(), "strap should leave the frame"


def test_watch_is_centred_and_case_fills_about_half_the_width() -> None:
    for shape in SHAPES:
        attrs = dataclasses.replace(BASE, shape=shape)
        mask = _non_white(render_watch(attrs, size=SIZE))
        row = mask[SIZE // 2]  # through the case and crown
        columns = np.flatnonzero(row)
        width = (columns.max() - columns.min() + 1) / SIZE
        assert 0.45 <= width <= 0.68, (shape, width)
        centre = (columns.max() + columns.min()) / 2 / SIZE
        assert abs(centre - 0.5) < 0.06, (shape, centre)


def _patch(image: np.ndarray, fx: float, fy: float, half: int = 2) -> np.ndarray:
    size = image.shape[0]
    x, y = round(fx * size), round(fy * size)
    return image[y - half : y + half + 1, x - half : x + half + 1].reshape(-1, 3).astype(float)


def test_round_and_square_cases_differ_in_the_corners() -> None:
    """Where a square case has its corners a round case leaves white background."""
    corner_points = [(0.5 + dx * 0.21, 0.5 + dy * 0.21) for dx in (-1, 1) for dy in (-1, 1)]
    round_image = render_watch(dataclasses.replace(BASE, shape="round", case_colour="black"), size=SIZE)
    square_image = render_watch(dataclasses.replace(BASE, shape="square", case_colour="black"), size=SIZE)
    for fx, fy in corner_points:
        assert _patch(round_image, fx, fy, 0).mean() > 235
        assert _patch(square_image, fx, fy, 0).mean() < 120


def test_tonneau_bulges_at_the_middle_unlike_square() -> None:
    def left_edge(image: np.ndarray, fy: float) -> int:
        return int(np.flatnonzero(_non_white(image)[round(fy * SIZE)])[0])

    tonneau = render_watch(dataclasses.replace(BASE, shape="tonneau", thin_strap=True), size=SIZE)
    square = render_watch(dataclasses.replace(BASE, shape="square", thin_strap=True), size=SIZE)
    assert left_edge(tonneau, 0.26) - left_edge(tonneau, 0.5) >= 3  # barrel: widest at the middle
    assert abs(left_edge(square, 0.32) - left_edge(square, 0.5)) <= 1


@pytest.mark.parametrize("dial_colour", DIAL_COLOURS)
def test_dial_colour_shows_on_the_dial(dial_colour: str) -> None:
    image = render_watch(dataclasses.replace(BASE, dial_colour=dial_colour), size=SIZE)
    # Towards half past four the 10:10 hands and the seconds hand leave the dial bare.
    seen = np.median(_patch(image, 0.57, 0.57), axis=0)
    assert np.abs(seen - np.array(DIAL_RGB[dial_colour])).max() < 25, (dial_colour, seen)


def test_white_dial_has_a_dark_rim_between_dial_and_case() -> None:
    """So a white dial on a silver case still reads as a dial (and survives background removal)."""
    image = render_watch(dataclasses.replace(BASE, dial_colour="white", case_colour="silver"), size=SIZE)
    # Along the bare half-past-four diagonal: white dial, then a dark rim before the case edge.
    diagonal = np.array([image[SIZE // 2 + k, SIZE // 2 + k].mean() for k in range(SIZE // 4)])
    assert diagonal[3 : round(0.12 * SIZE)].min() > 200
    assert diagonal[round(0.12 * SIZE) : round(0.2 * SIZE)].min() < 170


def test_thin_strap_is_narrower() -> None:
    wide = _non_white(render_watch(dataclasses.replace(BASE, thin_strap=False), size=SIZE))[1].sum()
    thin = _non_white(render_watch(dataclasses.replace(BASE, thin_strap=True), size=SIZE))[1].sum()
    assert thin < 0.8 * wide


def test_bracelet_links_and_rubber_grooves_show_but_leather_is_plain() -> None:
    def vertical_texture(kind: str, colour: str) -> float:
        image = render_watch(dataclasses.replace(BASE, strap_kind=kind, strap_colour=colour), size=SIZE)
        column = image[: round(0.2 * SIZE), round(0.5 * SIZE + 0.07 * SIZE)].astype(float).mean(axis=1)
        return float(column.std())

    leather = vertical_texture("leather", "brown")
    assert vertical_texture("bracelet", "silver") > leather + 8
    assert vertical_texture("rubber", "brown") > leather + 3


def test_same_model_renders_similar_and_different_models_differ() -> None:
    other = WatchAttributes("square", "gold", "white", "bracelet", "gold", "dauphine", "roman", True)
    same = [render_watch(BASE, size=SIZE, rng=np.random.default_rng(seed)).astype(float) for seed in (1, 2)]
    different = render_watch(other, size=SIZE, rng=np.random.default_rng(1)).astype(float)
    same_diff = np.abs(same[0] - same[1]).mean()
    different_diff = np.abs(same[0] - different).mean()
    assert same_diff > 0, "an rng must add some nuisance variation"
    assert same_diff < 0.4 * different_diff


def test_render_is_deterministic() -> None:
    assert np.array_equal(render_watch(BASE, size=SIZE), render_watch(BASE, size=SIZE))
    first = render_watch(BASE, size=SIZE, rng=np.random.default_rng(5))
    assert np.array_equal(first, render_watch(BASE, size=SIZE, rng=np.random.default_rng(5)))


def test_random_attributes_are_valid_and_cover_the_choices() -> None:
    rng = np.random.default_rng(0)
    drawn = [random_attributes(rng) for _ in range(400)]
    for name, choices in (
        ("shape", SHAPES),
        ("case_colour", CASE_COLOURS),
        ("dial_colour", DIAL_COLOURS),
        ("strap_kind", STRAP_KINDS),
        ("strap_colour", STRAP_COLOURS),
        ("hands", HANDS),
        ("indices", INDICES),
    ):
        assert {getattr(a, name) for a in drawn} == set(choices), name
    assert {a.thin_strap for a in drawn} == {False, True}
    assert all(a.strap_colour in BRACELET_COLOURS for a in drawn if a.strap_kind == "bracelet")


def test_shared_attributes_counts_agreeing_fields() -> None:
    assert shared_attributes(BASE, BASE) == 8
    one_off = dataclasses.replace(BASE, dial_colour="green")
    assert shared_attributes(BASE, one_off) == shared_attributes(one_off, BASE) == 7
    assert shared_attributes(BASE, dataclasses.replace(one_off, thin_strap=True)) == 6
    opposite = WatchAttributes("square", "gold", "white", "bracelet", "gold", "dauphine", "roman", True)
    assert shared_attributes(BASE, opposite) == 0


def test_attributes_round_trip_through_dicts_and_csv_strings() -> None:
    assert WatchAttributes.from_dict(BASE.as_dict()) == BASE
    as_strings = {key: str(value) for key, value in BASE.as_dict().items()} | {"file": "x.png"}
    assert as_strings["thin_strap"] == "False"
    assert WatchAttributes.from_dict(as_strings) == BASE
    assert list(BASE.as_dict()) == [*ATTRIBUTE_NAMES, "thin_strap"]
    with pytest.raises(ValueError):
        WatchAttributes.from_dict(as_strings | {"shape": "hexagon"})
    with pytest.raises(ValueError):
        WatchAttributes.from_dict(as_strings | {"thin_strap": "maybe"})


def test_make_catalog_writes_images_and_a_csv_that_round_trips(tmp_path) -> None:
    items = make_catalog(tmp_path / "cat", n=6, seed=3, size=64)
    assert [path.name for path, _ in items] == [f"watch_{i:04d}.png" for i in range(6)]
    assert len({attrs for _, attrs in items}) == 6, "distinct models while n allows"
    for path, attrs in items:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        assert image.shape == (64, 64, 3)
        index = int(path.stem.split("_")[1])
        assert np.array_equal(image, render_watch(attrs, size=64, rng=np.random.default_rng((3, index))))

    with open(tmp_path / "cat" / "attributes.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["file", *ATTRIBUTE_NAMES, "thin_strap"]
        rows = list(reader)
    assert [(row["file"], WatchAttributes.from_dict(row)) for row in rows] == [
        (path.name, attrs) for path, attrs in items
    ]
    assert sorted(p.name for p in (tmp_path / "cat").iterdir()) == sorted(
        [path.name for path, _ in items] + ["attributes.csv"]
    ), "no temp files left behind"


def test_make_catalog_is_deterministic_for_a_seed(tmp_path) -> None:
    first = make_catalog(tmp_path / "a", n=3, seed=11, size=48)
    second = make_catalog(tmp_path / "b", n=3, seed=11, size=48)
    other = make_catalog(tmp_path / "c", n=3, seed=12, size=48)
    assert [a for _, a in first] == [a for _, a in second]
    assert [a for _, a in first] != [a for _, a in other]
    for (p1, _), (p2, _) in zip(first, second, strict=True):
        assert p1.read_bytes() == p2.read_bytes()
    csv_a, csv_b = (tmp_path / name / "attributes.csv" for name in "ab")
    assert csv_a.read_bytes() == csv_b.read_bytes()
