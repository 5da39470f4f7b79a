"""Turn a white-background catalogue photo into a phone-photo-like query with the true bounding box.

Why: users photograph a real watch (cluttered room, dim light, tilted, blurred, JPEG), while the shop only has
clean studio shots. Simulating the photo from the studio shot gives unlimited labelled data for the box
regressor, photo->catalogue pairs for invariance training and queries for retrieval benchmarks.

Images are RGB uint8 ``HxWx3`` at every public boundary. Only numpy and OpenCV are needed; scikit-image and
scikit-learn are used solely to *locate* the sample photos they bundle (as real cluttered backgrounds).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from bbox.box import BoundingBox
from bbox.scenery import blend, builtin_backgrounds, darken, procedural_clutter, random_colour, soft_shadow
from bbox.segment import as_rgb_u8, segment_product

__all__ = ["PhotoSimulator", "Scene", "SceneParams", "simulate_photo"]


# ============================================================================ scene parameters


MAX_DRAWS = 8  # simulated photos drawn before a catalogue image is refused (one in tens of thousands needs a second)


@dataclass
class SceneParams:
    """Distribution of simulated phone photos. ``(low, high)`` ranges are drawn uniformly.

    Sizes are relative so one setting works at any output size: watch and distractor sizes are fractions of
    the frame's shorter side; shadow and perspective are fractions of the watch size; defocus is a fraction
    of the frame's longer side.
    """

    # --- frame
    long_side_range: tuple[int, int] = (320, 640)  # output long side in pixels
    aspect_ratios: tuple[tuple[int, int], ...] = ((4, 3), (3, 4), (1, 1), (16, 9))  # width:height choices
    # --- watch geometry
    watch_size_range: tuple[float, float] = (0.15, 0.70)  # longer side of the final box / shorter frame side
    max_rotation_deg: float = 35.0  # in-plane tilt, uniform in +-max
    perspective_jitter: float = 0.08  # each corner moves up to this fraction of the watch size (per axis)
    # --- background
    photo_background_prob: float = 0.7  # else procedural clutter (always procedural if no photos)
    background_zoom_range: tuple[float, float] = (0.2, 0.8)  # crop side / largest crop of the frame aspect
    background_defocus_prob: float = 0.5  # depth of field: the watch is in focus, the room is not
    background_defocus_range: tuple[float, float] = (0.002, 0.008)  # Gaussian sigma / frame long side
    # --- distractors (not watches), drawn under the watch
    distractor_prob: float = 0.3  # chance of any; then 1..max_distractors
    max_distractors: int = 2
    distractor_size_range: tuple[float, float] = (0.12, 0.4)  # / shorter frame side
    distractor_max_overlap: float = 0.1  # max part of the watch box a distractor may cover
    # --- watch lighting and shadow
    shadow_prob: float = 0.7
    shadow_strength_range: tuple[float, float] = (0.25, 0.6)
    shadow_offset_range: tuple[float, float] = (0.01, 0.06)  # / watch size
    shadow_softness_range: tuple[float, float] = (0.02, 0.08)  # blur sigma / watch size
    watch_light_range: tuple[float, float] = (0.75, 1.0)  # studio-bright watch dimmed to the room's light
    ambient_tint_range: tuple[float, float] = (0.0, 0.25)  # how much the room's colour tints the watch
    edge_feather_range: tuple[float, float] = (0.7, 1.6)  # alpha ramp width in output px (at most)
    # --- camera
    exposure_gain_range: tuple[float, float] = (0.35, 1.0)  # darker indoor light
    color_cast: float = 0.15  # per-channel gains within +-this (warm/cool white balance errors)
    gamma_range: tuple[float, float] = (0.8, 1.25)
    vignette_range: tuple[float, float] = (0.0, 0.35)  # light fall-off in the corners
    light_gradient_range: tuple[float, float] = (0.0, 0.3)  # one side of the room brighter
    blur_prob: float = 0.5  # Gaussian defocus of the whole frame
    blur_sigma_range: tuple[float, float] = (0.3, 1.3)  # pixels
    motion_blur_prob: float = 0.15  # hand shake (replaces the Gaussian blur when drawn)
    motion_blur_length_range: tuple[int, int] = (3, 9)  # pixels
    noise_sigma_range: tuple[float, float] = (1.0, 5.0)  # 8-bit levels at gain 1, grows as 1/sqrt(gain)
    jpeg_quality_range: tuple[int, int] = (45, 85)
    # --- conditions beyond the standard envelope (off by default, so standard scenes stay as they were;
    # bbox/conditions.py names the settings that produce each condition)
    overflow: float = 0.0  # how far past the frame edges the watch may reach, as a fraction of its size
    tilt_range: tuple[float, float] = (0.0, 0.0)  # 3-D tilt of the dial away from the camera, degrees
    focal_range: tuple[float, float] = (1.5, 4.0)  # camera distance / watch size: near cameras foreshorten more
    glare_prob: float = 0.0  # specular highlights and a window's reflection on the glass
    glare_strength_range: tuple[float, float] = (0.5, 1.0)
    illuminants: tuple[str, ...] = ()  # room light the phone's white balance left in: "tungsten", "shade"
    illuminant_strength_range: tuple[float, float] = (0.45, 0.85)
    wrist_prob: float = 0.0  # worn on a wrist: skin under the watch, the straps curving away round it
    sharpen_prob: float = 0.0  # phone processing: an unsharp mask after demosaicing


def _geometry(info: dict[str, Any]) -> dict[str, Any]:
    """The drawn sizes and angles of a scene, for a message."""
    keys = ("width", "height", "watch_size", "watch_scale", "tilt_deg", "focal", "rotation_deg", "predicted_box")
    return {key: info[key] for key in keys if key in info}


@dataclass
class Scene:
    """A simulated photo: ``image`` (RGB uint8), ``mask`` (HxW bool, pixels where the pasted watch's alpha
    is >= 0.5), ``box`` (``BoundingBox.from_mask(mask)``: the exact pasted watch, not an estimate) and
    ``params`` (everything drawn, for debugging and for filtering, e.g. ``params["catalog_status"]``)."""

    image: np.ndarray
    box: BoundingBox
    mask: np.ndarray
    params: dict[str, Any]


# ============================================================================ simulator


class PhotoSimulator:
    """Render phone-photo-like scenes of a catalogue watch.

    ``backgrounds``: photos to place the watch in; ``None`` means :func:`builtin_backgrounds`, an empty list
    means procedural clutter only. ``seed`` seeds the simulator's own generator, used when ``__call__`` gets no
    ``rng``; the same seed (or the same ``rng`` state) and inputs give the same scene.
    """

    def __init__(
        self,
        backgrounds: Sequence[np.ndarray] | None = None,
        params: SceneParams | None = None,
        seed: int | None = None,
    ) -> None:
        if backgrounds is None:
            self.backgrounds = builtin_backgrounds()
        else:
            self.backgrounds = [as_rgb_u8(b) for b in backgrounds]
        self.params = params if params is not None else SceneParams()
        self._rng = np.random.default_rng(seed)

    def __call__(
        self, catalog_img: np.ndarray, rng: np.random.Generator | None = None, *, mask: np.ndarray | None = None
    ) -> Scene:
        """Simulate one photo of ``catalog_img`` (RGB uint8). ``mask``: an optional precomputed product mask
        (e.g. a cached :func:`product_mask`) to skip the ~1 ms segmentation in training loops."""
        rng = self._rng if rng is None else rng
        catalog_img = as_rgb_u8(catalog_img)
        info: dict[str, Any] = {}
        if mask is None:
            segmentation = segment_product(catalog_img)
            product, info["catalog_status"] = segmentation.mask, segmentation.status
        else:
            product, info["catalog_status"] = np.asarray(mask, dtype=bool), "given"
            if product.shape != catalog_img.shape[:2] or not product.any():
                raise ValueError("mask must be a non-empty HxW boolean array matching catalog_img")

        # A draw can leave no pixel of the watch in the frame (a far, steeply tilted watch thinner than a pixel
        # once warped): draw again, so every scene has a true box. Other draws use the rng as before.
        for _draw in range(MAX_DRAWS):
            scene = self._draw(catalog_img, product, rng, dict(info))
            if scene is not None:
                return scene
        raise ValueError(f"no watch pixel in {MAX_DRAWS} simulated photos of one catalogue image: is its mask a speck?")

    def _draw(
        self, catalog_img: np.ndarray, product: np.ndarray, rng: np.random.Generator, info: dict[str, Any]
    ) -> Scene | None:
        """One simulated photo, or None where the warped watch covers no pixel."""
        p = self.params
        aspect = p.aspect_ratios[int(rng.integers(len(p.aspect_ratios)))]
        long_side = int(rng.integers(p.long_side_range[0], p.long_side_range[1] + 1))
        if aspect[0] >= aspect[1]:
            width, height = long_side, max(16, round(long_side * aspect[1] / aspect[0]))
        else:
            width, height = max(16, round(long_side * aspect[0] / aspect[1])), long_side
        info.update(width=width, height=height, aspect=aspect)

        frame = self._background(height, width, rng, info)
        on_wrist = p.wrist_prob > 0 and rng.random() < p.wrist_prob
        if on_wrist:
            catalog_img, product, bend = _bend_round_wrist(catalog_img, product, rng)
            info["wrist_bend"] = bend
        placement = _plan_watch(product, height, width, p, rng, info)
        self._add_distractors(frame, placement.predicted_box, rng, info)
        if on_wrist:
            _paint_arm(frame, placement, info["wrist_bend"], rng, info)
        pasted, glare = _paste_watch(frame, catalog_img, product, placement, p, rng, info)
        if not pasted.any():
            warnings.warn(f"simulated photo without a watch pixel, drawn again: {_geometry(info)}", stacklevel=3)
            return None
        image = _camera(frame, p, rng, info, glare)
        return Scene(image=image, box=BoundingBox.from_mask(pasted), mask=pasted, params=info)

    # ------------------------------------------------------------------ background
    def _background(self, h: int, w: int, rng: np.random.Generator, info: dict[str, Any]) -> np.ndarray:
        p = self.params
        if self.backgrounds and rng.random() < p.photo_background_prob:
            index = int(rng.integers(len(self.backgrounds)))
            frame = _random_crop_resized(self.backgrounds[index], h, w, p.background_zoom_range, rng)
            if _is_grey(frame):  # grey sample photos (gravel, brick...) get a plausible colour
                frame = cv2.transform(frame, np.diag(_random_tint(rng, 0.25)))
            info["background"] = f"photo:{index}"
        else:
            frame = procedural_clutter(h, w, rng)
            info["background"] = "procedural"
        if rng.random() < p.background_defocus_prob:
            sigma = float(rng.uniform(*p.background_defocus_range) * max(h, w))
            frame = cv2.GaussianBlur(frame, (0, 0), sigma)
            info["background_defocus_sigma"] = sigma
        return frame

    # ------------------------------------------------------------------ distractors
    def _add_distractors(
        self, frame: np.ndarray, watch_box: BoundingBox, rng: np.random.Generator, info: dict[str, Any]
    ) -> None:
        """Paint 1..N non-watch objects (blobs, boxes, photo cut-outs) away from the watch, in place."""
        p = self.params
        drawn: list[str] = []
        if p.max_distractors > 0 and rng.random() < p.distractor_prob:
            h, w = frame.shape[:2]
            short = min(h, w)
            for _ in range(int(rng.integers(1, p.max_distractors + 1))):
                kinds = ["blob", "box"] + (["patch"] if self.backgrounds else [])
                kind = kinds[int(rng.integers(len(kinds)))]
                size = float(rng.uniform(*p.distractor_size_range) * short)
                aspect = float(rng.uniform(0.4, 1.0))
                dw, dh = (size, size * aspect) if rng.random() < 0.5 else (size * aspect, size)
                position = _free_position(dw, dh, w, h, watch_box, p.distractor_max_overlap, rng)
                if position is None:
                    continue
                x0, y0 = position
                rw, rh = max(4, int(dw)), max(4, int(dh))
                alpha = _random_shape_alpha(rh, rw, kind, rng)
                if kind == "patch":
                    source = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
                    colours = _random_crop_resized(source, rh, rw, (0.1, 0.4), rng).astype(np.float32)
                else:
                    colour = random_colour(rng, saturation=(0.2, 0.9), value=(0.2, 0.95))
                    gy, gx = np.mgrid[0:rh, 0:rw].astype(np.float32)
                    shading = 1.15 - 0.3 * (gx / rw * 0.5 + gy / rh * 0.5)
                    colours = colour[None, None, :] * shading[..., None]
                _composite_with_shadow(frame, int(x0), int(y0), colours, alpha, rng, strength=0.35)
                drawn.append(kind)
        info["distractors"] = drawn


# ---------------------------------------------------------------------------- watch placement


@dataclass
class _Placement:
    source_box: BoundingBox  # product box in the catalogue image
    homography: np.ndarray  # catalogue pixel -> output pixel
    scale: float  # output pixels per catalogue pixel (about)
    predicted_box: BoundingBox  # box of the warped outline, before rasterisation


def _plan_watch(
    mask: np.ndarray, h: int, w: int, p: SceneParams, rng: np.random.Generator, info: dict[str, Any]
) -> _Placement:
    """Choose rotation, perspective, size and position so the *final* box has the drawn size and fits."""
    source_box = BoundingBox.from_mask(mask)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outline = np.concatenate([c.reshape(-1, 2) for c in contours]).astype(np.float32)
    # Pixel centres -> pixel corners, so the predicted extent matches the rasterised mask.
    outline = (outline[:, None, :] + np.float32([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])).reshape(-1, 2)

    cx, cy = source_box.center
    cx, cy = cx - 0.5, cy - 0.5  # pixel-centre coordinates, as warpPerspective uses
    corners = np.float32(
        [
            [source_box.x0 - 0.5, source_box.y0 - 0.5],
            [source_box.x1 - 0.5, source_box.y0 - 0.5],
            [source_box.x1 - 0.5, source_box.y1 - 0.5],
            [source_box.x0 - 0.5, source_box.y1 - 0.5],
        ]
    )
    angle = float(rng.uniform(-p.max_rotation_deg, p.max_rotation_deg))
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    rotation = np.float32([[cos, -sin], [sin, cos]])
    longer = max(source_box.width, source_box.height)
    jitter = rng.uniform(-p.perspective_jitter, p.perspective_jitter, size=(4, 2)) * longer
    centred = corners - np.float32([cx, cy])
    if p.tilt_range[1] > 0:
        tilt = float(rng.uniform(*p.tilt_range))
        axis = float(rng.uniform(0.0, 180.0))
        focal = float(rng.uniform(*p.focal_range)) * longer
        centred = tilted(centred, tilt, axis, focal)
        info.update(tilt_deg=tilt, tilt_axis_deg=axis, focal=focal)
    target = centred @ rotation.T + jitter.astype(np.float32)
    unit_homography = cv2.getPerspectiveTransform(corners, target.astype(np.float32)).astype(np.float64)

    warped = cv2.perspectiveTransform(outline[None].astype(np.float64), unit_homography)[0]
    low, high = warped.min(axis=0), warped.max(axis=0)
    extent = high - low
    watch_size = float(rng.uniform(*p.watch_size_range) * min(h, w))
    scale = watch_size / float(extent.max())
    # Keep the whole box inside the frame with one pixel to spare for rasterisation, or let it reach past the
    # edges by ``overflow`` of its size (a close-up cut by the frame).
    reach_x, reach_y = p.overflow * scale * extent
    tx = _uniform_or_centre(rng, 1.0 - scale * low[0] - reach_x, w - 1.0 - scale * high[0] + reach_x)
    ty = _uniform_or_centre(rng, 1.0 - scale * low[1] - reach_y, h - 1.0 - scale * high[1] + reach_y)
    homography = np.array([[scale, 0, tx], [0, scale, ty], [0, 0, 1]]) @ unit_homography
    predicted = BoundingBox(
        scale * low[0] + tx + 0.5, scale * low[1] + ty + 0.5, scale * high[0] + tx + 0.5, scale * high[1] + ty + 0.5
    )
    info.update(
        rotation_deg=angle,
        watch_size=watch_size,
        watch_scale=scale,
        perspective_jitter=jitter.round(2).tolist(),
        predicted_box=[round(v, 2) for v in predicted.as_list()],
    )
    return _Placement(source_box, homography, scale, predicted)


def _paste_watch(
    frame: np.ndarray,
    catalog: np.ndarray,
    product: np.ndarray,
    placement: _Placement,
    p: SceneParams,
    rng: np.random.Generator,
    info: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray | None]:
    """Warp the product (with shadow and lighting) into ``frame`` in place; return the full-frame mask and the
    glare on its glass (full-frame, 0..1) when drawn, which the camera adds after exposure: highlights clip."""
    h, w = frame.shape[:2]
    box = placement.predicted_box
    size = max(box.width, box.height)
    has_shadow = rng.random() < p.shadow_prob
    shadow_offset = float(rng.uniform(*p.shadow_offset_range) * size) if has_shadow else 0.0
    shadow_sigma = float(rng.uniform(*p.shadow_softness_range) * size) if has_shadow else 0.0
    margin = math.ceil(shadow_offset + 3 * shadow_sigma + 3)
    rx0, ry0 = max(0, int(box.x0) - margin), max(0, int(box.y0) - margin)
    rx1, ry1 = min(w, math.ceil(box.x1) + margin), min(h, math.ceil(box.y1) + margin)
    roi_w, roi_h = rx1 - rx0, ry1 - ry0

    # Crop the catalogue image around the product (cheaper warps) and push product colours one pixel
    # outwards so the white studio background never bleeds in as a bright halo along the edge.
    sb = placement.source_box
    sx0, sy0 = max(0, int(sb.x0) - 2), max(0, int(sb.y0) - 2)
    sx1, sy1 = min(catalog.shape[1], int(sb.x1) + 2), min(catalog.shape[0], int(sb.y1) + 2)
    source = catalog[sy0:sy1, sx0:sx1]
    source_mask = product[sy0:sy1, sx0:sx1]
    if not source_mask.all():
        interior = cv2.erode(source_mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        darker = cv2.erode(source, np.ones((3, 3), np.uint8))
        source = np.where(interior[..., None], source, darker)
    alpha_source = source_mask.astype(np.float32)
    to_source = np.array([[1.0, 0, sx0], [0, 1.0, sy0], [0, 0, 1]])
    to_roi = np.array([[1.0, 0, -rx0], [0, 1.0, -ry0], [0, 0, 1]])
    homography = to_roi @ placement.homography @ to_source

    scale = placement.scale
    if scale < 0.75:  # shrinking: pre-filter with area averaging, a warp alone would alias
        small_w = max(2, round(source.shape[1] * scale))
        small_h = max(2, round(source.shape[0] * scale))
        fx, fy = source.shape[1] / small_w, source.shape[0] / small_h
        source = cv2.resize(source, (small_w, small_h), interpolation=cv2.INTER_AREA)
        alpha_source = cv2.resize(alpha_source, (small_w, small_h), interpolation=cv2.INTER_AREA)
        homography = homography @ np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5], [0, 0, 1]])
        interpolation = cv2.INTER_LINEAR
    else:  # enlarging a 128 px catalogue image: bicubic keeps dial details crisp
        interpolation = cv2.INTER_CUBIC
    watch = cv2.warpPerspective(
        source, homography, (roi_w, roi_h), flags=interpolation, borderMode=cv2.BORDER_REPLICATE
    )
    alpha = cv2.warpPerspective(
        alpha_source, homography, (roi_w, roi_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    # Linear interpolation of an enlarged binary mask gives an edge ramp ~scale pixels wide, too soft for a
    # sharp product edge: steepen it to the drawn feather width around the same 0.5 contour (so the mask and
    # box do not depend on it). Never flatten it: a slope below 1 would lift alpha above 0 everywhere.
    feather = float(rng.uniform(*p.edge_feather_range))
    slope = max(1.0, max(scale, 1.0) / feather)
    alpha = np.clip((alpha - 0.5) * np.float32(slope) + 0.5, 0.0, 1.0)
    roi_mask = alpha >= 0.5

    background = frame[ry0:ry1, rx0:rx1]
    if has_shadow:
        direction = float(rng.uniform(0, 2 * np.pi))
        dx, dy = shadow_offset * math.cos(direction), shadow_offset * math.sin(direction)
        strength = float(rng.uniform(*p.shadow_strength_range))
        cast = soft_shadow(alpha, dx, dy, max(shadow_sigma, 0.5))
        contact = soft_shadow(alpha, 0.0, 0.0, 0.01 * size + 0.7)
        darkness = np.clip(strength * cast + (0.5 * strength) * contact, 0.0, 0.9)
        background = darken(background, darkness)
        info.update(shadow_strength=strength, shadow_offset=shadow_offset, shadow_sigma=shadow_sigma)

    # Relight the studio-lit watch for the room: dimmer, and tinted by the surrounding colours.
    light = float(rng.uniform(*p.watch_light_range))
    tint_amount = float(rng.uniform(*p.ambient_tint_range))
    surround = np.asarray(cv2.mean(background)[:3])
    tint = surround / max(float(surround.mean()), 1.0)
    gains = light * ((1.0 - tint_amount) + tint_amount * tint)
    watch = cv2.transform(watch, np.diag(gains).astype(np.float32))
    frame[ry0:ry1, rx0:rx1] = blend(background, watch, alpha)
    glare = None
    if p.glare_prob > 0 and rng.random() < p.glare_prob:
        centre = (box.center[0] - rx0, box.center[1] - ry0)
        strength = float(rng.uniform(*p.glare_strength_range))
        glare = np.zeros((h, w), np.float32)
        glare[ry0:ry1, rx0:rx1] = _glare_layer((roi_h, roi_w), centre, size, strength, rng, info) * alpha
    info.update(watch_light=light, ambient_tint=tint_amount, edge_feather=feather)

    mask = np.zeros((h, w), dtype=bool)
    mask[ry0:ry1, rx0:rx1] = roi_mask
    return mask, glare


# ---------------------------------------------------------------------------- conditions


def tilted(points: np.ndarray, tilt_deg: float, axis_deg: float, focal: float) -> np.ndarray:
    """Project points of the dial plane (Nx2, centred on the watch) after tilting the plane by ``tilt_deg`` about
    an in-plane axis at ``axis_deg``, seen by a pinhole camera ``focal`` pixels away: foreshortening across the
    axis and perspective (the near side larger), as a hand holding a phone above a watch sees it."""
    a, t = math.radians(axis_deg), math.radians(tilt_deg)
    ux, uy = math.cos(a), math.sin(a)
    cross = np.array([[0.0, 0.0, uy], [0.0, 0.0, -ux], [-uy, ux, 0.0]])
    rotation = np.eye(3) + math.sin(t) * cross + (1.0 - math.cos(t)) * cross @ cross
    flat = np.concatenate([np.asarray(points, np.float64), np.zeros((len(points), 1))], axis=1)
    turned = flat @ rotation.T
    depth = np.maximum(focal + turned[:, 2], 0.1 * focal)
    return (turned[:, :2] * (focal / depth)[:, None]).astype(np.float32)


# Gains of a room's light left in the photo by a white balance that gave up, relative to daylight (D65):
# tungsten 2,700 K (orange) and open shade around 9,000 K (blue), from the black-body sRGB values.
ILLUMINANT_GAINS = {
    "tungsten": np.array([1.0, 0.655, 0.341], np.float32),
    "shade": np.array([0.816, 0.875, 1.0], np.float32),
}

# Skin tones (sRGB) from fair to deep; each arm jitters its own.
_SKIN_TONES = np.array(
    [[236, 192, 164], [224, 172, 140], [198, 144, 110], [170, 116, 84], [128, 86, 60], [92, 60, 42]], np.float32
)


def _bend_round_wrist(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """The catalogue shot as a wrist wears it: the case stays flat, the straps above and below it wrap round a
    cylinder, so they shorten, darken and vanish over the horizon. Returns the bent image, its mask and the
    geometry (catalogue pixels) the arm is drawn from."""
    box = BoundingBox.from_mask(mask)
    cx, cy = box.center
    flat = 0.5 * box.width * float(rng.uniform(0.85, 1.05))  # half the case's height: the part that stays flat
    radius = box.width * float(rng.uniform(0.55, 0.85))  # the wrist's curvature radius
    h, w = mask.shape
    ys = np.arange(h, dtype=np.float32) - cy
    beyond = np.abs(ys) - flat
    curved = np.clip(beyond / radius, -1.0, 1.0)
    source = np.where(beyond > 0, np.sign(ys) * (flat + radius * np.arcsin(curved)), ys) + cy
    hidden = beyond >= radius  # past the horizon: strap on the far side of the wrist
    shade = np.where(beyond > 0, np.sqrt(np.clip(1.0 - curved**2, 0.0, 1.0)) * 0.6 + 0.4, 1.0)
    map_y = np.repeat(source[:, None], w, axis=1).astype(np.float32)
    map_x = np.repeat(np.arange(w, dtype=np.float32)[None, :], h, axis=0)
    bent = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    bent = (bent.astype(np.float32) * shade[:, None, None].astype(np.float32)).astype(np.uint8)
    bent_mask = cv2.remap(mask.astype(np.uint8), map_x, map_y, cv2.INTER_NEAREST).astype(bool)
    bent_mask[hidden] = False
    if not bent_mask.any():  # a product too small to bend: keep it as it was
        return image, mask, {"cx": cx, "cy": cy, "half": flat, "bent": 0.0}
    return bent, bent_mask, {"cx": cx, "cy": cy, "half": flat + radius, "bent": 1.0}


def _paint_arm(
    frame: np.ndarray, placement: _Placement, bend: dict[str, float], rng: np.random.Generator, info: dict[str, Any]
) -> None:
    """A forearm under the watch, across the straps: a shaded skin-coloured band through the whole frame, a
    little wider towards the elbow, in place."""
    to_frame = placement.homography
    cx, cy, half = bend["cx"], bend["cy"], bend["half"]
    points = np.float64([[[cx, cy], [cx + 1.0, cy], [cx, cy + half]]])
    centre, along, across = cv2.perspectiveTransform(points, to_frame)[0]
    direction = (along - centre) / max(float(np.linalg.norm(along - centre)), 1e-6)
    normal = np.array([-direction[1], direction[0]])
    half_width = float(np.linalg.norm(across - centre)) * float(rng.uniform(1.0, 1.25))
    h, w = frame.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xs - centre[0]) * direction[0] + (ys - centre[1]) * direction[1]
    u = (xs - centre[0]) * normal[0] + (ys - centre[1]) * normal[1]
    widening = float(rng.uniform(0.0, 0.25)) * (1 if rng.random() < 0.5 else -1)
    local = half_width * np.clip(1.0 + widening * t / max(h, w), 0.6, 1.6)
    across_arm = np.clip(np.abs(u) / local, 0.0, 1.0)
    alpha = np.clip((local - np.abs(u)) / 2.0, 0.0, 1.0).astype(np.float32)
    tone = _SKIN_TONES[int(rng.integers(len(_SKIN_TONES)))] * rng.uniform(0.92, 1.08, size=3).astype(np.float32)
    shading = (0.55 + 0.45 * np.sqrt(1.0 - across_arm**2)).astype(np.float32)
    texture = 1.0 + 0.03 * cv2.resize(rng.standard_normal((max(2, h // 8), max(2, w // 8))).astype(np.float32), (w, h))
    skin = np.clip(tone[None, None, :] * (shading * texture)[..., None], 0, 255).astype(np.uint8)
    frame[:] = blend(frame, skin, alpha)
    info.update(arm_tone=tone.round(1).tolist(), arm_half_width=half_width)


def _glare_layer(
    shape: tuple[int, int],
    centre: tuple[float, float],
    size: float,
    strength: float,
    rng: np.random.Generator,
    info: dict[str, Any],
) -> np.ndarray:
    """Light on the glass: one to three specular spots and a soft band (a window's reflection) over the dial, as
    an HxW map in 0..1 of how far each pixel goes towards white."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xs - centre[0], ys - centre[1]
    glass = np.clip(1.0 - np.hypot(dx, dy) / (0.32 * size), 0.0, 1.0) ** 0.3  # the dial, soft at its rim
    layer = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        ox, oy = rng.uniform(-0.22, 0.22, size=2) * size
        sx, sy = rng.uniform(0.02, 0.07, size=2) * size
        spot = np.exp(-(((dx - ox) / sx) ** 2 + ((dy - oy) / sy) ** 2) / 2)
        layer = np.maximum(layer, float(rng.uniform(0.8, 1.0)) * spot)
    angle = float(rng.uniform(0, np.pi))
    offset = float(rng.uniform(-0.2, 0.2)) * size
    band_width = float(rng.uniform(0.04, 0.12)) * size
    distance = dx * math.cos(angle) + dy * math.sin(angle) - offset
    layer = np.maximum(layer, float(rng.uniform(0.15, 0.5)) * np.exp(-((distance / band_width) ** 2) / 2))
    info.update(glare_strength=strength)
    return (strength * layer * glass).astype(np.float32)


# ---------------------------------------------------------------------------- camera


_NOISE_TILE_SIZE = 704  # >= the largest default frame side + room for random offsets
_NOISE_TILE_STD = 24.0  # stored as uint8 around 128


@functools.lru_cache(maxsize=1)
def _noise_tile() -> np.ndarray:
    """Gaussian sensor-noise texture, made once (fixed seed) and reused at random offsets and flips.

    Drawing fresh full-frame Gaussian noise costs more than the rest of the camera model; a random window of
    a fixed tile is statistically the same for training. Mildly blurred so the grain is spatially correlated
    like a phone's demosaiced, denoised noise."""
    rng = np.random.default_rng(20240611)
    noise = rng.standard_normal((_NOISE_TILE_SIZE, _NOISE_TILE_SIZE, 3), dtype=np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), 0.6)
    noise *= np.float32(_NOISE_TILE_STD / float(noise.std()))
    tile = np.clip(noise + 128.0, 0, 255).astype(np.uint8)
    tile.setflags(write=False)
    return tile


def _sensor_noise(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A ``h x w x 3`` uint8 noise window (mean 128, std ``_NOISE_TILE_STD``) from the cached tile."""
    tile = _noise_tile()
    if h > tile.shape[0] or w > tile.shape[1]:  # frames larger than the tile: tile it
        reps = (math.ceil(h / tile.shape[0]) + 1, math.ceil(w / tile.shape[1]) + 1, 1)
        tile = np.tile(tile, reps)
    y0 = int(rng.integers(0, tile.shape[0] - h + 1))
    x0 = int(rng.integers(0, tile.shape[1] - w + 1))
    flip = int(rng.integers(-1, 3))  # 2: as is; else cv2.flip's code (0 vertical, 1 horizontal, -1 both)
    window = tile[y0 : y0 + h, x0 : x0 + w]
    return window.copy() if flip == 2 else cv2.flip(window, flip)


def _camera(
    frame: np.ndarray,
    p: SceneParams,
    rng: np.random.Generator,
    info: dict[str, Any],
    glare: np.ndarray | None = None,
) -> np.ndarray:
    """Optics (blur), sensor (uneven light, exposure, white balance, noise) and phone processing (gamma,
    JPEG), applied to the whole frame so the watch and the room share them. All in uint8 OpenCV calls:
    this runs on every training sample."""
    h, w = frame.shape[:2]
    if rng.random() < p.motion_blur_prob:
        length = int(rng.integers(p.motion_blur_length_range[0], p.motion_blur_length_range[1] + 1))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0
        angle = float(rng.uniform(0, 180))
        rotate = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle, 1.0)
        kernel = cv2.warpAffine(kernel, rotate, (length, length))
        frame = cv2.filter2D(frame, -1, kernel / max(float(kernel.sum()), 1e-6))
        info.update(motion_blur_length=length, motion_blur_angle=angle)
    elif rng.random() < p.blur_prob:
        sigma = float(rng.uniform(*p.blur_sigma_range))
        frame = cv2.GaussianBlur(frame, (0, 0), sigma)
        info["blur_sigma"] = sigma

    # Light: vignetting x a gradient from a random side x exposure x white-balance error, as one coarse
    # 3-channel gain grid, upsampled and applied with a saturating multiply.
    grid = 9
    gy, gx = np.mgrid[0:grid, 0:grid].astype(np.float32) / (grid - 1) * 2 - 1
    vignette = float(rng.uniform(*p.vignette_range))
    gradient = float(rng.uniform(*p.light_gradient_range))
    direction = float(rng.uniform(0, 2 * np.pi))
    field = (1.0 - vignette * (gx**2 + gy**2) / 2) * (
        1.0 + gradient * (math.cos(direction) * gx + math.sin(direction) * gy) / 2
    )
    exposure = float(rng.uniform(*p.exposure_gain_range))
    cast = _random_tint(rng, p.color_cast)
    if p.illuminants:
        name = p.illuminants[int(rng.integers(len(p.illuminants)))]
        strength = float(rng.uniform(*p.illuminant_strength_range))
        cast = cast * (1.0 + strength * (ILLUMINANT_GAINS[name] - 1.0))
        info.update(illuminant=name, illuminant_strength=strength)
    gains = field[..., None] * (exposure * cast)[None, None, :]
    headroom = max(2.0, float(gains.max()) * 1.01)
    gain_map = cv2.resize(
        np.clip(gains / headroom * 255.0, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR
    )
    image = cv2.multiply(frame, gain_map, scale=headroom / 255.0)
    if glare is not None:  # specular light is far brighter than the scene: it reaches white whatever the exposure
        image = blend(image, np.full_like(image, 255), glare)

    # Sensor noise, stronger in low light (more analogue gain): out = image + sigma * N(0, 1).
    noise_sigma = float(rng.uniform(*p.noise_sigma_range) / math.sqrt(exposure))
    beta = noise_sigma / _NOISE_TILE_STD
    image = cv2.addWeighted(image, 1.0, _sensor_noise(h, w, rng), beta, -128.0 * beta)

    if p.sharpen_prob > 0 and rng.random() < p.sharpen_prob:
        amount = float(rng.uniform(0.3, 0.8))
        image = cv2.addWeighted(image, 1.0 + amount, cv2.GaussianBlur(image, (0, 0), 1.2), -amount, 0)
        info["sharpen"] = amount

    gamma = float(rng.uniform(*p.gamma_range))
    table = np.clip(255.0 * (np.arange(256) / 255.0) ** (1.0 / gamma) + 0.5, 0, 255).astype(np.uint8)
    image = cv2.LUT(image, table)

    quality = int(rng.integers(p.jpeg_quality_range[0], p.jpeg_quality_range[1] + 1))
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if ok:
        image = cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    info.update(
        exposure=exposure,
        color_cast=cast.round(3).tolist(),
        vignette=vignette,
        light_gradient=gradient,
        noise_sigma=noise_sigma,
        gamma=gamma,
        jpeg_quality=quality,
    )
    return image


def simulate_photo(
    catalog_img: np.ndarray,
    rng: np.random.Generator,
    backgrounds: Sequence[np.ndarray] | None = None,
    params: SceneParams | None = None,
) -> Scene:
    """One-off :class:`PhotoSimulator` call (reuse a simulator in loops: it validates backgrounds once)."""
    return PhotoSimulator(backgrounds=backgrounds, params=params)(catalog_img, rng)


# ============================================================================ helpers


def _is_grey(img: np.ndarray) -> bool:
    sample = img[::8, ::8].astype(np.int16)
    return bool(np.abs(sample - sample.mean(axis=2, keepdims=True)).max() <= 2)


def _random_tint(rng: np.random.Generator, amount: float) -> np.ndarray:
    """Per-channel gains: half the time a warm/cool white-balance error, else independent per channel."""
    if rng.random() < 0.5:
        temperature = rng.uniform(-amount, amount)
        gains = np.array([1 + temperature, 1.0, 1 - temperature])
    else:
        gains = 1 + rng.uniform(-amount, amount, size=3)
    return gains.astype(np.float32)


def _uniform_or_centre(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high)) if high > low else (low + high) / 2


def _random_crop_resized(
    source: np.ndarray, h: int, w: int, zoom_range: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    """A random crop of ``source`` with the aspect of ``w x h``, resized to it, randomly mirrored."""
    sh, sw = source.shape[:2]
    aspect = w / h
    crop_w = min(float(sw), sh * aspect)
    zoom = float(rng.uniform(*zoom_range))
    crop_w = max(8.0, crop_w * zoom)
    crop_h = max(8.0, crop_w / aspect)
    crop_w, crop_h = min(crop_w, sw), min(crop_h, sh)
    x0 = int(rng.uniform(0, sw - crop_w + 1e-6))
    y0 = int(rng.uniform(0, sh - crop_h + 1e-6))
    crop = source[y0 : y0 + int(crop_h), x0 : x0 + int(crop_w)]
    interpolation = cv2.INTER_AREA if crop.shape[1] > w else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (w, h), interpolation=interpolation)
    return crop[:, ::-1].copy() if rng.random() < 0.5 else crop


def _free_position(
    dw: float, dh: float, w: int, h: int, avoid: BoundingBox, max_overlap: float, rng: np.random.Generator
) -> tuple[float, float] | None:
    """Top-left corner for a ``dw x dh`` object covering at most ``max_overlap`` of ``avoid``, or None."""
    for _ in range(20):
        x0 = float(rng.uniform(-0.2 * dw, w - 0.8 * dw))
        y0 = float(rng.uniform(-0.2 * dh, h - 0.8 * dh))
        candidate = BoundingBox(x0, y0, x0 + dw, y0 + dh)
        overlap = candidate.clip(w, h)._intersection_area(avoid)
        if overlap <= max_overlap * max(avoid.area, 1.0):
            return x0, y0
    return None


def _random_shape_alpha(h: int, w: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Soft-edged alpha of a random blob, rounded box or cut-out shape filling roughly ``h x w``."""
    layer = np.zeros((h, w), np.uint8)
    if kind == "box":
        inset = 0.05
        corners = np.float32([[inset * w, inset * h], [(1 - inset) * w, inset * h], [(1 - inset) * w, (1 - inset) * h]])
        corners = np.vstack([corners, [[inset * w, (1 - inset) * h]]])
        corners += rng.uniform(-0.04, 0.04, size=corners.shape) * np.float32([w, h])
        cv2.fillPoly(layer, [corners.astype(np.int32)], 255, cv2.LINE_AA)
    else:
        count = int(rng.integers(6, 11))
        angles = np.sort(rng.uniform(0, 2 * np.pi, size=count))
        radii = rng.uniform(0.6, 1.0, size=count)
        points = np.stack(
            [w / 2 + 0.48 * w * radii * np.cos(angles), h / 2 + 0.48 * h * radii * np.sin(angles)], axis=1
        )
        cv2.fillPoly(layer, [points.astype(np.int32)], 255, cv2.LINE_AA)
        layer = cv2.GaussianBlur(layer, (0, 0), 0.03 * min(h, w) + 0.5)
        layer = np.where(layer > 127, 255, layer * 2).astype(np.uint8) if kind == "blob" else layer
    return layer.astype(np.float32) / 255.0


def _composite_with_shadow(
    frame: np.ndarray,
    x0: int,
    y0: int,
    colours: np.ndarray,
    alpha: np.ndarray,
    rng: np.random.Generator,
    strength: float,
) -> None:
    """Alpha-blend ``colours`` at ``(x0, y0)`` over ``frame`` (clipped to it) with a soft drop shadow."""
    h, w = frame.shape[:2]
    oh, ow = alpha.shape
    pad = int(0.15 * max(oh, ow)) + 2
    canvas_alpha = np.zeros((oh + 2 * pad, ow + 2 * pad), np.float32)
    canvas_alpha[pad : pad + oh, pad : pad + ow] = alpha
    canvas_colour = np.zeros((*canvas_alpha.shape, 3), np.uint8)
    canvas_colour[pad : pad + oh, pad : pad + ow] = np.clip(colours, 0, 255)
    size = max(oh, ow)
    shift = rng.uniform(-0.05, 0.05, size=2) * size
    shadow = soft_shadow(canvas_alpha, float(shift[0]), float(abs(shift[1])), 0.04 * size + 1.0)
    fx0, fy0 = x0 - pad, y0 - pad
    cx0, cy0 = max(0, -fx0), max(0, -fy0)
    cx1 = min(canvas_alpha.shape[1], w - fx0)
    cy1 = min(canvas_alpha.shape[0], h - fy0)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    region = frame[fy0 + cy0 : fy0 + cy1, fx0 + cx0 : fx0 + cx1]
    region = darken(region, np.ascontiguousarray(strength * shadow[cy0:cy1, cx0:cx1]))
    region = blend(
        region,
        np.ascontiguousarray(canvas_colour[cy0:cy1, cx0:cx1]),
        np.ascontiguousarray(canvas_alpha[cy0:cy1, cx0:cx1]),
    )
    frame[fy0 + cy0 : fy0 + cy1, fx0 + cx0 : fx0 + cx1] = region
