"""Turn a white-background catalogue photo into a phone-photo-like query with the true bounding box.

Why: users photograph a real watch (cluttered room, dim light, tilted, blurred, JPEG), while the shop only has
clean studio shots. Simulating the photo from the studio shot gives unlimited labelled data for the box
regressor, photo->catalogue pairs for invariance training and queries for retrieval benchmarks.

Images are RGB uint8 ``HxWx3`` at every public boundary. Only numpy and OpenCV are needed; scikit-image and
scikit-learn are used solely to *locate* the sample photos they bundle (as real cluttered backgrounds).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bbox.box import BoundingBox

__all__ = [
    "PhotoSimulator",
    "ProductSegmentation",
    "Scene",
    "SceneParams",
    "builtin_backgrounds",
    "load_backgrounds",
    "procedural_clutter",
    "product_mask",
    "segment_product",
    "simulate_photo",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")

# ============================================================================ product mask

# A border pixel counts as "plain background" when it is light and grey: all channels >= this level ...
_PLAIN_MIN_LEVEL = 190
# ... and channel spread (max - min, a cheap saturation) <= this. JPEG adds a few levels of noise.
_PLAIN_MAX_SPREAD = 24
# At least this fraction of the border must be plain background, else the photo is a scene (wrist, gift box).
_PLAIN_BORDER_FRACTION = 0.5
_ALL_SIDES = ("top", "bottom", "left", "right")


@dataclass(frozen=True)
class ProductSegmentation:
    """Result of :func:`segment_product`.

    ``status`` says how to trust ``mask``:
      * ``"product"``: the product was cut out of a plain light background;
      * ``"not_on_plain_background"``: the border is not a plain light colour (photo on a wrist, in a gift
        box, on a coloured backdrop); ``mask`` covers the whole frame because no cut-out is reliable;
      * ``"blank"``: nothing differs from the background; ``mask`` covers the whole frame.

    ``border_sides`` lists the frame sides the mask touches. Top/bottom is normal (straps cut by the frame,
    about 30 % of the dev catalogue); left/right mostly means a loose strap, a gift set, a presentation box or
    a hand on a white backdrop (about 1.5 %). Gift sets (watch + lipstick + bow, watch + bangles) come out as
    one product: only their parts far apart and small are dropped.
    """

    mask: np.ndarray
    status: str
    background_rgb: tuple[int, int, int] | None
    border_sides: tuple[str, ...] = ()

    @property
    def on_plain_background(self) -> bool:
        return self.status == "product"


def segment_product(img: np.ndarray, tolerance: int = 24, edge_threshold: float = 6.0) -> ProductSegmentation:
    """Cut the product out of a white or near-white catalogue background.

    The background colour is estimated from the image border (so light-grey studio backdrops work too). A
    pixel is foreground when some channel differs from it by more than ``tolerance`` levels (Chebyshev
    distance, which also catches pale but saturated gold/rose tones). After a small closing, *background is
    only what is background-coloured and connected to the border*: white dials, white straps and highlights
    inside the outline are kept (hole filling). Finally only the main object (the largest component plus big
    ones close to it) survives, which drops specks, logos and JPEG noise far from the watch.
    """
    img = _as_rgb_u8(img)
    h, w = img.shape[:2]
    full = np.ones((h, w), dtype=bool)
    ring = max(1, round(min(h, w) / 64))
    border = np.concatenate(
        [
            img[:ring].reshape(-1, 3),
            img[-ring:].reshape(-1, 3),
            img[:, :ring].reshape(-1, 3),
            img[:, -ring:].reshape(-1, 3),
        ]
    ).astype(np.int16)
    low = border.min(axis=1)
    plain = (low >= _PLAIN_MIN_LEVEL) & (border.max(axis=1) - low <= _PLAIN_MAX_SPREAD)
    if plain.mean() < _PLAIN_BORDER_FRACTION:
        return ProductSegmentation(full, "not_on_plain_background", None, _ALL_SIDES)
    background = np.median(border[plain], axis=0)
    near = np.abs(border - background).max(axis=1) <= tolerance
    if near.mean() < _PLAIN_BORDER_FRACTION:  # light but not one colour (e.g. a bright window scene)
        return ProductSegmentation(full, "not_on_plain_background", None, _ALL_SIDES)
    background_rgb = (int(background[0]), int(background[1]), int(background[2]))

    # Chebyshev distance from the background colour, with OpenCV (numpy reductions over the 3-channel axis are
    # several times slower and this runs once per simulated photo).
    difference = cv2.absdiff(img, np.full_like(img, np.round(background).astype(np.uint8)))
    red, green, blue = cv2.split(difference)
    distance = cv2.max(cv2.max(red, green), blue)
    foreground = distance > tolerance
    # Faint outlines (a white dial in a polished silver case) are only ~10-20 levels off white, too weak for
    # the tolerance but sharp: count sharp, slightly-off-white steps as foreground "walls" so the flood fill
    # below cannot leak through them into the dial. Soft shadows and JPEG noise are not sharp enough.
    distance_f = distance.astype(np.float32)
    gradient = cv2.magnitude(
        cv2.Sobel(distance_f, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(distance_f, cv2.CV_32F, 0, 1, ksize=3)
    )
    foreground |= (gradient > 8.0 * edge_threshold) & (distance > 4)
    foreground = foreground.astype(np.uint8)
    unit = max(1, round(min(h, w) / 128))  # kernels were tuned on 128 px catalogue images
    close_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (4 * unit + 1, 4 * unit + 1))
    foreground = cv2.morphologyEx(foreground, cv2.MORPH_CLOSE, close_kernel)

    # Background = background-coloured regions touching the border; everything else (white dials, white
    # straps inside the outline) is product.
    background = _touching_border(1 - foreground)
    # A faint outline can still have a gap a few pixels wide through which a white dial joins the outside.
    # Opening the background cuts such narrow channels: white regions it disconnects from the border are
    # enclosed by the product and belong to it.
    channel_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (4 * unit + 1, 4 * unit + 1))
    opened = cv2.morphologyEx(background.astype(np.uint8), cv2.MORPH_OPEN, channel_kernel)
    enclosed = opened.astype(bool) & ~_touching_border(opened)
    if enclosed.any():
        background &= ~cv2.dilate(enclosed.astype(np.uint8), channel_kernel).astype(bool)
    mask = ~background
    # Walls and the closing leave a one-pixel near-white rim outside the outline; peel it (only pixels that
    # touch the background, so an enclosed white dial stays).
    touches_background = cv2.dilate((~mask).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    mask &= ~(touches_background & (distance <= tolerance))
    mask = _keep_main_object(mask, reach=3 * unit)
    if not mask.any():
        return ProductSegmentation(full, "blank", background_rgb, _ALL_SIDES)
    sides = tuple(
        side
        for side, edge in (("top", mask[0]), ("bottom", mask[-1]), ("left", mask[:, 0]), ("right", mask[:, -1]))
        if edge.any()
    )
    return ProductSegmentation(mask, "product", background_rgb, sides)


def product_box(img: np.ndarray) -> BoundingBox | None:
    """The box of the product on a plain light catalogue background - exactly the box the crop model is trained
    to predict - or None where the photo is not on such a background (the crop model must look)."""
    segmentation = segment_product(img)
    return BoundingBox.from_mask(segmentation.mask) if segmentation.on_plain_background else None


def product_mask(img: np.ndarray) -> np.ndarray:
    """Boolean ``HxW`` mask of the product on a white/near-white catalogue photo.

    Choice for photos that are *not* on a plain background (20 of the 3,000 dev catalogue photos: worn on a
    wrist, held in a hand, in a gift box, lifestyle shots): the mask covers the whole frame, i.e. the whole
    photo is "the product".
    That keeps every caller working (a simulator pastes the photo as a print-like rectangle); callers that
    must know, e.g. to skip such images when training a box regressor, use :func:`segment_product`.
    """
    return segment_product(img).mask


def _touching_border(binary: np.ndarray) -> np.ndarray:
    """True pixels of ``binary`` (uint8 0/1) 4-connected to the image border (4-connectivity so a region
    cannot leak diagonally through a one-pixel gap)."""
    count, labels = cv2.connectedComponents(binary, connectivity=4)
    border_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    is_border = np.zeros(count, dtype=bool)
    is_border[border_labels] = True
    is_border[0] = False  # label 0 is the zero pixels
    return is_border[labels]


def _keep_main_object(mask: np.ndarray, reach: int) -> np.ndarray:
    """Keep the group of components holding most pixels plus other groups at least 25 % of its size.

    Components within ``reach`` pixels of each other form one group (a bracelet whose links are split by
    bright highlights stays whole)."""
    mask_u8 = mask.astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    count, groups = cv2.connectedComponents(cv2.dilate(mask_u8, kernel), connectivity=8)
    if count <= 2:
        return mask
    group_area = np.bincount(groups[mask], minlength=count)
    group_area[0] = 0
    keep = group_area >= 0.25 * group_area.max()
    keep[0] = False
    return mask & keep[groups]


# ============================================================================ backgrounds

_SKIMAGE_SAMPLES = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "camera.png",
    "brick.png",
    "gravel.png",
    "grass.png",
)
_SKLEARN_SAMPLES = ("china.jpg", "flower.jpg")


def _package_dir(name: str) -> Path | None:
    """Folder of an installed package without importing it (scikit-learn imports take seconds)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.lru_cache(maxsize=1)
def _builtin_background_cache() -> tuple[np.ndarray, ...]:
    paths: list[Path] = []
    skimage_dir = _package_dir("skimage")
    if skimage_dir is not None:
        paths += [skimage_dir / "data" / name for name in _SKIMAGE_SAMPLES]
    sklearn_dir = _package_dir("sklearn")
    if sklearn_dir is not None:
        paths += [sklearn_dir / "datasets" / "images" / name for name in _SKLEARN_SAMPLES]
    images = []
    for path in paths:
        image = _read_rgb(path)
        if image is not None:
            image.setflags(write=False)  # shared cache: nobody may draw on it
            images.append(image)
    return tuple(images)


def builtin_backgrounds() -> list[np.ndarray]:
    """Real cluttered photos bundled with scikit-image (astronaut, cat, coffee, rocket, garage, cameraman,
    brick/gravel/grass surfaces) and scikit-learn (china, flower), RGB, read-only and cached.

    Empty when neither package is installed; the simulator then uses procedural clutter only."""
    return list(_builtin_background_cache())


def load_backgrounds(dirs: Iterable[str | Path] = (), include_builtin: bool = True) -> list[np.ndarray]:
    """Background photos from user folders (recursive jpg/jpeg/png/webp/bmp, sorted so runs are
    reproducible; unreadable or tiny files skipped), optionally plus :func:`builtin_backgrounds`."""
    images = builtin_backgrounds() if include_builtin else []
    for folder in dirs:
        folder = Path(folder)
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        for path in files:
            image = _read_rgb(path)
            if image is not None and min(image.shape[:2]) >= 32:
                images.append(image)
    return images


def _read_rgb(path: Path) -> np.ndarray | None:
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        return None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# ============================================================================ procedural clutter

_TEXT_CHARS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789   .-"))
_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_PLAIN,
)


def procedural_clutter(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A random cluttered indoor-like scene, so training never depends on a handful of photos.

    A textured surface (wood grain, woven fabric, tiles or mottled plaster under a colour gradient) with
    random household-like objects on it: rectangles (books, phones, paper), ellipses (cups, plates), thick
    curves (cables), and text-like marks, each with simple shading and a soft shadow.
    """
    # Surface: texture at half resolution (upsampling softens it like a slightly defocused table top).
    small_h, small_w = max(8, h // 2), max(8, w // 2)
    texture = rng.choice(["wood", "fabric", "tiles", "plaster", "plain"], p=[0.3, 0.2, 0.15, 0.25, 0.1])
    if texture == "wood":
        rows = np.arange(small_h, dtype=np.float32)[:, None] / small_h
        cols = np.arange(small_w, dtype=np.float32)[None, :] / small_h
        grain_angle = rng.uniform(0, np.pi)
        across = np.float32(np.cos(grain_angle)) * rows - np.float32(np.sin(grain_angle)) * cols
        # Grain lines run roughly parallel and waver by about one line spacing; a finer streak texture
        # on top. (Stronger warping turns the lines into contour-map rings.)
        frequency = rng.uniform(8, 30)
        warp = _smooth_noise(small_h, small_w, rng, cells=3) * np.float32(rng.uniform(0.3, 1.2) / frequency)
        stripes = np.sin(np.float32(2 * np.pi * frequency) * (across + warp))
        streaks = np.sin(np.float32(2 * np.pi * frequency * rng.uniform(3, 6)) * (across + 0.5 * warp))
        shade = 1.0 + 0.1 * stripes + 0.04 * streaks + 0.05 * _smooth_noise(small_h, small_w, rng, cells=8)
    elif texture == "fabric":
        period = rng.uniform(2.0, 5.0)
        weave_x = np.sin(np.arange(small_w, dtype=np.float32) * np.float32(2 * np.pi / period))
        weave_y = np.sin(np.arange(small_h, dtype=np.float32) * np.float32(2 * np.pi / period))
        shade = 1.0 + 0.08 * weave_y[:, None] * weave_x[None, :]
        shade += 0.08 * _smooth_noise(small_h, small_w, rng, cells=12)
    elif texture == "tiles":
        step = int(rng.integers(max(6, small_w // 12), max(8, small_w // 3)))
        grout = ((np.arange(small_h)[:, None] % step) < 2) | ((np.arange(small_w)[None, :] % step) < 2)
        shade = np.where(grout, np.float32(0.7), np.float32(1.0))
        shade += 0.05 * _smooth_noise(small_h, small_w, rng, cells=20)
    elif texture == "plaster":
        shade = 1.0 + 0.07 * _smooth_noise(small_h, small_w, rng, cells=6)
        shade += 0.04 * _smooth_noise(small_h, small_w, rng, cells=30)
    else:
        shade = np.ones((small_h, small_w), np.float32)
    # Colour: a gradient between four related corner colours (uneven light, surfaces of two materials).
    # Colours of real furniture: wood is brown, tiles and plaster are pale and nearly grey, fabric anything
    # muted. Corners vary in brightness (uneven light) and slightly in hue (two materials, reflections).
    if texture == "wood":
        base = _random_colour(rng, saturation=(0.35, 0.75), value=(0.25, 0.8), hue=(5, 22))
    elif texture in ("tiles", "plaster"):
        base = _random_colour(rng, saturation=(0.0, 0.25), value=(0.45, 0.9))
    else:
        base = _random_colour(rng, saturation=(0.05, 0.45), value=(0.2, 0.85))
    brightness = rng.uniform(0.7, 1.2, size=(2, 2, 1)) * rng.uniform(0.92, 1.08, size=(2, 2, 3))
    corners = np.clip(base[None, None, :] * brightness, 0, 255).astype(np.float32)
    surface = cv2.resize(corners, (small_w, small_h), interpolation=cv2.INTER_LINEAR)
    surface = cv2.multiply(surface, cv2.merge([shade.astype(np.float32)] * 3))
    image = cv2.resize(np.clip(surface, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)

    short = min(h, w)
    for _ in range(int(rng.integers(4, 13))):
        kind = rng.choice(["rect", "ellipse", "cable", "text"], p=[0.4, 0.25, 0.15, 0.2])
        # Mostly muted household colours, now and then a vivid one (a mug, a book cover).
        vivid = rng.random() < 0.25
        colour = _random_colour(rng, saturation=(0.3, 0.85) if vivid else (0.0, 0.4), value=(0.1, 0.95))
        cx, cy = float(rng.uniform(-0.1, 1.1) * w), float(rng.uniform(-0.1, 1.1) * h)
        if kind == "rect":
            size = (float(rng.uniform(0.1, 0.6) * short), float(rng.uniform(0.1, 0.6) * short))
            angle = float(rng.uniform(0, 180))
            corners = cv2.boxPoints(((cx, cy), size, angle))
            label = None
            if rng.random() < 0.4:  # printed band on a box or book
                label = cv2.boxPoints(((cx, cy), (size[0] * 0.8, size[1] * 0.25), angle))
            _paint_polygon(image, corners, colour, rng, label=label)
        elif kind == "ellipse":
            axes = (float(rng.uniform(0.05, 0.3) * short), float(rng.uniform(0.05, 0.3) * short))
            # Polygonal ellipse: drawn into a small local layer like every other shape.
            outline = cv2.ellipse2Poly((0, 0), (int(axes[0]), int(axes[1])), int(rng.uniform(0, 180)), 0, 360, 10)
            outline = outline.astype(np.float32) + np.float32([cx, cy])
            rim = rng.random() < 0.5  # rim of a cup or plate
            _paint_polygon(image, outline, colour, rng, rim=rim)
        elif kind == "cable":
            points = np.cumsum(rng.normal(0, 0.15 * short, size=(6, 2)), axis=0) + np.array([cx, cy])
            thickness = int(rng.integers(2, max(3, short // 40)))
            _paint_polygon(image, points.astype(np.float32), colour, rng, shadow=0.3, line_thickness=thickness)
        else:
            font = _FONTS[int(rng.integers(len(_FONTS)))]
            scale = float(rng.uniform(0.3, 1.6) * short / 400)
            x, y = int(cx), int(cy)
            for _line in range(int(rng.integers(1, 5))):
                text = "".join(rng.choice(_TEXT_CHARS, size=int(rng.integers(3, 14))))
                thickness = max(1, int(scale * 2))
                cv2.putText(image, text, (x, y), font, scale, colour.tolist(), thickness, cv2.LINE_AA)
                y += int(30 * scale) + 2
    return image


def _paint_polygon(
    image: np.ndarray,
    points: np.ndarray,
    colour: np.ndarray,
    rng: np.random.Generator,
    shadow: float = 0.45,
    line_thickness: int = 0,
    label: np.ndarray | None = None,
    rim: bool = False,
) -> None:
    """Draw a filled polygon (or a thick polyline) with a soft drop shadow and shading, in place.

    Works on a local window around the shape only, which keeps a dozen objects per frame cheap."""
    h, w = image.shape[:2]
    low, high = points.min(axis=0) - line_thickness, points.max(axis=0) + line_thickness
    size = float(max(high - low))
    pad = int(0.1 * size) + 4
    x0, y0 = max(0, int(low[0]) - pad), max(0, int(low[1]) - pad)
    x1, y1 = min(w, int(high[0]) + pad + 1), min(h, int(high[1]) + pad + 1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    local = (points - np.float32([x0, y0])).round().astype(np.int32)
    layer = np.zeros((y1 - y0, x1 - x0), np.uint8)
    if line_thickness:
        cv2.polylines(layer, [local], False, 255, line_thickness, cv2.LINE_AA)
    else:
        cv2.fillPoly(layer, [local], 255, cv2.LINE_AA)
    alpha = layer.astype(np.float32) * np.float32(1 / 255)
    offset_x, offset_y = float(rng.uniform(-0.04, 0.04) * size), float(rng.uniform(0.01, 0.05) * size)
    soft = _soft_shadow(alpha, offset_x, offset_y, 0.03 * size + 1.0)
    region = _darken(image[y0:y1, x0:x1], shadow * soft)
    # Flat colour with a linear light-to-dark ramp: bilinear upsampling of a 2x2 colour grid is exactly that.
    corners = colour[None, None, :] * rng.uniform(0.8, 1.15, size=(2, 2, 1))
    fill = cv2.resize(np.clip(corners, 0, 255).astype(np.uint8), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    patch = _blend(region, fill, alpha)
    if label is not None:
        band = (label - np.float32([x0, y0])).round().astype(np.int32)
        cv2.fillPoly(patch, [band], _random_colour(rng, (0.0, 0.8), (0.1, 0.95)).tolist(), cv2.LINE_AA)
    if rim:
        centre = local.mean(axis=0)
        inner = ((local - centre) * 0.75 + centre).round().astype(np.int32)
        cv2.polylines(patch, [inner], True, (colour * 0.7).tolist(), max(1, int(size / 60)), cv2.LINE_AA)
    image[y0:y1, x0:x1] = patch


def _random_colour(
    rng: np.random.Generator,
    saturation: tuple[float, float],
    value: tuple[float, float],
    hue: tuple[float, float] = (0, 180),
) -> np.ndarray:
    """An RGB colour (float32 0..255) drawn in HSV (OpenCV hue 0..180) so saturation and brightness stay
    plausible."""
    hsv = np.array([[[rng.uniform(*hue), rng.uniform(*saturation) * 255, rng.uniform(*value) * 255]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _smooth_noise(h: int, w: int, rng: np.random.Generator, cells: int) -> np.ndarray:
    """Zero-mean smooth noise in about [-1, 1], ``cells`` blobs across the width (value noise)."""
    cells_h = max(2, round(cells * h / max(w, 1)))
    grid = rng.uniform(-1, 1, size=(cells_h + 1, cells + 1)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


# ============================================================================ scene parameters


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
            self.backgrounds = [_as_rgb_u8(b) for b in backgrounds]
        self.params = params if params is not None else SceneParams()
        self._rng = np.random.default_rng(seed)

    def __call__(
        self, catalog_img: np.ndarray, rng: np.random.Generator | None = None, *, mask: np.ndarray | None = None
    ) -> Scene:
        """Simulate one photo of ``catalog_img`` (RGB uint8). ``mask``: an optional precomputed product mask
        (e.g. a cached :func:`product_mask`) to skip the ~1 ms segmentation in training loops."""
        rng = self._rng if rng is None else rng
        catalog_img = _as_rgb_u8(catalog_img)
        p = self.params
        info: dict[str, Any] = {}
        if mask is None:
            segmentation = segment_product(catalog_img)
            product, info["catalog_status"] = segmentation.mask, segmentation.status
        else:
            product, info["catalog_status"] = np.asarray(mask, dtype=bool), "given"
            if product.shape != catalog_img.shape[:2] or not product.any():
                raise ValueError("mask must be a non-empty HxW boolean array matching catalog_img")

        aspect = p.aspect_ratios[int(rng.integers(len(p.aspect_ratios)))]
        long_side = int(rng.integers(p.long_side_range[0], p.long_side_range[1] + 1))
        if aspect[0] >= aspect[1]:
            width, height = long_side, max(16, round(long_side * aspect[1] / aspect[0]))
        else:
            width, height = max(16, round(long_side * aspect[0] / aspect[1])), long_side
        info.update(width=width, height=height, aspect=aspect)

        frame = self._background(height, width, rng, info)
        placement = _plan_watch(product, height, width, p, rng, info)
        self._add_distractors(frame, placement.predicted_box, rng, info)
        pasted = _paste_watch(frame, catalog_img, product, placement, p, rng, info)
        image = _camera(frame, p, rng, info)
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
                    colour = _random_colour(rng, saturation=(0.2, 0.9), value=(0.2, 0.95))
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
    target = (corners - np.float32([cx, cy])) @ rotation.T + jitter.astype(np.float32)
    unit_homography = cv2.getPerspectiveTransform(corners, target.astype(np.float32)).astype(np.float64)

    warped = cv2.perspectiveTransform(outline[None].astype(np.float64), unit_homography)[0]
    low, high = warped.min(axis=0), warped.max(axis=0)
    extent = high - low
    watch_size = float(rng.uniform(*p.watch_size_range) * min(h, w))
    scale = watch_size / float(extent.max())
    # Keep the whole box inside the frame with one pixel to spare for rasterisation.
    tx = _uniform_or_centre(rng, 1.0 - scale * low[0], w - 1.0 - scale * high[0])
    ty = _uniform_or_centre(rng, 1.0 - scale * low[1], h - 1.0 - scale * high[1])
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
) -> np.ndarray:
    """Warp the product (with shadow and lighting) into ``frame`` in place; return the full-frame mask."""
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
        cast = _soft_shadow(alpha, dx, dy, max(shadow_sigma, 0.5))
        contact = _soft_shadow(alpha, 0.0, 0.0, 0.01 * size + 0.7)
        darkness = np.clip(strength * cast + (0.5 * strength) * contact, 0.0, 0.9)
        background = _darken(background, darkness)
        info.update(shadow_strength=strength, shadow_offset=shadow_offset, shadow_sigma=shadow_sigma)

    # Relight the studio-lit watch for the room: dimmer, and tinted by the surrounding colours.
    light = float(rng.uniform(*p.watch_light_range))
    tint_amount = float(rng.uniform(*p.ambient_tint_range))
    surround = np.asarray(cv2.mean(background)[:3])
    tint = surround / max(float(surround.mean()), 1.0)
    gains = light * ((1.0 - tint_amount) + tint_amount * tint)
    watch = cv2.transform(watch, np.diag(gains).astype(np.float32))
    frame[ry0:ry1, rx0:rx1] = _blend(background, watch, alpha)
    info.update(watch_light=light, ambient_tint=tint_amount, edge_feather=feather)

    mask = np.zeros((h, w), dtype=bool)
    mask[ry0:ry1, rx0:rx1] = roi_mask
    return mask


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


def _camera(frame: np.ndarray, p: SceneParams, rng: np.random.Generator, info: dict[str, Any]) -> np.ndarray:
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
    gains = field[..., None] * (exposure * cast)[None, None, :]
    headroom = max(2.0, float(gains.max()) * 1.01)
    gain_map = cv2.resize(
        np.clip(gains / headroom * 255.0, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR
    )
    image = cv2.multiply(frame, gain_map, scale=headroom / 255.0)

    # Sensor noise, stronger in low light (more analogue gain): out = image + sigma * N(0, 1).
    noise_sigma = float(rng.uniform(*p.noise_sigma_range) / math.sqrt(exposure))
    beta = noise_sigma / _NOISE_TILE_STD
    image = cv2.addWeighted(image, 1.0, _sensor_noise(h, w, rng), beta, -128.0 * beta)

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


def _blend(below: np.ndarray, above: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``alpha * above + (1 - alpha) * below`` for uint8 images and a float32 HxW alpha, in one OpenCV call
    (about 10x faster than the same in numpy floats)."""
    return cv2.blendLinear(above, below, alpha, 1.0 - alpha)


def _darken(image: np.ndarray, darkness: np.ndarray) -> np.ndarray:
    """``image * (1 - darkness)`` for a uint8 image and a float32 HxW darkness map."""
    return cv2.blendLinear(image, np.zeros_like(image), 1.0 - darkness, darkness)


def _soft_shadow(alpha: np.ndarray, dx: float, dy: float, sigma: float) -> np.ndarray:
    """``alpha`` shifted by ``(dx, dy)`` and Gaussian-blurred by ``sigma``, computed at reduced resolution
    (a blur that wide has no detail to lose) and brought back to ``alpha``'s size."""
    h, w = alpha.shape
    factor = max(1.0, sigma / 2.0)
    if factor > 1.0:
        small = cv2.resize(alpha, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
        fx, fy = small.shape[1] / w, small.shape[0] / h
    else:
        small, fx, fy = alpha, 1.0, 1.0
    if dx or dy:
        small = cv2.warpAffine(small, np.float32([[1, 0, dx * fx], [0, 1, dy * fy]]), small.shape[::-1])
    small = cv2.GaussianBlur(small, (0, 0), sigma * (fx + fy) / 2)
    if small.shape != alpha.shape:
        small = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return small


def _as_rgb_u8(img: np.ndarray) -> np.ndarray:
    """Accept RGB, RGBA or grey uint8; anything else is a caller bug (e.g. float or BGR-from-disk confusion
    cannot be detected, but dtype and shape can)."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {img.dtype}")
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.ndim == 3 and img.shape[2] == 4:
        return np.ascontiguousarray(img[..., :3])
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    raise ValueError(f"expected an HxWx3 RGB image, got shape {img.shape}")


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
    shadow = _soft_shadow(canvas_alpha, float(shift[0]), float(abs(shift[1])), 0.04 * size + 1.0)
    fx0, fy0 = x0 - pad, y0 - pad
    cx0, cy0 = max(0, -fx0), max(0, -fy0)
    cx1 = min(canvas_alpha.shape[1], w - fx0)
    cy1 = min(canvas_alpha.shape[0], h - fy0)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    region = frame[fy0 + cy0 : fy0 + cy1, fx0 + cx0 : fx0 + cx1]
    region = _darken(region, np.ascontiguousarray(strength * shadow[cy0:cy1, cx0:cx1]))
    region = _blend(
        region,
        np.ascontiguousarray(canvas_colour[cy0:cy1, cx0:cx1]),
        np.ascontiguousarray(canvas_alpha[cy0:cy1, cx0:cx1]),
    )
    frame[fy0 + cy0 : fy0 + cy1, fx0 + cx0 : fx0 + cx1] = region
