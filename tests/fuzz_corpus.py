"""A generated corpus of the files people actually have, for the image reader's fuzz tests and its benchmark.

Every case is bytes plus what reading it must give: ``read`` (with a check against an 8-bit reference where a
wrong decode would otherwise pass unnoticed: 16-bit tones, CMYK, EXIF orientation, palette transparency), ``skip``
(a one-line reason), or ``any`` (truncations and random corruptions: either is fine, anything else is a crash).
``write_corpus`` lays the cases out as files, with the cases only a file system has (symlink loops, broken links,
a folder or a FIFO named like a photo, undecodable, very long and multi-line names).

Used by tests/tiefwatch/test_fuzz_inputs.py and tools/bench_reliability.py; everything is made in code.
"""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.helpers import draw_watch

Check = Callable[[np.ndarray], str | None]  # a problem with a decoded array, or None


@dataclass(frozen=True)
class Case:
    name: str  # the file name it is written under
    data: bytes
    expect: str  # "read" | "skip" | "any"
    group: str
    check: Check | None = None


@dataclass
class Outcome:
    case: str
    group: str
    result: str  # "read" | "skipped" | "crashed" | "wrong" (read, but not as expected) | "lost" (skipped, not read)
    detail: str = ""


# ---------------------------------------------------------------------------------------------- references
def reference(width: int = 48, height: int = 32) -> np.ndarray:
    """An asymmetric RGB picture: each corner a different colour, so a flip or rotation is visible."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), np.full_like(x, 90)], -1)
    image[: height // 3, : width // 3] = (250, 20, 20)  # red top-left
    return image.astype(np.uint8)


def encode(image: np.ndarray | Image.Image, fmt: str, **options) -> bytes:
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buffer = io.BytesIO()
    pil.save(buffer, fmt, **options)
    return buffer.getvalue()


def close_to(expected: np.ndarray, tolerance: float) -> Check:
    def check(array: np.ndarray) -> str | None:
        if array.shape != expected.shape:
            return f"shape {array.shape}, expected {expected.shape}"
        error = float(np.abs(array.astype(np.float32) - expected.astype(np.float32)).mean())
        return None if error <= tolerance else f"mean difference {error:.1f} from the reference (> {tolerance})"

    return check


def mean_near(expected: float, tolerance: float = 1.5) -> Check:
    def check(array: np.ndarray) -> str | None:
        mean = float(array.mean())
        return None if abs(mean - expected) <= tolerance else f"mean {mean:.1f}, expected {expected:.1f}"

    return check


def reduced_to(cap: int) -> Check:
    """Scaled down to at most ``cap`` on the long side, and not below two thirds of it (a JPEG's reduced decode
    stops at 1/2, 1/4 or 1/8 of its size, whichever keeps that much)."""

    def check(array: np.ndarray) -> str | None:
        long = max(array.shape[:2])
        return None if cap * 2 // 3 <= long <= cap else f"long side {long}, expected {cap * 2 // 3}..{cap}"

    return check


# ---------------------------------------------------------------------------------------------- crafted files
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A real decompression bomb: a valid 1-bit PNG of ``width`` x ``height`` zeros, about 110 KB for 30,000^2
    (the issue's 875 KB one is the same picture at 8 bits)."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def png_claiming(width: int, height: int, depth: int = 8, colour: int = 2) -> bytes:
    """A PNG header claiming this size over one tiny IDAT: what a reader must refuse before decoding."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF marker is rewritten to claim ``width`` x ``height``."""
    data = bytearray(encode(reference(), "JPEG", quality=80))
    at = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def gif_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(reference(), "GIF"))
    struct.pack_into("<HH", data, 6, width, height)
    return bytes(data)


def bmp_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(reference(), "BMP"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def tiff_claiming(width: int, height: int) -> bytes:
    """An uncompressed TIFF whose width and length tags are rewritten."""
    data = bytearray(encode(reference(), "TIFF"))
    offset = struct.unpack_from("<I", data, 4)[0]
    count = struct.unpack_from("<H", data, offset)[0]
    for number in range(count):
        at = offset + 2 + 12 * number
        tag, kind = struct.unpack_from("<HH", data, at)
        if tag in (256, 257):
            value = width if tag == 256 else height
            if kind == 3:
                struct.pack_into("<H", data, at + 8, min(value, 65535))
            else:
                struct.pack_into("<I", data, at + 8, value)
    return bytes(data)


def oriented_jpeg(orientation: int, display: np.ndarray) -> bytes:
    """A JPEG whose stored pixels, turned as its EXIF orientation says, show ``display``."""
    undo = {
        1: None,
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,  # displayed = stored turned 270; stored = displayed turned 90
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }[orientation]
    stored = Image.fromarray(display)
    if undo is not None:
        stored = stored.transpose(undo)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def large_jpeg(width: int, height: int, quality: int = 90) -> bytes:
    """A photo-sized JPEG: a drawn watch scaled up over a gradient, with a little grain (what a camera gives)."""
    import cv2

    watch = cv2.resize(draw_watch(3, 256), (width, height), interpolation=cv2.INTER_LINEAR)
    grain = np.random.default_rng(0).integers(-6, 7, (height, width, 1), dtype=np.int16)
    photo = np.clip(watch.astype(np.int16) + grain, 0, 255).astype(np.uint8)
    return encode(photo, "JPEG", quality=quality)


# ---------------------------------------------------------------------------------------------- the corpus
def corpus(seed: int = 0, large: bool = False) -> list[Case]:
    """The whole generated corpus; ``large`` adds the 4,000 and 12,000 px JPEGs (seconds to make, for benchmarks)."""
    rng = random.Random(seed)
    cases: list[Case] = []
    ref = reference()
    small_jpeg = encode(ref, "JPEG", quality=90)
    small_png = encode(ref, "PNG")

    # every truncation point of a small JPEG and PNG
    for cut in range(len(small_jpeg)):
        cases.append(Case(f"cut-jpeg-{cut:05d}.jpg", small_jpeg[:cut], "skip" if cut == 0 else "any", "truncated"))
    for cut in range(len(small_png)):
        cases.append(Case(f"cut-png-{cut:05d}.png", small_png[:cut], "skip" if cut == 0 else "any", "truncated"))
    # random corruptions (a few bytes overwritten) and random bytes behind each format's magic number
    for number in range(60):
        source, suffix = (small_jpeg, "jpg") if number % 2 else (small_png, "png")
        data = bytearray(source)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cases.append(Case(f"flipped-{number:03d}.{suffix}", bytes(data), "any", "corrupted"))
    magics = [b"", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"RIFF\0\0\0\0WEBPVP8 ", b"II*\0", b"MM\0*", b"BM"]
    magics += [b"GIF89a", b"\0\0\0\x18ftypheic", b"\0\0\0\x1cftypavif"]
    for number in range(80):
        magic = magics[number % len(magics)]
        noise = bytes(rng.randrange(256) for _ in range(rng.choice([1, 17, 300, 4000])))
        cases.append(Case(f"random-{number:03d}.jpg", magic + noise, "any", "random bytes"))

    # wrong extensions: the content decides
    cases += [
        Case("png-named.jpg", small_png, "read", "wrong extension", close_to(ref, 0.5)),
        Case("jpeg-named.png", small_jpeg, "read", "wrong extension", close_to(ref, 4)),
        Case("gif-named.webp", encode(ref, "GIF"), "read", "wrong extension"),
        Case("text.jpg", b"this is not a photo\n" * 20, "skip", "wrong extension"),
        Case("page.webp", b"<!doctype html><html><body>404</body></html>", "skip", "wrong extension"),
        Case("script.png", b"#!/bin/sh\necho hi\n", "skip", "wrong extension"),
        Case("empty.jpg", b"", "skip", "empty"),
    ]
    # bombs and huge claimed dimensions: refused from the header, never decoded
    cases += [
        Case("bomb-30000.png", png_bomb(), "skip", "bomb"),
        Case("claims-10000.png", png_claiming(10_000, 10_000), "skip", "bomb"),
        Case("claims-65000.jpg", jpeg_claiming(65_000, 65_000), "skip", "bomb"),
        Case("claims-65535.gif", gif_claiming(65_535, 65_535), "skip", "bomb"),
        Case("claims-100000.bmp", bmp_claiming(100_000, 100_000), "skip", "bomb"),
        Case("claims-200000.tif", tiff_claiming(200_000, 200_000), "skip", "bomb"),
        Case("claims-zero.png", png_claiming(0, 0), "skip", "bomb"),
    ]
    # too small and too narrow
    cases += [
        Case("one-pixel.png", encode(np.zeros((1, 1, 3), np.uint8), "PNG"), "skip", "small"),
        Case("sliver.png", encode(np.zeros((4, 6000, 3), np.uint8), "PNG"), "skip", "small"),
    ]

    # modes whose tones a careless reader gets wrong
    grey = np.linspace(20, 230, 48 * 32).reshape(32, 48).astype(np.uint8)
    grey16 = grey.astype(np.uint16) * 257
    rgb16 = ref.astype(np.uint16) * 257
    cases += [
        Case("grey16.png", encode(Image.fromarray(grey16), "PNG"), "read", "16-bit", mean_near(grey.mean(), 0.6)),
        Case("grey16.tif", encode(Image.fromarray(grey16), "TIFF"), "read", "16-bit", mean_near(grey.mean(), 0.6)),
        Case("rgb16.png", _cv2_png(rgb16), "read", "16-bit", close_to(ref, 0.6)),
        Case("float.tif", encode(_float_image(grey), "TIFF"), "read", "16-bit", close_to(_rgb(grey), 1)),
        Case("cmyk.jpg", _cmyk_jpeg(ref), "read", "CMYK", close_to(ref, 4)),
        Case("cmyk.tif", encode(Image.fromarray(ref).convert("CMYK"), "TIFF"), "read", "CMYK", close_to(ref, 0.5)),
        Case("grey.png", encode(grey, "PNG"), "read", "grey", close_to(_rgb(grey), 0)),
        Case("bilevel.png", encode(Image.fromarray(grey > 128), "PNG"), "read", "grey"),
        Case("progressive.jpg", encode(ref, "JPEG", quality=95, progressive=True), "read", "progressive"),
        Case("palette.png", encode(Image.fromarray(ref).quantize(64), "PNG"), "read", "palette", close_to(ref, 8)),
        Case("palette-alpha.png", _palette_with_transparency(), "read", "alpha", _white_corner),
        Case("rgba.png", _rgba(), "read", "alpha", _white_corner),
        Case("la.png", encode(Image.fromarray(_rgba_array()).convert("LA"), "PNG"), "read", "alpha", _white_corner),
        Case("rgba.webp", encode(Image.fromarray(_rgba_array()), "WEBP", lossless=True), "read", "alpha"),
        Case("photo.webp", encode(ref, "WEBP", quality=95), "read", "format", close_to(ref, 6)),
        Case("photo.avif", encode(ref, "AVIF", quality=95), "read", "format", close_to(ref, 6)),
        Case("photo.tiff", encode(ref, "TIFF", compression="tiff_lzw"), "read", "format", close_to(ref, 0)),
        Case("photo.bmp", encode(ref, "BMP"), "read", "format", close_to(ref, 0)),
        Case("photo.heic", _heic(ref), "read", "format", close_to(ref, 8)),
        Case("animated.webp", _animated(), "read", "format"),
    ]
    # EXIF orientations 1-8
    for orientation in range(1, 9):
        data = oriented_jpeg(orientation, ref)
        cases.append(Case(f"exif-{orientation}.jpg", data, "read", "EXIF orientation", close_to(ref, 6)))
    # larger than the reader keeps: decoded reduced, scaled to MAX_SIDE
    from tiefwatch.images import MAX_SIDE

    cases.append(Case("wide-3000x2000.jpg", large_jpeg(3000, 2000), "read", "large", reduced_to(MAX_SIDE)))
    cases.append(Case("tall-2200x5000.png", _big_png(2200, 5000), "read", "large", reduced_to(MAX_SIDE)))
    if large:
        for side in (4000, 12000):
            cases.append(Case(f"photo-{side}.jpg", large_jpeg(side, side), "read", "large", reduced_to(MAX_SIDE)))
    return cases


def _float_image(grey: np.ndarray) -> Image.Image:
    """A 32-bit float TIFF in 0..1, as scientific and HDR tools write them."""
    return Image.fromarray((grey / 255.0).astype(np.float32), "F")


def _rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)


def _cv2_png(array: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", array[..., ::-1].copy())
    assert ok
    return data.tobytes()


def _cmyk_jpeg(image: np.ndarray) -> bytes:
    """libjpeg writes CMYK with an Adobe marker, inverted, as Photoshop does: Pillow must un-invert it."""
    return encode(Image.fromarray(image).convert("CMYK"), "JPEG", quality=95)


def _rgba_array() -> np.ndarray:
    rgba = np.zeros((32, 48, 4), np.uint8)
    rgba[8:24, 12:36] = (20, 40, 200, 255)
    return rgba


def _rgba() -> bytes:
    return encode(_rgba_array(), "PNG")


def _palette_with_transparency() -> bytes:
    image = Image.fromarray(_rgba_array()[..., :3]).quantize(4)
    black = image.getpixel((0, 0))
    return encode(image, "PNG", transparency=black)


def _white_corner(array: np.ndarray) -> str | None:
    return None if array[0, 0].min() >= 250 else f"transparent corner decoded as {array[0, 0].tolist()}, not white"


def _heic(image: np.ndarray) -> bytes:
    return encode(image, "HEIF", quality=95)


def _animated() -> bytes:
    frames = [Image.fromarray(draw_watch(seed, 48)) for seed in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def _big_png(width: int, height: int) -> bytes:
    import cv2

    return _cv2_png(cv2.resize(draw_watch(5, 128), (width, height), interpolation=cv2.INTER_NEAREST))


# ---------------------------------------------------------------------------------------------- on disk
def write_corpus(folder: Path, cases: list[Case]) -> dict[str, Case]:
    """Write each case as a file in ``folder``; returns file name -> case."""
    folder.mkdir(parents=True, exist_ok=True)
    for case in cases:
        (folder / case.name).write_bytes(case.data)
    return {case.name: case for case in cases}


def write_special_files(folder: Path) -> dict[str, Case]:
    """The cases only a file system has; returns file name (as ``os.listdir`` gives it) -> case."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = encode(draw_watch(7), "PNG")
    special: dict[str, Case] = {}

    def add(name: str, expect: str, group: str) -> None:
        special[name] = Case(name, b"", expect, group)

    os.symlink("loop.jpg", folder / "loop.jpg")  # points to itself
    add("loop.jpg", "skip", "symlink")
    os.symlink("ping.jpg", folder / "pong.jpg")
    os.symlink("pong.jpg", folder / "ping.jpg")
    add("ping.jpg", "skip", "symlink")
    add("pong.jpg", "skip", "symlink")
    os.symlink("nowhere/gone.jpg", folder / "broken.jpg")
    add("broken.jpg", "skip", "symlink")
    (folder / "real-target.png").write_bytes(photo)
    os.symlink("real-target.png", folder / "good-link.png")
    add("real-target.png", "read", "symlink")
    add("good-link.png", "read", "symlink")
    (folder / "folder.jpg").mkdir()
    (folder / "folder.jpg" / "inside.png").write_bytes(photo)  # a folder named like a photo is walked into
    special["folder.jpg/inside.png"] = Case("folder.jpg/inside.png", b"", "read", "folder")
    os.mkfifo(folder / "pipe.jpg")
    add("pipe.jpg", "skip", "fifo")
    undecodable = os.fsdecode(b"caf\xe9-latin1.png")  # a name written by an old Windows zip, not UTF-8
    (folder / undecodable).write_bytes(photo)
    add(undecodable, "read", "name")
    newline = "two\nlines.png"
    (folder / newline).write_bytes(photo)
    add(newline, "read", "name")
    long_name = "w" * 246 + ".png"  # 250 bytes: the longest a Linux file system takes is 255
    (folder / long_name).write_bytes(photo)
    add(long_name, "read", "name")
    unicode_name = "ζ-時計-⌚.png"
    (folder / unicode_name).write_bytes(photo)
    add(unicode_name, "read", "name")
    return special


# ---------------------------------------------------------------------------------------------- judging
def judge(case: Case, read: Callable[[], np.ndarray], shown_name: str) -> Outcome:
    """Read one case and say how it went; ``shown_name`` must appear exactly once in a skip's message."""
    from tiefwatch.images import MAX_SIDE, ImageReadError

    try:
        array = read()
    except ImageReadError as error:
        message = str(error)
        if "\n" in message or message.count(shown_name) != 1:
            return Outcome(case.name, case.group, "crashed", f"message not one line naming the file once: {message!r}")
        if case.expect == "read":
            return Outcome(case.name, case.group, "lost", message)
        return Outcome(case.name, case.group, "skipped", error.reason)
    except Exception as error:  # anything else is what this corpus is here to find
        return Outcome(case.name, case.group, "crashed", f"{error.__class__.__name__}: {error}")
    problem = None
    if not (isinstance(array, np.ndarray) and array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3):
        problem = f"not an RGB uint8 array: {getattr(array, 'shape', None)}"
    elif min(array.shape[:2]) < 8 or max(array.shape[:2]) > MAX_SIDE:
        problem = f"shape {array.shape} outside 8..{MAX_SIDE}"
    elif case.expect == "skip":
        problem = "read, though it should have been refused"
    elif case.check is not None:
        problem = case.check(array)
    if problem:
        return Outcome(case.name, case.group, "wrong", problem)
    return Outcome(case.name, case.group, "read")
