from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from bbox.box import BoundingBox
from bbox.predict import DEFAULT_MODEL
from tiefwatch.cli import main
from tiefwatch.synthetic import WatchAttributes, render_watch

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="the packaged crop model is missing")


def _scene(tmp_path: Path) -> tuple[np.ndarray, BoundingBox]:
    """A drawn watch on a dim, textured desk, away from the centre: its true box is known."""
    rng = np.random.default_rng(3)
    desk = cv2.GaussianBlur(rng.integers(40, 110, (300, 400, 3), dtype=np.uint8), (0, 0), 3)
    attrs = WatchAttributes("round", "gold", "black", "leather", "brown", "baton", "dots", False)
    watch = render_watch(attrs, size=140)
    mask = np.any(watch < 235, axis=2)
    ys, xs = np.nonzero(mask)
    top, left = 120, 220
    region = desk[top : top + 140, left : left + 140]
    region[mask] = watch[mask]
    return desk, BoundingBox(left + xs.min(), top + ys.min(), left + xs.max() + 1, top + ys.max() + 1)


def test_crop_json_contract_overlay_and_accuracy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image, truth = _scene(tmp_path)
    path = tmp_path / "desk.png"
    Image.fromarray(image).save(path)
    out = tmp_path / "out"
    argv = ["-q", "-w", str(tmp_path / "ws"), "crop", str(path), "--out", str(out), "--overlay", "--format", "json"]
    code = main(argv)
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and len(data) == 1
    item = data[0]
    assert set(item) >= {"query", "box", "confidence", "crop"}
    assert item["query"] == str(path) and 0.0 <= item["confidence"] <= 1.0
    assert BoundingBox.from_list(item["box"]).iou(truth) > 0.5
    crop = np.asarray(Image.open(item["crop"]))
    assert crop.shape[0] == crop.shape[1]  # padded square
    assert Path(item["overlay"]).exists()


def test_exif_rotated_photo_gets_a_box_in_upright_pixels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image, truth = _scene(tmp_path)
    stored = np.ascontiguousarray(np.rot90(image, k=1))  # what a phone stores: pixels turned, EXIF says "rotate back"
    exif = Image.Exif()
    exif[0x0112] = 6  # display = rotate the stored pixels 90° clockwise
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    code = main(["-q", "-w", str(tmp_path / "ws"), "crop", str(path), "--format", "json"])
    item = json.loads(capsys.readouterr().out)[0]
    assert code == 0
    assert BoundingBox.from_list(item["box"]).iou(truth) > 0.5  # coordinates of the upright photo


def test_unreadable_image_is_reported_not_fatal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    image, _ = _scene(tmp_path)
    good = tmp_path / "good.png"
    Image.fromarray(image).save(good)
    code = main(["-q", "-w", str(tmp_path / "ws"), "crop", str(bad), str(good), "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1 and "error" in data[0] and data[1]["box"] is not None  # the batch went on; exit 1 says one failed
