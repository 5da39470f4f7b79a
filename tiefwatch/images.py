"""Reading images from disk: EXIF orientation respected, broken files reported rather than fatal.

The libraries (``bbox``, ``ranking``) take RGB uint8 arrays; this module is where files become arrays.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class ImageReadError(ValueError):
    """A file that should be an image but cannot be decoded."""


def load_image(path: str | Path) -> np.ndarray:
    """RGB uint8 HxWx3, rotated as the camera's EXIF orientation says (phone photos often need it)."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode != "RGB":
                image = _flatten_alpha(image) if "A" in image.getbands() else image.convert("RGB")
            array = np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise ImageReadError(f"{path}: not a readable image ({error.__class__.__name__}: {error})") from error
    if array.ndim != 3 or array.shape[0] < 8 or array.shape[1] < 8:
        raise ImageReadError(f"{path}: image too small or malformed (shape {array.shape})")
    return np.ascontiguousarray(array)


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Transparent product shots become product-on-white, like the rest of a catalogue."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def save_image(path: str | Path, image: np.ndarray, quality: int = 92) -> None:
    """Write an RGB array (JPEG quality applies to .jpg); the file is written atomically."""
    from tiefwatch.storage import write_atomic

    path = Path(path)
    pil = Image.fromarray(image)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP"}.get(
        path.suffix.lower(), "PNG"
    )
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    write_atomic(path, lambda handle: pil.save(handle, format=fmt, **options))


def is_image_path(path: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> bool:
    return Path(path).suffix.lower() in {e.lower() for e in extensions}


def list_images(root: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files under ``root``, recursively, sorted; hidden files and folders skipped."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"no such file or folder: {root}")
    found: list[Path] = []
    for folder, subfolders, files in os.walk(root, followlinks=False):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        found.extend(
            Path(folder) / name for name in files if not name.startswith(".") and is_image_path(name, extensions)
        )
    return sorted(found)


def expand_queries(items: Iterable[str | Path], extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Query arguments may be files or folders; folders contribute their images, files are taken as given."""
    paths: list[Path] = []
    for item in items:
        item = Path(item)
        if item.is_dir():
            paths.extend(list_images(item, extensions))
        elif item.exists():
            paths.append(item)
        else:
            raise FileNotFoundError(f"no such file or folder: {item}")
    return paths
