"""The one image reader: every file a user has is either read correctly or refused with a one-line reason.

The libraries (``bbox``, ``ranking``) take RGB uint8 arrays; this module is where files become arrays, for the
catalogue (``index``), queries (``search``, ``crop``) and uploads (``load_image_bytes``) alike:

* the size is checked from the header before anything is decoded: a decompression bomb (a tiny PNG that claims
  30,000 x 30,000 pixels) is refused as "too large: W×H, limit N pixels", never decoded;
* large JPEGs are decoded reduced (libjpeg's DCT scaling, ``Image.draft``) and every image is scaled down to at
  most ``MAX_SIDE`` on its long side: the pipeline never looks at more (its networks see 256-260 px), and a
  12,000 px panorama then costs a second instead of minutes and gigabytes;
* 16-bit and float images keep their tones (0..65535 scaled to 0..255, not clipped to white), CMYK JPEGs
  (Adobe-inverted ones too) go through their ICC profile where they have one, palette and alpha images are laid
  on white, and the EXIF orientation is applied;
* HEIC/HEIF (``pillow-heif``), AVIF, WebP and TIFF are read by maintained decoders;
* everything that can go wrong, including a missing file, a broken or looping symlink, a FIFO or a decoder's own
  exception on hostile bytes, is an ``ImageReadError`` whose message names the file exactly once, printable on
  one line (control characters and undecodable bytes escaped), so callers print it as it is and carry on.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import stat
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

log = logging.getLogger(__name__)

try:  # HEIC/HEIF (iPhone photos); a missing plugin makes such files a named skip, not a silent gap
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_SUPPORT = True
except ImportError:  # pragma: no cover - pillow-heif is a dependency; kept for minimal installs
    HEIF_SUPPORT = False

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif")
HEIF_EXTENSIONS = (".heic", ".heif")
# The long side of every array handed to the pipeline: the crop network letterboxes to 256 px and its second look
# zooms into a part of the photo, so 2,048 px keeps a watch a tenth of the photo wide at 200 px.
MAX_SIDE = 2048
# Pixels decoded at once (after a JPEG's reduced decode): 64 MP is an 8,000 x 8,000 PNG, about 200 MB as RGB.
# Above it a file is refused before decoding. Pillow's own bomb check (2 x Image.MAX_IMAGE_PIXELS, read from the
# header at open) stays in force for JPEGs, which a reduced decode otherwise lets up to 64 x this.
MAX_PIXELS = 64_000_000
MIN_SIDE = 8  # smaller is a tracking pixel or an icon, not a photo of a watch
# The decoders a file may reach, whatever its name says (content decides the format): photo formats only. Pillow's
# other openers (EPS runs Ghostscript, exotic formats get little fuzzing) are left out of reach of hostile files.
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "AVIF", *(("HEIF",) if HEIF_SUPPORT else ()))
_REDUCIBLE = ("JPEG", "MPO")  # libjpeg decodes these at 1/2, 1/4 or 1/8 scale (MPO: a phone JPEG, same opener)

# A JPEG between Pillow's two limits (89 and 179 MP) is read here reduced, under MAX_PIXELS; Pillow's warning about
# it would only alarm. Its error above the upper limit is kept and turned into a "too large" skip.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning, module="PIL.Image")

_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageReadError(ValueError):
    """A file that should be an image but cannot be read; ``str(error)`` is ``"<path>: <reason>"`` on one line.

    ``path`` is the file as given and ``reason`` the part after the path (e.g. ``"too large: 30000×30000, limit
    64,000,000 pixels"``), for callers that count or group skips.
    """

    def __init__(self, message: str, path: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason if reason is not None else message


def display_path(path: str | os.PathLike[str] | bytes) -> str:
    """A file name as one printable line: undecodable bytes as ``\\xff``, control characters escaped.

    File names on Linux are bytes; Python keeps undecodable ones as surrogates, which a UTF-8 terminal or JSON
    encoder would choke on, and a newline in a name would split a one-line message."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _error(name: str | os.PathLike[str], reason: str) -> ImageReadError:
    shown = display_path(name)
    reason = " ".join(reason.split())  # one line, whatever a decoder put in its message
    return ImageReadError(f"{shown}: {reason}", path=os.fsdecode(name), reason=reason)


# ---------------------------------------------------------------------------------------------- reading
def load_image(path: str | Path, max_side: int | None = MAX_SIDE) -> np.ndarray:
    """RGB uint8 HxWx3, upright as the EXIF orientation says, at most ``max_side`` px on its long side (None: as
    stored, still under ``MAX_PIXELS``).

    Raises ``ImageReadError`` for every file it cannot read, a missing one included (a query that vanished
    between listing and reading is one failed query, not a failed batch)."""
    path = Path(path)
    try:
        info = os.stat(path)  # follows symlinks: a broken or looping one fails here, with its errno
    except OSError as error:
        raise _error(path, _os_reason(path, error)) from error
    if not stat.S_ISREG(info.st_mode):  # a FIFO named .jpg would block the read forever
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise _error(path, kind)
    if info.st_size == 0:
        raise _error(path, "empty file (0 bytes)")
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below; opened here so open errors get their own reason
    except OSError as error:
        raise _error(path, _os_reason(path, error)) from error
    with handle:
        return _read(handle, path, max_side)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the photo as stored, upright (EXIF orientation applied), read from its header only.

    ``load_image`` scales large photos down to ``MAX_SIDE``; a caller that reports pixel coordinates in the
    original file (a crop box) scales them by ``image_size(path)[0] / array.shape[1]``."""
    path = Path(path)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as error:
        raise _error(path, _os_reason(path, error)) from error
    with handle:
        try:
            with Image.open(handle, formats=FORMATS) as image:
                width, height = image.size
                turned = _orientation(image) in (5, 6, 7, 8)
        except Image.DecompressionBombError:  # its size is still what was asked for
            size = _header_size(handle)
            if size is None:
                raise _error(path, _bomb_reason(handle)) from None
            (width, height), turned = size, False
        except UnidentifiedImageError as error:
            raise _error(path, _unidentified_reason(path)) from error
        except Exception as error:
            raise _error(path, f"not a readable image ({error.__class__.__name__})") from error
    return (height, width) if turned else (width, height)


def load_image_bytes(data: bytes, name: str = "upload", max_side: int | None = MAX_SIDE) -> np.ndarray:
    """``load_image`` for bytes already in memory (an upload); ``name`` stands for the path in messages."""
    if not data:
        raise _error(name, "empty file (0 bytes)")
    return _read(io.BytesIO(data), name, max_side)


def _read(stream: IO[bytes], name: str | Path, max_side: int | None) -> np.ndarray:
    try:
        with Image.open(stream, formats=FORMATS) as opened:
            size = opened.size
            image = _decode(opened, name, max_side)
            array = np.asarray(image, dtype=np.uint8)
    except ImageReadError:
        raise
    except UnidentifiedImageError as error:
        raise _error(name, _unidentified_reason(name)) from error
    except Image.DecompressionBombError as error:
        raise _error(name, _bomb_reason(stream)) from error
    except MemoryError as error:
        raise _error(name, "too large to decode in the memory available") from error
    except Exception as error:  # a decoder's exception on hostile bytes (OSError, SyntaxError, struct.error...)
        raise _error(name, f"not a readable image ({error.__class__.__name__}: {_strip_name(error, name)})") from error
    if array.ndim != 3 or array.shape[2] != 3:
        raise _error(name, f"malformed image (decoded shape {array.shape})")
    if array.shape[0] < MIN_SIDE or array.shape[1] < MIN_SIDE:
        raise _error(name, _small_reason(size, array.shape))
    return np.ascontiguousarray(array)


def _small_reason(size: tuple[int, int], shape: tuple[int, ...]) -> str:
    width, height = size
    if min(width, height) < MIN_SIDE:
        return f"too small: {width}×{height} (minimum {MIN_SIDE}×{MIN_SIDE})"
    return f"too narrow: {width}×{height} is under {MIN_SIDE} px across at {max(shape[:2])} px long"


def _decode(image: Image.Image, name: str | Path, max_side: int | None) -> Image.Image:
    """An opened (header-only) image -> RGB at most ``max_side`` on its long side, upright."""
    width, height = image.size
    if width < 1 or height < 1:
        raise _error(name, f"malformed image (size {width}×{height})")
    if image.format in _REDUCIBLE and max_side:
        long_side = max(width, height)
        if long_side > max_side:
            # libjpeg decodes at 1/2, 1/4 or 1/8 scale directly: the smallest scale-down that keeps two thirds of
            # max_side, so most photos need no resize after it (a 4,000 px one decodes at 2,000 px, quicker than
            # decoding it whole, and resizing 16 MP to 2,048 px would cost twice the decode)
            target = max_side * 2 // 3
            image.draft(image.mode, (max(1, width * target // long_side), max(1, height * target // long_side)))
    decoded = image.size[0] * image.size[1]
    if decoded > MAX_PIXELS:
        raise _error(name, f"too large: {width}×{height}, limit {MAX_PIXELS:,} pixels")
    orientation = _orientation(image)
    image.load()
    image = _to_rgb(image)
    if max_side and max(image.size) > max_side:
        # Pillow's bilinear filter widens with the scale (it averages, no aliasing) and is twice as fast as Lanczos
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=None)
    if orientation in _TRANSPOSE:
        image = image.transpose(_TRANSPOSE[orientation])
    return image


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_ORIENTATION, 1))
    except Exception:  # a damaged EXIF block is not worth refusing the photo for
        return 1


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB with the tones it means: 16-bit and float rescaled, CMYK through its profile,
    transparency laid on white (transparent product shots become product-on-white, like the rest of a catalogue)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_to_uint8(np.asarray(image), mode)).convert("RGB")
    if mode == "CMYK":
        return _cmyk_to_rgb(image)
    if "A" in image.getbands() or "a" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """16-bit (``I;16*``, and ``I``, Pillow's 32-bit mode that 16-bit files arrive in) 0..65535 -> 0..255; float
    images in 0..1 scaled, others clipped. Converting with Pillow instead clips: a 16-bit photo turns white."""
    values = np.asarray(values)
    if mode == "F":
        values = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        scale = 255.0 if values.size and float(values.max()) <= 1.0 else 1.0
        return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    return np.clip(np.rint(values.astype(np.float32) / 257.0), 0, 255).astype(np.uint8)


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    """Through the file's ICC profile where it has one (print CMYK is far from Pillow's naive formula), else
    Pillow's conversion. Adobe's inverted CMYK JPEGs are un-inverted by Pillow's JPEG reader already."""
    profile = image.info.get("icc_profile")
    if profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as error:
            log.debug("CMYK profile not applied (%s); using the plain conversion", error)
    return image.convert("RGB")


# ---------------------------------------------------------------------------------------------- reasons
def _os_reason(path: Path, error: OSError) -> str:
    """An ``open``/``stat`` failure as a reason that does not repeat the path."""
    if error.errno == errno.ELOOP:
        return "symlink loop (too many levels of symbolic links)"
    if error.errno == errno.ENOENT:
        return "broken symlink (its target does not exist)" if os.path.islink(path) else "no such file"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if error.errno == errno.ENAMETOOLONG:
        return "file name too long"
    return error.strerror or error.__class__.__name__


def _unidentified_reason(name: str | Path) -> str:
    if Path(os.fsdecode(name)).suffix.lower() in HEIF_EXTENSIONS and not HEIF_SUPPORT:
        return "HEIC/HEIF support missing (pip install pillow-heif)"
    return "not a recognised image format"


def _bomb_reason(stream: IO[bytes]) -> str:
    size = _header_size(stream)
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    if size is None:
        return f"too large: over the limit of {limit:,} pixels"
    return f"too large: {size[0]}×{size[1]}, limit {limit:,} pixels"


def _header_size(stream: IO[bytes]) -> tuple[int, int] | None:
    """The size a header claims, read without Pillow's bomb check (which raised before telling it): each
    format's opener reads only the header."""
    try:
        stream.seek(0)
        prefix = stream.read(16)
        Image.init()
        for fmt in FORMATS:
            if fmt not in Image.OPEN:
                continue
            factory, accept = Image.OPEN[fmt]
            if accept is not None and not accept(prefix):
                continue
            try:
                stream.seek(0)
                return factory(stream, "").size
            except Exception:
                continue
    except Exception:
        return None
    return None


def _strip_name(error: BaseException, name: str | Path) -> str:
    """A decoder's message without the file name some put in it: the message already starts with it."""
    text, raw = str(error), os.fsdecode(name)
    for form in (repr(raw), raw):
        text = text.replace(form, "").strip()
    return text.rstrip(": ") or error.__class__.__name__


# ---------------------------------------------------------------------------------------------- writing
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


# ---------------------------------------------------------------------------------------------- listing
def is_image_path(path: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> bool:
    return Path(path).suffix.lower() in {e.lower() for e in extensions}


def list_images(root: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files under ``root``, recursively, sorted; hidden files and folders skipped.

    Symlinks named like images are listed even when broken or looping, so the reader names them as skipped
    rather than letting them vanish; symlinked folders are not followed (a loop would never end)."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"no such file or folder: {display_path(root)}")
    found: list[Path] = []

    def unreadable(error: OSError) -> None:
        log.warning("folder not read: %s: %s", display_path(error.filename or root), error.strerror or error)

    for folder, subfolders, files in os.walk(root, followlinks=False, onerror=unreadable):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        found.extend(
            Path(folder) / name for name in files if not name.startswith(".") and is_image_path(name, extensions)
        )
    return sorted(found)


def expand_queries(items: Iterable[str | Path], extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Query arguments may be files or folders; folders contribute their images, anything else is taken as given.

    A missing file, or a symlink that is broken or loops, is kept: reading it then fails for that one query, with
    its reason (``load_image``), instead of the whole batch failing here."""
    paths: list[Path] = []
    for item in items:
        item = Path(item)
        paths.extend(list_images(item, extensions) if item.is_dir() else [item])
    return paths
