from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tiefwatch.images import ImageReadError, expand_queries, list_images, load_image, save_image


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """A phone stores a portrait shot as landscape pixels plus an EXIF tag; we must see it upright."""
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, :40] = (255, 0, 0)  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "phone.jpg"
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), quality=95)
    image = load_image(path)
    assert image.shape == (80, 40, 3)
    assert image[5, 20, 0] > 200 and image[75, 20, 0] < 60  # red half is now on top


def test_alpha_is_flattened_onto_white(tmp_path: Path) -> None:
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[5:15, 5:15] = (0, 0, 255, 255)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png")
    assert tuple(image[0, 0]) == (255, 255, 255) and tuple(image[10, 10]) == (0, 0, 255)


def test_corrupt_and_truncated_files_raise_image_read_error(tmp_path: Path) -> None:
    (tmp_path / "fake.jpg").write_bytes(b"this is not a jpeg")
    save_image(tmp_path / "ok.jpg", np.full((64, 64, 3), 128, np.uint8))
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    for name in ("fake.jpg", "cut.jpg"):
        with pytest.raises(ImageReadError, match=name):
            load_image(tmp_path / name)


def test_listing_is_recursive_and_filters_extensions(tmp_path: Path) -> None:
    for rel in ("a.JPG", "sub/b.png", "sub/deeper/c.webp", "d.txt", ".hidden/e.jpg", "f.bmp"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    names = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert names == ["a.JPG", "f.bmp", "sub/b.png", "sub/deeper/c.webp"]
    assert len(expand_queries([tmp_path / "sub", tmp_path / "d.txt"])) == 3
    assert expand_queries([tmp_path / "missing.jpg"]) == [tmp_path / "missing.jpg"]  # its own query's error
    with pytest.raises(ImageReadError, match="missing.jpg"):
        load_image(tmp_path / "missing.jpg")


# ---------------------------------------------------------------------------------------------- issue 24's table
def test_sixteen_bit_png_keeps_its_tones_instead_of_turning_white(tmp_path: Path) -> None:
    """Pillow's own conversion clips 16-bit values at 255: a grey watch read as mean 254 instead of 194."""
    Image.fromarray(np.full((32, 32), 50_000, np.uint16)).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    assert abs(load_image(tmp_path / "g16.png").mean() - 50_000 / 257) < 1


def test_cmyk_jpeg_reads_as_its_rgb_reference(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (4, 4, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert np.abs(load_image(tmp_path / "cmyk.jpg").astype(float) - rgb).mean() < 4


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF", "WEBP", "TIFF"])
def test_phone_and_web_formats_are_read(tmp_path: Path, fmt: str) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (4, 4, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    path = tmp_path / f"photo.{fmt.lower()}"
    Image.fromarray(rgb).save(path, fmt, quality=95)
    assert np.abs(load_image(path).astype(float) - rgb).mean() < 10


def test_every_failure_is_one_read_error_naming_the_path_once(tmp_path: Path) -> None:
    """A query's one-line error printed its path twice (ours, then Pillow's "cannot identify image file ...")."""
    from tests.fuzz_corpus import png_bomb

    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "bomb.png").write_bytes(png_bomb())
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    expected = {
        "text.jpg": "not a recognised image format",
        "bomb.png": "too large: 30000×30000, limit",
        "loop.jpg": "symlink loop",
        "dangling.jpg": "broken symlink",
        "empty.png": "empty file",
        "vanished.jpg": "no such file",
    }
    for name, reason in expected.items():
        with pytest.raises(ImageReadError) as raised:
            load_image(tmp_path / name)
        message = str(raised.value)
        assert message.count(str(tmp_path / name)) == 1 and message.count(name) == 1, message
        assert raised.value.reason.startswith(reason) and message == f"{tmp_path / name}: {raised.value.reason}"


def test_large_photos_are_scaled_to_the_cap_unless_asked_otherwise(tmp_path: Path) -> None:
    from tiefwatch.images import MAX_SIDE

    Image.fromarray(np.full((2500, 3000, 3), 90, np.uint8)).save(tmp_path / "big.png")
    assert load_image(tmp_path / "big.png").shape == (round(2500 * MAX_SIDE / 3000), MAX_SIDE, 3)
    assert load_image(tmp_path / "big.png", max_side=None).shape == (2500, 3000, 3)


def test_uploads_are_read_from_bytes_under_their_name() -> None:
    from tiefwatch.images import load_image_bytes

    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(buffer, "PNG")
    assert load_image_bytes(buffer.getvalue(), "upload.png").shape == (16, 16, 3)
    with pytest.raises(ImageReadError, match=r"^upload\.png: not a recognised image format$"):
        load_image_bytes(b"GIF87a" + b"\0" * 3, "upload.png")


def test_a_broken_symlink_given_as_a_query_is_passed_on_to_be_named(tmp_path: Path) -> None:
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    assert expand_queries([tmp_path / "dangling.jpg"]) == [tmp_path / "dangling.jpg"]


def test_image_size_is_the_upright_size_of_the_file_as_stored(tmp_path: Path) -> None:
    from tests.fuzz_corpus import oriented_jpeg, png_claiming, reference
    from tiefwatch.images import image_size

    (tmp_path / "turned.jpg").write_bytes(oriented_jpeg(6, reference(48, 32)))
    assert image_size(tmp_path / "turned.jpg") == (48, 32) and load_image(tmp_path / "turned.jpg").shape == (32, 48, 3)
    (tmp_path / "bomb.png").write_bytes(png_claiming(30_000, 20_000))
    assert image_size(tmp_path / "bomb.png") == (30_000, 20_000)  # what it claims, though never read
    with pytest.raises(ImageReadError):
        image_size(tmp_path / "missing.jpg")
