"""Procedurally drawn catalogue watches with known attributes.

Why: ``tiefwatch demo`` and the tests need a catalogue that exists without downloads, and a simulated
annotator needs ground truth ("near" shares more attributes with the anchor than "far"). Every image is
drawn like an e-shop product photo (upright watch on pure white, strap running off the frame) so the same
crop / embed / rank pipeline that serves real photos can run on it unchanged.

Images are RGB uint8 arrays (HxWx3) at the API boundary; drawing happens at 4x and is downsampled with
``INTER_AREA`` for anti-aliasing.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np

from tiefwatch.storage import write_bytes_atomic, write_text_atomic

SHAPES = ("round", "square", "tonneau")
CASE_COLOURS = ("silver", "gold", "black", "rose")
DIAL_COLOURS = ("white", "black", "blue", "green", "champagne", "brown")
STRAP_KINDS = ("leather", "bracelet", "rubber", "nato")
STRAP_COLOURS = ("black", "brown", "tan", "blue", "silver", "gold", "olive")
HANDS = ("baton", "sword", "dauphine")
INDICES = ("baton", "arabic", "roman", "dots")
ATTRIBUTE_NAMES = ("shape", "case_colour", "dial_colour", "strap_kind", "strap_colour", "hands", "indices")

# Metal links come in metal finishes only: ``random_attributes`` keeps to this, ``render_watch`` draws any.
BRACELET_COLOURS = ("silver", "gold", "black")

_CHOICES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "case_colour": CASE_COLOURS,
    "dial_colour": DIAL_COLOURS,
    "strap_kind": STRAP_KINDS,
    "strap_colour": STRAP_COLOURS,
    "hands": HANDS,
    "indices": INDICES,
}

CASE_RGB: dict[str, tuple[int, int, int]] = {
    "silver": (192, 196, 202),
    "gold": (214, 176, 86),
    "black": (46, 46, 50),
    "rose": (214, 150, 126),
}
DIAL_RGB: dict[str, tuple[int, int, int]] = {
    "white": (247, 247, 244),
    "black": (22, 22, 26),
    "blue": (26, 60, 142),
    "green": (26, 96, 60),
    "champagne": (226, 204, 152),
    "brown": (104, 64, 38),
}
STRAP_RGB: dict[str, tuple[int, int, int]] = {
    "black": (34, 34, 36),
    "brown": (112, 66, 34),
    "tan": (194, 140, 86),
    "blue": (36, 58, 116),
    "silver": (184, 188, 194),
    "gold": (206, 168, 84),
    "olive": (96, 104, 54),
}

_SUPERSAMPLE = 4
_SECONDS_RED = (200, 36, 36)
_ARABIC = {0: "12", 3: "3", 6: "6", 9: "9"}
_ROMAN = {0: "XII", 3: "III", 6: "VI", 9: "IX"}


@dataclass(frozen=True)
class WatchAttributes:
    """The ground truth of one synthetic watch; hashable so catalogues can avoid duplicate models."""

    shape: str
    case_colour: str
    dial_colour: str
    strap_kind: str
    strap_colour: str
    hands: str
    indices: str
    thin_strap: bool

    def __post_init__(self) -> None:
        for name in ATTRIBUTE_NAMES:
            value = getattr(self, name)
            if value not in _CHOICES[name]:
                raise ValueError(f"{name}={value!r} is not one of {_CHOICES[name]}")
        if not isinstance(self.thin_strap, bool):
            raise TypeError(f"thin_strap must be a bool, got {self.thin_strap!r}")

    def as_dict(self) -> dict[str, str | bool]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> WatchAttributes:
        """Inverse of ``as_dict``; also accepts CSV rows (strings, ``"True"``/``"False"``, extra columns)."""
        values: dict[str, object] = {name: str(d[name]).strip() for name in ATTRIBUTE_NAMES}
        values["thin_strap"] = _parse_bool(d["thin_strap"])
        return cls(**values)  # type: ignore[arg-type]


def _parse_bool(value: object) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def random_attributes(rng: np.random.Generator) -> WatchAttributes:
    """Uniform over each attribute, except that bracelets are metal-coloured."""
    strap_kind = str(rng.choice(STRAP_KINDS))
    strap_colours = BRACELET_COLOURS if strap_kind == "bracelet" else STRAP_COLOURS
    return WatchAttributes(
        shape=str(rng.choice(SHAPES)),
        case_colour=str(rng.choice(CASE_COLOURS)),
        dial_colour=str(rng.choice(DIAL_COLOURS)),
        strap_kind=strap_kind,
        strap_colour=str(rng.choice(strap_colours)),
        hands=str(rng.choice(HANDS)),
        indices=str(rng.choice(INDICES)),
        thin_strap=bool(rng.random() < 0.5),
    )


def _all_attribute_combinations() -> list[WatchAttributes]:
    combos = []
    for shape, case, dial, kind, hands, indices, thin in itertools.product(
        SHAPES, CASE_COLOURS, DIAL_COLOURS, STRAP_KINDS, HANDS, INDICES, (False, True)
    ):
        for strap_colour in BRACELET_COLOURS if kind == "bracelet" else STRAP_COLOURS:
            combos.append(WatchAttributes(shape, case, dial, kind, strap_colour, hands, indices, thin))
    return combos


def shared_attributes(a: WatchAttributes, b: WatchAttributes) -> int:
    """How many of the eight attributes (the seven names plus ``thin_strap``) agree: 0..8."""
    return sum(getattr(a, name) == getattr(b, name) for name in (*ATTRIBUTE_NAMES, "thin_strap"))


# --------------------------------------------------------------------------------------------- drawing


def _luminance(rgb: tuple[int, int, int]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _shade(rgb: tuple[int, int, int], factor: np.ndarray) -> np.ndarray:
    """(N,3) colours: ``rgb`` scaled per pixel, so shading is one multiply."""
    return np.asarray(rgb, np.float32)[None, :] * factor.astype(np.float32)[:, None]


def _mix(colours: np.ndarray, target: tuple[int, int, int], amount: np.ndarray | float) -> np.ndarray:
    amount = np.asarray(amount, np.float32)
    if amount.ndim == 1:
        amount = amount[:, None]
    return colours * (1.0 - amount) + np.asarray(target, np.float32) * amount


def _fill_polygon(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 255)
    return mask > 0


def _distance_inside(mask: np.ndarray) -> np.ndarray:
    """Distance (px) of each pixel inside ``mask`` to the nearest pixel outside; 0 outside."""
    return cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)


def _round_corners(mask: np.ndarray, radius: float) -> np.ndarray:
    """Morphological opening with a disc: convex corners become arcs of ``radius``."""
    core = _distance_inside(mask) > radius
    return cv2.distanceTransform((~core).astype(np.uint8), cv2.DIST_L2, 5) <= radius


@dataclass(frozen=True)
class _Pose:
    """Nuisance variation between two photos of the same model."""

    scale: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0
    light: float = 1.0
    light_angle: float = 0.0
    hours: float = 10.0
    minutes: float = 10.0
    seconds: float = 35.0

    @classmethod
    def sample(cls, rng: np.random.Generator | None) -> _Pose:
        if rng is None:
            return cls()  # the classic 10:10 product shot
        t = rng.uniform(0.0, 12 * 3600.0)
        return cls(
            scale=float(rng.uniform(0.97, 1.03)),
            shift_x=float(rng.uniform(-0.006, 0.006)),
            shift_y=float(rng.uniform(-0.006, 0.006)),
            light=float(rng.uniform(0.96, 1.04)),
            light_angle=float(rng.uniform(-0.25, 0.25)),
            hours=t / 3600.0,
            minutes=(t / 60.0) % 60.0,
            seconds=t % 60.0,
        )


def render_watch(
    attrs: WatchAttributes,
    size: int = 128,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """An RGB uint8 ``size`` x ``size`` product photo of ``attrs``; ``rng`` adds pose/lighting nuisance."""
    if size < 24:
        raise ValueError(f"size must be at least 24 px, got {size}")
    pose = _Pose.sample(rng)
    s = size * _SUPERSAMPLE
    unit = s * pose.scale  # lengths below are fractions of the frame width
    cx, cy = s / 2 + pose.shift_x * s, s / 2 + pose.shift_y * s
    # Full-size coordinate views (no copies) so masks can index them directly.
    x = np.broadcast_to(np.arange(s, dtype=np.float32)[None, :] - np.float32(cx), (s, s))
    y = np.broadcast_to(np.arange(s, dtype=np.float32)[:, None] - np.float32(cy), (s, s))
    img = np.full((s, s, 3), 255.0, np.float32)

    # Light comes from the top left: ``ramp`` is -1 there and +1 at the bottom right.
    angle = math.pi / 4 + pose.light_angle
    ramp = np.clip((x * math.cos(angle) + y * math.sin(angle)) / (0.3 * unit), -1.0, 1.0)

    case_mask, case_half_height, case_right = _case_mask(attrs.shape, x, y, unit)
    strap_half = (0.108 if attrs.thin_strap else 0.155) * unit
    strap_width_at = strap_half * (1.0 - 0.12 * np.clip((np.abs(y) - 0.2 * unit) / (0.5 * s), 0.0, 1.0))
    strap_mask = np.abs(x) <= strap_width_at
    lug_mask = np.zeros_like(case_mask)
    if attrs.shape != "tonneau":  # a tonneau's strap meets the barrel directly
        lug_width = 0.036 * unit
        lug_mask = (
            (np.abs(x) >= strap_half - 0.002 * unit)
            & (np.abs(x) <= strap_half + lug_width)
            & (np.abs(y) <= case_half_height + 0.048 * unit)
        )
        lug_mask = _round_corners(lug_mask, 0.012 * unit)
    crown_mask = (np.abs(x - case_right - 0.011 * unit) <= 0.031 * unit) & (np.abs(y) <= 0.036 * unit)
    crown_mask = _round_corners(crown_mask, 0.01 * unit)

    watch_mask = case_mask | strap_mask | lug_mask | crown_mask
    _draw_shadow(img, watch_mask, s)

    _draw_strap(img, strap_mask, x, y, strap_width_at, attrs, unit)
    case_rgb = CASE_RGB[attrs.case_colour]
    for part in (lug_mask, crown_mask):
        img[part] = _shade(case_rgb, 1.0 - 0.22 * ramp[part])
        _outline(img, part, 0.006 * unit, 0.72)
    ridges = crown_mask & (np.mod(y + 0.036 * unit, 0.018 * unit) < 0.006 * unit) & (x > case_right)
    img[ridges] *= 0.7

    dial_mask, dial_radius = _draw_case(img, case_mask, x, y, ramp, case_rgb, unit)
    _draw_dial(img, dial_mask, x, y, ramp, dial_radius, cx, cy, attrs, pose, unit)

    img[watch_mask] *= pose.light
    small = cv2.resize(np.clip(img, 0, 255), (size, size), interpolation=cv2.INTER_AREA)
    return np.clip(np.round(small), 0, 255).astype(np.uint8)


def _case_mask(shape: str, x: np.ndarray, y: np.ndarray, unit: float) -> tuple[np.ndarray, float, float]:
    """Case silhouette, its half height and its right edge (where the crown sits)."""
    if shape == "round":
        radius = 0.262 * unit
        return x * x + y * y <= radius * radius, radius, radius
    if shape == "square":
        half, corner = 0.232 * unit, 0.06 * unit
        qx, qy = np.abs(x) - (half - corner), np.abs(y) - (half - corner)
        outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
        return outside <= corner, half, half
    if shape == "tonneau":
        half_height, mid_half_width, end_half_width = 0.292 * unit, 0.238 * unit, 0.178 * unit
        side = end_half_width + (mid_half_width - end_half_width) * (1.0 - (y / half_height) ** 2)
        top = half_height + 0.035 * unit * (1.0 - np.clip(x / end_half_width, -1, 1) ** 2)
        mask = (np.abs(x) <= side) & (np.abs(y) <= top)
        return _round_corners(mask, 0.05 * unit), half_height + 0.035 * unit, mid_half_width
    raise ValueError(f"unknown shape {shape!r}")


def _outline(img: np.ndarray, mask: np.ndarray, width: float, factor: float) -> None:
    """Darken a thin rim so light parts still separate from the white background (and from each other)."""
    rim = mask & (_distance_inside(mask) <= width)
    img[rim] *= factor


def _draw_shadow(img: np.ndarray, mask: np.ndarray, s: int) -> None:
    """Soft drop shadow, down and to the right, at most ~8 % darker so the background stays near white.

    Blurred at 1/4 resolution: a shadow has no detail worth the cost of a full-resolution blur.
    """
    small = s // _SUPERSAMPLE
    coarse = cv2.resize(mask.astype(np.float32), (small, small), interpolation=cv2.INTER_AREA)
    shift = np.float32([[1, 0, 0.012 * small], [0, 1, 0.02 * small]])
    coarse = cv2.GaussianBlur(cv2.warpAffine(coarse, shift, (small, small)), (0, 0), sigmaX=0.018 * small)
    coarse[coarse < 0.03] = 0.0
    shadow = cv2.resize(coarse, (s, s), interpolation=cv2.INTER_LINEAR)
    img *= (1.0 - 0.08 * shadow)[..., None]


def _draw_strap(
    img: np.ndarray,
    mask: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    half_width: np.ndarray,
    attrs: WatchAttributes,
    unit: float,
) -> None:
    rgb = STRAP_RGB[attrs.strap_colour]
    xs, ys = x[mask], y[mask]
    across = xs / half_width[mask]  # -1 .. 1 across the strap
    ay = np.abs(ys)
    kind = attrs.strap_kind
    if kind == "leather":
        colours = _shade(rgb, 1.0 - 0.2 * across**4)
        stitch_target = (250, 244, 228) if _luminance(rgb) < 150 else (70, 45, 25)
        stitches = (np.abs(np.abs(across) - 0.8) < 0.045) & (np.mod(ay, 0.034 * unit) < 0.018 * unit)
        colours[stitches] = _mix(colours[stitches], stitch_target, 0.55)
        holes = np.zeros_like(stitches)
        for hole_y in (0.37, 0.42, 0.47):
            holes |= np.hypot(xs, ys - hole_y * unit) < 0.011 * unit
        colours[holes] *= 0.35
    elif kind == "bracelet":
        centre_link = np.abs(across) < 0.34
        factor = 0.8 + 0.3 * np.cos(across * math.pi / 2) ** 0.7 + 0.1 * centre_link
        period = 0.052 * unit
        phase = np.mod(ay + centre_link * period / 2, period) / period
        factor *= 1.06 - 0.12 * phase  # each link catches the light at its upper edge
        colours = _shade(rgb, factor)
        gaps = (phase < 0.14) | (np.abs(np.abs(across) - 0.34) < 0.035)
        colours[gaps] *= 0.55
    elif kind == "rubber":
        colours = _shade(rgb, 0.95 - 0.12 * across**2)
        grooves = (np.abs(across) < 0.56) & (np.mod(ay, 0.045 * unit) < 0.012 * unit) & (ay > 0.2 * unit)
        colours[grooves] *= 0.6
    elif kind == "nato":
        stripe_rgb = _nato_stripe(rgb)
        colours = _shade(rgb, np.ones_like(across))
        stripes = (np.abs(across) < 0.2) | (np.abs(np.abs(across) - 0.55) < 0.07)
        colours[stripes] = np.asarray(stripe_rgb, np.float32)
        colours *= (1.0 - 0.06 * (np.mod(ay, 0.012 * unit) < 0.004 * unit) - 0.12 * across**4)[:, None]
        keeper = np.abs(ys - 0.4 * unit) < 0.016 * unit
        colours[keeper] = _shade(CASE_RGB["silver"], 1.0 - 0.15 * across[keeper])
    else:
        raise ValueError(f"unknown strap kind {kind!r}")
    edge = np.abs(across) > 0.965
    colours[edge] *= 0.72
    img[mask] = colours


def _nato_stripe(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """The second tone of a two-tone NATO: a light stripe on dark straps, a dark one on light straps."""
    if _luminance(rgb) < 120:
        return tuple(int(c + (255 - c) * 0.55) for c in rgb)  # type: ignore[return-value]
    return tuple(int(c * 0.45) for c in rgb)  # type: ignore[return-value]


def _draw_case(
    img: np.ndarray,
    case_mask: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    ramp: np.ndarray,
    case_rgb: tuple[int, int, int],
    unit: float,
) -> tuple[np.ndarray, float]:
    """Case with a top-left highlight and a bevelled bezel; returns the dial mask and dial 'radius'."""
    depth = _distance_inside(case_mask)
    bezel = 0.034 * unit
    r = ramp[case_mask]
    colours = _shade(case_rgb, 1.0 - 0.24 * r)
    glint_x, glint_y = x[case_mask] + 0.12 * unit, y[case_mask] + 0.13 * unit
    glint = np.exp(-(glint_x**2 + glint_y**2) / (0.09 * unit) ** 2)
    colours = _mix(colours, (255, 255, 255), 0.5 * glint)
    bevel = (depth[case_mask] > 0.55 * bezel) & (depth[case_mask] <= bezel)
    colours[bevel] = _shade(case_rgb, 1.0 + 0.2 * r[bevel])
    img[case_mask] = colours
    _outline(img, case_mask, 0.006 * unit, 0.7)

    dial_mask = depth > bezel
    ring = (depth > bezel) & (depth <= bezel + 0.007 * unit)
    img[ring] = _mix(img[ring], (40, 40, 44), 0.6)  # keeps a white dial reading as a dial
    return dial_mask, float(depth.max() - bezel)


def _edge_distance(mask: np.ndarray, cx: float, cy: float, theta: float, limit: float) -> float:
    """Distance from the centre to the dial edge along clock angle ``theta`` (0 = 12 o'clock, clockwise)."""
    radii = np.arange(0.0, limit, 1.0)
    xs = np.clip(np.round(cx + radii * math.sin(theta)).astype(int), 0, mask.shape[1] - 1)
    ys = np.clip(np.round(cy - radii * math.cos(theta)).astype(int), 0, mask.shape[0] - 1)
    outside = np.flatnonzero(~mask[ys, xs])
    return float(radii[outside[0]]) if outside.size else limit


def _along(cx: float, cy: float, theta: float, pairs: list[tuple[float, float]]) -> np.ndarray:
    """Points given as (along, across) the clock direction ``theta`` -> image coordinates."""
    dx, dy = math.sin(theta), -math.cos(theta)
    return np.array([(cx + a * dx - b * dy, cy + a * dy + b * dx) for a, b in pairs], np.float32)


def _box(start: float, end: float, half_width: float) -> list[tuple[float, float]]:
    """A bar from ``start`` to ``end`` along a direction, as (along, across) corners."""
    return [(start, -half_width), (end, -half_width), (end, half_width), (start, half_width)]


def _draw_dial(
    img: np.ndarray,
    dial_mask: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    ramp: np.ndarray,
    radius: float,
    cx: float,
    cy: float,
    attrs: WatchAttributes,
    pose: _Pose,
    unit: float,
) -> None:
    dial_rgb = DIAL_RGB[attrs.dial_colour]
    r2 = (x[dial_mask] ** 2 + y[dial_mask] ** 2) / radius**2
    img[dial_mask] = _shade(dial_rgb, 1.03 - 0.07 * np.clip(r2, 0, 1.5) - 0.04 * ramp[dial_mask])

    light_dial = _luminance(dial_rgb) > 140
    ink = (34, 34, 40) if light_dial else (240, 240, 234)
    shape = dial_mask.shape

    # Indices sit a fixed margin inside the dial edge, whatever the case shape.
    marks = np.zeros(shape, np.uint8)
    for hour in range(12):
        theta = hour * math.pi / 6
        edge = _edge_distance(dial_mask, cx, cy, theta, 2 * radius)
        outer = edge - 0.09 * radius
        quarter = hour % 3 == 0
        if attrs.indices == "baton" or (attrs.indices == "roman" and not quarter):
            length, width = (0.17, 0.05) if quarter else (0.12, 0.034)
            if attrs.indices == "roman":
                length, width = 0.08, 0.02
            half = width * radius / 2
            inner = outer - length * radius
            poly = _along(cx, cy, theta, [(inner, -half), (outer, -half), (outer, half), (inner, half)])
            cv2.fillPoly(marks, [np.round(poly).astype(np.int32)], 255)
        elif attrs.indices == "dots" or (attrs.indices == "arabic" and not quarter):
            dot = (0.07 if hour == 0 else 0.048) * radius
            if attrs.indices == "arabic":
                dot = 0.03 * radius
            px, py = _along(cx, cy, theta, [(outer - dot, 0.0)])[0]
            cv2.circle(marks, (round(px), round(py)), max(1, round(dot)), 255, -1)
        else:
            numerals = _ARABIC if attrs.indices == "arabic" else _ROMAN
            text = numerals[hour]
            font = cv2.FONT_HERSHEY_DUPLEX if attrs.indices == "arabic" else cv2.FONT_HERSHEY_TRIPLEX
            _draw_text(marks, text, font, 0.25 * radius, outer - 0.17 * radius, cx, cy, theta)
    # A printed "logo" under 12 makes the dial read as a dial even without hands in view.
    logo = _along(cx, cy, 0.0, _box(0.385 * radius, 0.42 * radius, 0.1 * radius))
    cv2.fillPoly(marks, [np.round(logo).astype(np.int32)], 255)
    marks_mask = (marks > 0) & dial_mask
    img[marks_mask] = np.asarray(ink, np.float32)

    _draw_hands(img, dial_mask, radius, cx, cy, attrs.hands, ink, pose, unit)


def _draw_text(
    mask: np.ndarray, text: str, font: int, height: float, distance: float, cx: float, cy: float, theta: float
) -> None:
    """Upright numeral centred ``distance`` from the centre along ``theta``, ``height`` px tall."""
    (_, unit_height), _ = cv2.getTextSize(text, font, 1.0, 1)
    scale = height / unit_height
    thickness = max(1, round(height * 0.11))
    (w, h), _ = cv2.getTextSize(text, font, scale, thickness)
    px, py = cx + distance * math.sin(theta), cy - distance * math.cos(theta)
    # Keep wide numerals (XII, III) from running into the dial edge sideways.
    px -= math.sin(theta) * max(0.0, w / 2 - h / 2)
    cv2.putText(mask, text, (round(px - w / 2), round(py + h / 2)), font, scale, 255, thickness, cv2.LINE_8)


def _hand_outline(style: str, length: float, width: float) -> list[tuple[float, float]]:
    tail = -0.12 * length
    if style == "baton":
        return [(tail, -width), (length, -width), (length, width), (tail, width)]
    if style == "sword":
        half = [(tail, 0.5 * width), (0.2 * length, width), (0.8 * length, 1.25 * width)]
        return [(a, -b) for a, b in half] + [(length, 0.0)] + half[::-1]
    if style == "dauphine":
        half = [(tail, 0.35 * width), (0.25 * length, 1.7 * width)]
        return [(a, -b) for a, b in half] + [(length, 0.0)] + half[::-1]
    raise ValueError(f"unknown hand style {style!r}")


def _draw_hands(
    img: np.ndarray,
    dial_mask: np.ndarray,
    radius: float,
    cx: float,
    cy: float,
    style: str,
    ink: tuple[int, int, int],
    pose: _Pose,
    unit: float,
) -> None:
    shape = dial_mask.shape
    hour_theta = (pose.hours % 12) * math.pi / 6
    minute_theta = pose.minutes * math.pi / 30
    second_theta = pose.seconds * math.pi / 30
    hands_mask = np.zeros(shape, bool)
    facet_mask = np.zeros(shape, bool)
    for theta, length, width in ((hour_theta, 0.55, 0.05), (minute_theta, 0.84, 0.036)):
        outline = _hand_outline(style, length * radius, width * radius)
        hands_mask |= _fill_polygon(shape, _along(cx, cy, theta, outline))
        if style == "dauphine":  # one facet catches the light
            half = [(0.0, 0.0), (0.25 * length * radius, -1.7 * width * radius), (length * radius, 0.0)]
            facet_mask |= _fill_polygon(shape, _along(cx, cy, theta, half))
    shadow = np.roll(hands_mask, (round(0.006 * unit), round(0.004 * unit)), axis=(0, 1))
    shadow &= dial_mask & ~hands_mask
    img[shadow] *= 0.78
    img[hands_mask] = np.asarray(ink, np.float32)
    facet_rgb = (120, 120, 128) if _luminance(ink) < 128 else (190, 190, 196)
    img[facet_mask] = np.asarray(facet_rgb, np.float32)

    seconds = _along(cx, cy, second_theta, _box(-0.22 * radius, 0.9 * radius, 0.009 * radius))
    seconds_mask = _fill_polygon(shape, seconds)
    img[seconds_mask] = np.asarray(_SECONDS_RED, np.float32)
    cap = np.zeros(shape, np.uint8)
    cv2.circle(cap, (round(cx), round(cy)), max(2, round(0.055 * radius)), 255, -1)
    img[cap > 0] = np.asarray(ink, np.float32)
    cv2.circle(cap, (round(cx), round(cy)), max(1, round(0.028 * radius)), 128, -1)
    img[cap == 128] = np.asarray(_SECONDS_RED, np.float32)


# ------------------------------------------------------------------------------------------- catalogue


def _distinct_attributes(n: int, rng: np.random.Generator) -> list[WatchAttributes]:
    """``n`` attribute sets, all different while ``n`` allows, then repeating the cycle."""
    combos = _all_attribute_combinations()
    if n > len(combos) // 4:  # rejection sampling would crawl; permute the whole space instead
        order = np.concatenate([rng.permutation(len(combos)) for _ in range(-(-n // len(combos)))])
        return [combos[i] for i in order[:n]]
    seen: set[WatchAttributes] = set()
    chosen: list[WatchAttributes] = []
    while len(chosen) < n:
        attrs = random_attributes(rng)
        if attrs not in seen:
            seen.add(attrs)
            chosen.append(attrs)
    return chosen


def make_catalog(out_dir: Path, n: int, seed: int = 0, size: int = 128) -> list[tuple[Path, WatchAttributes]]:
    """Write ``watch_0000.png``.. and ``attributes.csv`` into ``out_dir``; one seed, one set of files."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    items: list[tuple[Path, WatchAttributes]] = []
    for index, attrs in enumerate(_distinct_attributes(n, rng)):
        image = render_watch(attrs, size=size, rng=np.random.default_rng((seed, index)))
        ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if not ok:
            raise OSError("PNG encoding failed")
        path = out_dir / f"watch_{index:04d}.png"
        write_bytes_atomic(path, png.tobytes())
        items.append((path, attrs))

    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(["file", *ATTRIBUTE_NAMES, "thin_strap"])
    for path, attrs in items:
        row = attrs.as_dict()
        writer.writerow([path.name, *(row[name] for name in ATTRIBUTE_NAMES), row["thin_strap"]])
    write_text_atomic(out_dir / "attributes.csv", table.getvalue())
    return items


def attribute_triplets(
    items: Sequence[tuple[str, WatchAttributes]], count: int, rng: np.random.Generator, min_gap: int = 2
) -> list[tuple[str, str, str]]:
    """A simulated annotator: (anchor, near, far) where near shares at least ``min_gap`` more attributes with the
    anchor than far does — the clear calls a person would make without hesitating."""
    if len(items) < 3:
        raise ValueError("need at least three watches to make a triplet")
    triplets: set[tuple[str, str, str]] = set()
    attempts = 0
    while len(triplets) < count and attempts < count * 50:
        attempts += 1
        a, b, c = rng.choice(len(items), size=3, replace=False)
        anchor, first, second = items[int(a)], items[int(b)], items[int(c)]
        gap = shared_attributes(anchor[1], first[1]) - shared_attributes(anchor[1], second[1])
        if abs(gap) < min_gap:
            continue
        near, far = (first, second) if gap > 0 else (second, first)
        triplets.add((anchor[0], near[0], far[0]))
    return sorted(triplets)
