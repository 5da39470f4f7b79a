"""A second photo simulator, written apart from ``bbox.synth`` and never used to train anything.

Everything the product learns from (the crop network, the photo-tuned backbone tail, the re-ranker's shots, the
catalogue views) sees photos from ``bbox.synth``. A benchmark drawn from the same simulator measures how well the
product learned *that simulator*; real phone photos, and the independent checks run on what lands, come from
elsewhere (``../shared/MEASURED.md``: the same pipeline at 0.90 R@1 on another simulator's standard photos, 0.56-0.63
on its close-up, far and harsh ones). This module is that elsewhere, made here: each step differs from ours on
purpose, so that a gain which only fits our simulator's habits shows up as no gain.

- **Cut-out**: the border's colour flood-filled from the border (ours: ``bbox.segment``'s colour and edge test).
- **Geometry**: a rigid 3-D rotation of the dial plane seen through a pinhole camera, one homography, bicubic
  (ours: jittered corners and an in-plane rotation).
- **Scene**: wood grain, woven fabric, a plain desk with a light fall-off, out-of-focus bokeh, and real photos that
  no training run uses (scikit-image's coins, moon, page, colour and microscopy samples; matplotlib's Grace Hopper
  and gift box, where installed). Ours: procedural polygons and eleven other sample photos.
- **Light**: a black-body colour temperature left partly uncorrected, a light gradient and vignette in linear
  light, glare as a bright ellipse and a reflected band across the glass; exposure and a tone curve.
- **Camera**: a disc (defocus) or line (shake) blur, signal-dependent and chroma noise, PIL's JPEG with 4:2:0
  subsampling (ours: OpenCV's encoder).

Tests assert that no module of the product (``bbox``, ``ranking``, ``tiefwatch``) and no training tool imports it.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from bbox.box import BoundingBox
from bbox.scenery import package_dir
from bbox.synth import Scene

__all__ = ["CONDITIONS", "DESCRIPTIONS", "IndependentParams", "IndependentSimulator", "cut_out", "unseen_photos"]


@dataclass(frozen=True)
class IndependentParams:
    """One condition of the independent simulator; ``(low, high)`` ranges are drawn uniformly."""

    watch_size: tuple[float, float] = (0.3, 0.65)  # the watch box's long side / the frame's short side
    long_side: tuple[int, int] = (800, 1280)
    tilt_deg: tuple[float, float] = (0.0, 25.0)  # the dial plane's angle to the image plane
    roll_deg: float = 30.0  # in-plane rotation, uniform in +-roll
    kelvin: tuple[float, float] = (4800.0, 6800.0)  # the light's colour temperature
    uncorrected: tuple[float, float] = (0.0, 0.3)  # share of the light's colour the white balance left in
    exposure: tuple[float, float] = (0.8, 1.1)
    glare_prob: float = 0.1
    dim_noise: tuple[float, float] = (0.004, 0.012)  # noise sigma in linear light, before the tone curve
    jpeg_quality: tuple[int, int] = (70, 92)
    objects: tuple[int, int] = (0, 2)  # desk objects beside the watch
    off_frame: float = 0.0  # how far the watch's centre may sit outside the frame's inner part (close-ups)


_STANDARD = IndependentParams()
CONDITIONS: dict[str, IndependentParams] = {
    "standard": _STANDARD,
    "close-up": IndependentParams(watch_size=(0.9, 1.6), objects=(0, 0), off_frame=0.35),
    "far": IndependentParams(watch_size=(0.06, 0.18), long_side=(1280, 1600), objects=(1, 4)),
    "harsh": IndependentParams(
        tilt_deg=(35.0, 60.0),
        kelvin=(2400.0, 9500.0),
        uncorrected=(0.4, 0.9),
        exposure=(0.35, 0.65),
        glare_prob=0.7,
        dim_noise=(0.006, 0.02),
        jpeg_quality=(55, 85),
    ),
}
DESCRIPTIONS: dict[str, str] = {
    "standard": "a third to two thirds of the short side, up to 25° tilt, near-daylight",
    "close-up": "fills 90–160 % of the short side, often cut by a frame edge",
    "far": "6–18 % of the short side, on a wider frame with desk objects",
    "harsh": "35–60° tilt, glare on the glass in most, 2,400–9,500 K light left in, dim and noisy",
}


# ============================================================================ cut-out


def cut_out(catalog: np.ndarray, tolerance: int = 20) -> np.ndarray:
    """The watch's alpha (float32 0..1) in a catalogue photo: whatever region of the border's median colour
    touches the border is background, everything else (a white dial included) is the watch."""
    border = np.concatenate([catalog[0], catalog[-1], catalog[:, 0], catalog[:, -1]]).astype(np.int16)
    backdrop = np.median(border, axis=0)
    near = (np.abs(catalog.astype(np.int16) - backdrop).max(axis=2) <= tolerance).astype(np.uint8)
    _, labels = cv2.connectedComponents(near, connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    background = np.isin(labels, edge[edge > 0]) & (near > 0)
    watch = (~background).astype(np.uint8)
    watch = cv2.morphologyEx(watch, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    alpha = cv2.GaussianBlur(watch.astype(np.float32), (0, 0), 0.6)
    return np.clip(alpha, 0.0, 1.0)


# ============================================================================ geometry


def _rotation(tilt_deg: float, tilt_axis_deg: float, roll_deg: float) -> np.ndarray:
    t, a, r = (math.radians(v) for v in (tilt_deg, tilt_axis_deg, roll_deg))
    axis = np.array([math.cos(a), math.sin(a), 0.0])
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    tilt = np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * (k @ k)  # Rodrigues
    roll = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return tilt @ roll


def _projected_corners(side: int, rotation: np.ndarray, focal: float) -> np.ndarray:
    """The catalogue square's corners rotated in 3-D about its centre and seen from ``focal`` sides away."""
    half = side / 2.0
    corners = np.array([[-half, -half, 0], [half, -half, 0], [half, half, 0], [-half, half, 0]], dtype=float)
    turned = corners @ rotation.T
    depth = focal * side + turned[:, 2]
    return focal * side * turned[:, :2] / depth[:, None]


# ============================================================================ scenes


def _tile_noise(h: int, w: int, rng: np.random.Generator, cells: int) -> np.ndarray:
    coarse = rng.random((cells, max(2, round(cells * w / max(h, 1))))).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _wood(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    base = np.array(rng.choice([[150, 100, 60], [110, 70, 40], [190, 150, 105], [80, 55, 35]]), np.float32)
    angle = rng.uniform(0, math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    across = xx * math.cos(angle) + yy * math.sin(angle)
    warp = _tile_noise(h, w, rng, 6) * rng.uniform(20, 60)
    grain = 0.5 + 0.5 * np.sin((across + warp) * rng.uniform(0.05, 0.2))
    streaks = _tile_noise(h, w, rng, 40)
    shade = 0.75 + 0.25 * grain + 0.15 * (streaks - 0.5)
    return np.clip(base * shade[..., None], 0, 255)


def _fabric(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(30, 220, size=3).astype(np.float32)
    period = rng.uniform(3, 8)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    weave = 0.5 + 0.25 * np.sin(xx * 2 * math.pi / period) * np.sin(yy * 2 * math.pi / period)
    folds = _tile_noise(h, w, rng, 4)
    shade = 0.7 + 0.35 * weave * 0.4 + 0.4 * (folds - 0.5)
    return np.clip(base * shade[..., None], 0, 255)


def _desk(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A plain surface: white, grey, beige or black, lit unevenly (a watch on a white desk is a real case)."""
    base = np.array(rng.choice([[235, 235, 232], [200, 200, 200], [225, 210, 185], [40, 40, 45], [60, 90, 120]]))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = rng.uniform(-0.5, 1.5) * w, rng.uniform(-0.5, 1.5) * h
    fall = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (1.2 * max(h, w)) ** 2)))
    shade = 0.75 + 0.25 * fall + 0.03 * (_tile_noise(h, w, rng, 60) - 0.5)
    return np.clip(base.astype(np.float32) * shade[..., None], 0, 255)


def _bokeh(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """An out-of-focus room: large soft discs of light over a dark or mid-tone wash (drawn at a quarter size:
    nothing in it is sharp)."""
    sh, sw = max(h // 4, 8), max(w // 4, 8)
    out = np.empty((sh, sw, 3), np.float32)
    out[:] = rng.uniform(20, 140, size=3)
    for _ in range(int(rng.integers(8, 30))):
        radius = int(rng.uniform(0.03, 0.15) * max(sh, sw))
        centre = (int(rng.integers(0, sw)), int(rng.integers(0, sh)))
        layer = np.zeros((sh, sw), np.float32)
        cv2.circle(layer, centre, radius, 1.0, -1)
        colour = rng.uniform(60, 255, size=3).astype(np.float32)
        a = layer * float(rng.uniform(0.2, 0.6))
        out = out * (1 - a[..., None]) + colour * a[..., None]
    out = cv2.GaussianBlur(out, (0, 0), 0.01 * max(sh, sw))
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)


_UNSEEN_SKIMAGE = ("coins.png", "moon.png", "page.png", "color.png", "ihc.png", "retina.jpg")
_UNSEEN_MATPLOTLIB = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")


def unseen_photos() -> list[np.ndarray]:
    """Real sample photos that no training scene uses (``bbox.scenery`` takes eleven others), RGB uint8."""
    paths = []
    skimage = package_dir("skimage")
    if skimage is not None:
        paths += [skimage / "data" / name for name in _UNSEEN_SKIMAGE]
    matplotlib = package_dir("matplotlib")
    if matplotlib is not None:
        paths += [matplotlib / "mpl-data" / "sample_data" / name for name in _UNSEEN_MATPLOTLIB]
    photos = []
    for path in paths:
        if path.is_file():
            with Image.open(path) as image:
                photos.append(np.asarray(image.convert("RGB")))
    return photos


def _from_photo(h: int, w: int, rng: np.random.Generator, photo: np.ndarray) -> np.ndarray:
    ph, pw = photo.shape[:2]
    scale = max(h / ph, w / pw) * rng.uniform(1.0, 1.6)
    big = cv2.resize(photo, (math.ceil(pw * scale), math.ceil(ph * scale)), interpolation=cv2.INTER_CUBIC)
    y0 = int(rng.integers(0, big.shape[0] - h + 1))
    x0 = int(rng.integers(0, big.shape[1] - w + 1))
    out = big[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
    return out[:, ::-1] if rng.random() < 0.5 else out


def _objects(scene: np.ndarray, count: int, rng: np.random.Generator) -> None:
    """Things on a desk: a phone, a cup seen from above, a notebook; flat shaded shapes with a soft edge."""
    h, w = scene.shape[:2]
    for _ in range(count):
        layer = np.zeros((h, w), np.float32)
        size = rng.uniform(0.1, 0.35) * min(h, w)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        if rng.random() < 0.5:
            rect = ((cx, cy), (size, size * rng.uniform(0.4, 2.2)), rng.uniform(0, 180))
            cv2.fillPoly(layer, [cv2.boxPoints(rect).astype(np.int32)], 1.0)
        else:
            cv2.circle(layer, (int(cx), int(cy)), int(size / 2), 1.0, -1)
        layer = cv2.GaussianBlur(layer, (0, 0), 1.0)
        colour = rng.uniform(0, 255, size=3).astype(np.float32)
        scene[:] = scene * (1 - layer[..., None]) + colour * layer[..., None]


# ============================================================================ light and camera


def kelvin_gains(kelvin: float) -> np.ndarray:
    """RGB of a black body at ``kelvin`` (Tanner Helland's fit), scaled to green 1."""
    t = kelvin / 100.0
    red = 255.0 if t <= 66 else 329.7 * (t - 60) ** -0.1332
    green = 99.47 * math.log(t) - 161.12 if t <= 66 else 288.12 * (t - 60) ** -0.0755
    blue = 255.0 if t >= 66 else (0.0 if t <= 19 else 138.52 * math.log(t - 10) - 305.04)
    rgb = np.clip(np.array([red, green, blue]), 1.0, 255.0)
    return (rgb / rgb[1]).astype(np.float32)


def _to_linear(srgb: np.ndarray) -> np.ndarray:
    return np.power(np.clip(srgb / 255.0, 0, 1), 2.2, dtype=np.float32)


def _to_srgb(linear: np.ndarray) -> np.ndarray:
    return np.clip(np.power(np.clip(linear, 0, 1), 1 / 2.2) * 255.0, 0, 255)


def _glare(h: int, w: int, box: BoundingBox, rng: np.random.Generator) -> np.ndarray:
    """A bright ellipse and, half the time, a reflected window's band across the glass (linear light)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = box.center
    size = max(box.width, box.height)
    gx, gy = cx + rng.uniform(-0.2, 0.2) * size, cy + rng.uniform(-0.2, 0.2) * size
    angle = rng.uniform(0, math.pi)
    u = (xx - gx) * math.cos(angle) + (yy - gy) * math.sin(angle)
    v = -(xx - gx) * math.sin(angle) + (yy - gy) * math.cos(angle)
    a, b = rng.uniform(0.08, 0.25) * size, rng.uniform(0.02, 0.08) * size
    light = rng.uniform(0.5, 1.2) * np.exp(-0.5 * ((u / a) ** 2 + (v / b) ** 2))
    if rng.random() < 0.5:
        offset = rng.uniform(-0.25, 0.25) * size
        band = np.exp(-0.5 * ((v - offset) / (rng.uniform(0.04, 0.1) * size)) ** 2)
        light = light + rng.uniform(0.15, 0.4) * band
    return light.astype(np.float32)


def _camera(linear: np.ndarray, p: IndependentParams, rng: np.random.Generator) -> np.ndarray:
    h, w = linear.shape[:2]
    if rng.random() < 0.5:  # defocus: a disc
        radius = rng.uniform(0.5, 0.0025 * max(h, w) + 1.0)
        k = math.ceil(radius) * 2 + 1
        kernel = np.zeros((k, k), np.float32)
        cv2.circle(kernel, (k // 2, k // 2), max(1, round(radius)), 1.0, -1)
        linear = cv2.filter2D(linear, -1, kernel / kernel.sum())
    else:  # hand shake: a short line
        length = int(rng.integers(2, max(3, int(0.006 * max(h, w)))))
        kernel = np.zeros((length, length), np.float32)
        angle = rng.uniform(0, math.pi)
        c = (length - 1) / 2
        dx, dy = math.cos(angle) * c, math.sin(angle) * c
        cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1)
        linear = cv2.filter2D(linear, -1, kernel / kernel.sum())
    sigma = rng.uniform(*p.dim_noise)
    shot = rng.standard_normal(linear.shape).astype(np.float32) * np.sqrt(np.clip(linear, 0, 1)) * sigma * 2
    chroma = cv2.resize(rng.standard_normal((h // 2, w // 2, 3)).astype(np.float32), (w, h)) * sigma
    return linear + shot + chroma


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=2)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB")).copy()


# ============================================================================ simulator


class IndependentSimulator:
    """``simulator(catalog_rgb, rng) -> Scene``: a phone-like photo of the catalogue watch and its exact box
    (the warped alpha >= 0.5, clipped to the frame), the same ``Scene`` the product's simulator returns."""

    def __init__(self, params: IndependentParams, photos: list[np.ndarray] | None = None) -> None:
        self.params = params
        self.photos = unseen_photos() if photos is None else photos

    def _scene(self, h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        kinds = ["wood", "fabric", "desk", "bokeh"] + (["photo"] if self.photos else [])
        kind = str(rng.choice(kinds))
        if kind == "photo":
            return _from_photo(h, w, rng, self.photos[int(rng.integers(len(self.photos)))]), kind
        return {"wood": _wood, "fabric": _fabric, "desk": _desk, "bokeh": _bokeh}[kind](h, w, rng), kind

    def __call__(self, catalog: np.ndarray, rng: np.random.Generator) -> Scene:
        p = self.params
        long_side = int(rng.integers(p.long_side[0], p.long_side[1] + 1))
        ratio = float(rng.choice([4 / 3, 16 / 9, 1.0]))
        short_side = round(long_side / ratio)
        h, w = (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)
        scene, kind = self._scene(h, w, rng)
        _objects(scene, int(rng.integers(p.objects[0], p.objects[1] + 1)), rng)

        alpha = cut_out(catalog)
        side = catalog.shape[0]
        tilt, axis, roll = rng.uniform(*p.tilt_deg), rng.uniform(0, 360), rng.uniform(-p.roll_deg, p.roll_deg)
        corners = _projected_corners(side, _rotation(tilt, axis, roll), focal=rng.uniform(1.5, 4.0))
        source = np.array([[0, 0], [side, 0], [side, side], [0, side]], np.float32)
        unit = cv2.getPerspectiveTransform(source, (corners - corners.min(axis=0)).astype(np.float32))
        span = np.ceil(corners.max(axis=0) - corners.min(axis=0)).astype(int) + 1
        trial = cv2.warpPerspective(alpha, unit, (int(span[0]), int(span[1])), flags=cv2.INTER_LINEAR)
        trial_box = BoundingBox.from_mask(trial >= 0.5)
        scale = rng.uniform(*p.watch_size) * min(h, w) / max(trial_box.width, trial_box.height)
        spread = 1.0 + 2.0 * p.off_frame
        cx = w / 2 + (rng.uniform(-0.5, 0.5) * spread) * max(w - scale * trial_box.width, 0.3 * w)
        cy = h / 2 + (rng.uniform(-0.5, 0.5) * spread) * max(h - scale * trial_box.height, 0.3 * h)
        tx, ty = trial_box.center
        place = np.array([[scale, 0, cx - scale * tx], [0, scale, cy - scale * ty], [0, 0, 1]])
        homography = place @ unit
        interpolation = cv2.INTER_CUBIC if scale >= 1 else cv2.INTER_AREA
        watch = cv2.warpPerspective(
            catalog.astype(np.float32), homography, (w, h), flags=interpolation, borderMode=cv2.BORDER_REPLICATE
        )
        warped = np.clip(cv2.warpPerspective(alpha, homography, (w, h), flags=cv2.INTER_LINEAR), 0, 1)
        mask = warped >= 0.5
        if not mask.any():  # placed wholly outside the frame: draw the scene again
            return self(catalog, rng)

        shadow = cv2.GaussianBlur(warped, (0, 0), 0.04 * scale * side + 1)
        shift = np.float32([[1, 0, rng.uniform(-0.04, 0.04) * scale * side], [0, 1, 0.03 * scale * side]])
        shadow = cv2.warpAffine(shadow, shift, (w, h))
        linear = _to_linear(scene) * (1 - rng.uniform(0.2, 0.5) * shadow[..., None])
        linear = linear * (1 - warped[..., None]) + _to_linear(watch) * warped[..., None]

        light = kelvin_gains(rng.uniform(*p.kelvin))
        left_in = rng.uniform(*p.uncorrected)
        gains = (1 - left_in) + left_in * light / light.mean()
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        angle = rng.uniform(0, 2 * math.pi)
        ramp = 1 + rng.uniform(0, 0.35) * ((xx / w - 0.5) * math.cos(angle) + (yy / h - 0.5) * math.sin(angle))
        vignette = 1 - rng.uniform(0, 0.35) * (((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) / 0.5)
        linear = linear * (gains * rng.uniform(*p.exposure))[None, None, :] * (ramp * vignette)[..., None]
        box = BoundingBox.from_mask(mask)
        glare = rng.random() < p.glare_prob
        if glare:
            inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(np.float32)
            linear = linear + (_glare(h, w, box, rng) * inner)[..., None]
        linear = _camera(linear, p, rng)
        image = _jpeg(_to_srgb(linear).astype(np.uint8), int(rng.integers(p.jpeg_quality[0], p.jpeg_quality[1] + 1)))
        info = {"scene": kind, "tilt": float(tilt), "roll": float(roll), "scale": float(scale), "glare": glare}
        return Scene(image=image, box=box, mask=mask, params=info)
