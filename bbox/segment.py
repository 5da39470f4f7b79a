"""Product cut-out: where the watch is in a catalogue photo on a plain light background.

Used at index and search time (a catalogue photo is framed by its cut-out instead of a crop-network pass) and by
the simulator, which pastes the cut-out into scenes. Numpy and OpenCV only.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from bbox.box import BoundingBox

__all__ = ["ProductSegmentation", "as_rgb_u8", "product_box", "product_mask", "segment_product"]

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

    ``border_spread``: how much the light varies over the background along the border (5th to 95th percentile of
    its luminance, levels). A studio backdrop is evenly lit (under 7 levels for 99 % of the dev catalogue); a phone
    photo of a watch on a white desk falls off towards a corner (16 levels and more), and a cut-out on it takes
    the darker corner for product.

    ``border_sides`` lists the frame sides the mask touches. Top/bottom is normal (straps cut by the frame,
    about 30 % of the dev catalogue); left/right mostly means a loose strap, a gift set, a presentation box or
    a hand on a white backdrop (about 1.5 %). Gift sets (watch + lipstick + bow, watch + bangles) come out as
    one product: only their parts far apart and small are dropped.
    """

    mask: np.ndarray
    status: str
    background_rgb: tuple[int, int, int] | None
    border_sides: tuple[str, ...] = ()
    border_spread: float = 0.0

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
    img = as_rgb_u8(img)
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
    spread = _spread((border[:, 0] + border[:, 1] + border[:, 2])[near] // 3)

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
        return ProductSegmentation(full, "blank", background_rgb, _ALL_SIDES, spread)
    sides = tuple(
        side
        for side, edge in (("top", mask[0]), ("bottom", mask[-1]), ("left", mask[:, 0]), ("right", mask[:, -1]))
        if edge.any()
    )
    return ProductSegmentation(mask, "product", background_rgb, sides, spread)


def _spread(levels: np.ndarray) -> float:
    """5th to 95th percentile of integer levels 0-255, from their histogram (a tenth of ``np.percentile``'s time)."""
    counts = np.cumsum(np.bincount(levels, minlength=256))
    low, high = np.searchsorted(counts, (0.05 * counts[-1], 0.95 * counts[-1]))
    return float(high - low)


def product_box(
    img: np.ndarray, max_side: int | None = None, max_border_spread: float | None = None
) -> BoundingBox | None:
    """The box of the product on a plain light catalogue background - exactly the box the crop model is trained
    to predict - or None where the photo is not on such a background (the crop model must look).

    ``max_side``: cut out a copy at most this large and scale its box back (the morphology's cost grows with the
    photo; a box needs no more than a few hundred pixels). ``max_border_spread``: None too where the backdrop's
    light varies more than this along the border (``ProductSegmentation.border_spread``): not a studio shot."""
    h, w = img.shape[:2]
    small = img if max_side is None else shrunk(img, max_side)
    segmentation = segment_product(small)
    if not segmentation.on_plain_background:
        return None
    if max_border_spread is not None and segmentation.border_spread > max_border_spread:
        return None
    box = BoundingBox.from_mask(segmentation.mask)
    return box if small is img else box.scale(w / small.shape[1], h / small.shape[0])


def shrunk(img: np.ndarray, side: int) -> np.ndarray:
    """``img`` at most ``side`` pixels on its long side (area filter); ``img`` itself where it is no larger."""
    h, w = img.shape[:2]
    if max(h, w) <= side:
        return img
    scale = side / max(h, w)
    return cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


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


def as_rgb_u8(img: np.ndarray) -> np.ndarray:
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
