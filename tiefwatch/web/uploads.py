"""Uploaded photos become arrays as files do in ``tiefwatch.images.load_image``: EXIF rotation applied,
transparency flattened onto white, and Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) kept.

Candidate for the shared reader (``tiefwatch.images``) as a ``load_image_bytes``; it lives here until then.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tiefwatch.images import ImageReadError


class ImageTooLarge(ImageReadError):
    """More pixels than ``Image.MAX_IMAGE_PIXELS``: refused before it is decoded."""


def load_image_bytes(data: bytes, name: str = "upload") -> np.ndarray:
    """RGB uint8 HxWx3 from an encoded image (JPEG, PNG, WebP...); ``ImageReadError`` naming ``name`` otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # over the limit at all: refused
            with Image.open(io.BytesIO(data)) as opened:
                image = ImageOps.exif_transpose(opened)
                if image.mode != "RGB":
                    if "A" in image.getbands() or image.mode == "P":
                        rgba = image.convert("RGBA")
                        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                        image = Image.alpha_composite(white, rgba)
                    image = image.convert("RGB")
                array = np.asarray(image, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageTooLarge(f"{name}: image has too many pixels ({error})") from error
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise ImageReadError(f"{name}: not a readable image ({error.__class__.__name__}: {error})") from error
    if array.ndim != 3 or array.shape[0] < 8 or array.shape[1] < 8:
        raise ImageReadError(f"{name}: image too small or malformed (shape {array.shape})")
    return np.ascontiguousarray(array)
