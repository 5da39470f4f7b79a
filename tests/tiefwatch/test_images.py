from __future__ import annotations

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
    with pytest.raises(FileNotFoundError):
        expand_queries([tmp_path / "missing.jpg"])
