"""What a simulated photo is taken in front of: real sample photos, procedural clutter, and the compositing
primitives (blend, darken, soft shadow) that scenes are built with.

scikit-image and scikit-learn are used solely to *locate* the sample photos they bundle.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "blend",
    "builtin_backgrounds",
    "darken",
    "load_backgrounds",
    "package_dir",
    "procedural_clutter",
    "random_colour",
    "soft_shadow",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")

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


def package_dir(name: str) -> Path | None:
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
    skimage_dir = package_dir("skimage")
    if skimage_dir is not None:
        paths += [skimage_dir / "data" / name for name in _SKIMAGE_SAMPLES]
    sklearn_dir = package_dir("sklearn")
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
        base = random_colour(rng, saturation=(0.35, 0.75), value=(0.25, 0.8), hue=(5, 22))
    elif texture in ("tiles", "plaster"):
        base = random_colour(rng, saturation=(0.0, 0.25), value=(0.45, 0.9))
    else:
        base = random_colour(rng, saturation=(0.05, 0.45), value=(0.2, 0.85))
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
        colour = random_colour(rng, saturation=(0.3, 0.85) if vivid else (0.0, 0.4), value=(0.1, 0.95))
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
    soft = soft_shadow(alpha, offset_x, offset_y, 0.03 * size + 1.0)
    region = darken(image[y0:y1, x0:x1], shadow * soft)
    # Flat colour with a linear light-to-dark ramp: bilinear upsampling of a 2x2 colour grid is exactly that.
    corners = colour[None, None, :] * rng.uniform(0.8, 1.15, size=(2, 2, 1))
    fill = cv2.resize(np.clip(corners, 0, 255).astype(np.uint8), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    patch = blend(region, fill, alpha)
    if label is not None:
        band = (label - np.float32([x0, y0])).round().astype(np.int32)
        cv2.fillPoly(patch, [band], random_colour(rng, (0.0, 0.8), (0.1, 0.95)).tolist(), cv2.LINE_AA)
    if rim:
        centre = local.mean(axis=0)
        inner = ((local - centre) * 0.75 + centre).round().astype(np.int32)
        cv2.polylines(patch, [inner], True, (colour * 0.7).tolist(), max(1, int(size / 60)), cv2.LINE_AA)
    image[y0:y1, x0:x1] = patch


def random_colour(
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


# ============================================================================ compositing


def blend(below: np.ndarray, above: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``alpha * above + (1 - alpha) * below`` for uint8 images and a float32 HxW alpha, in one OpenCV call
    (about 10x faster than the same in numpy floats)."""
    return cv2.blendLinear(above, below, alpha, 1.0 - alpha)


def darken(image: np.ndarray, darkness: np.ndarray) -> np.ndarray:
    """``image * (1 - darkness)`` for a uint8 image and a float32 HxW darkness map."""
    return cv2.blendLinear(image, np.zeros_like(image), 1.0 - darkness, darkness)


def soft_shadow(alpha: np.ndarray, dx: float, dy: float, sigma: float) -> np.ndarray:
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
