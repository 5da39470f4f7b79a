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
    missing = tmp_path / "missing.jpg"
    code = main(["-q", "-w", str(tmp_path / "ws"), "crop", str(bad), str(missing), str(good), "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1 and "error" in data[0] and data[2]["box"] is not None  # the batch went on; exit 1 says one failed
    assert data[1]["error"].count(str(missing)) == 1


def _close_up(watch: np.ndarray, side: int, shift: float = 0.0) -> tuple[np.ndarray, BoundingBox]:
    """The watch cut to its own box and enlarged to fill a ``side``-pixel frame on a dim desk, slid by ``shift`` of
    the frame (cut by its edge); returns the photo and the visible watch's box."""
    from bbox.segment import product_box

    box = product_box(watch)
    assert box is not None
    tight = box.crop(watch)
    scale = side / max(tight.shape[:2])
    tight = cv2.resize(tight, (round(tight.shape[1] * scale), round(tight.shape[0] * scale)))
    h, w = tight.shape[:2]
    frame = np.full((side, side, 3), 70, np.uint8)
    dx = round(shift * side)
    x0, y0 = (side - w) // 2 + dx, (side - h) // 2
    left, right = max(0, x0), min(side, x0 + w)
    frame[y0 : y0 + h, left:right] = tight[:, left - x0 : right - x0]
    return frame, BoundingBox(left, y0, right, y0 + h)


def test_a_photo_that_is_all_watch_is_boxed_whole_not_as_a_fragment(tmp_path: Path) -> None:
    from tiefwatch.config import Config
    from tiefwatch.models import load_cropper
    from tiefwatch.workspace import Workspace

    cropper = load_cropper(Config(), Workspace(tmp_path / "ws"), required=True)
    attrs = WatchAttributes("round", "silver", "black", "bracelet", "silver", "baton", "dots", False)
    photos = [_close_up(render_watch(attrs, size=200), 360, shift) for shift in (0.0, 0.2)]
    for (_, truth), prediction in zip(photos, cropper.predict([p for p, _ in photos]), strict=True):
        assert prediction.box.iou(truth) > 0.6, (prediction.box, truth)
        assert prediction.box.area > 0.6 * truth.area  # never a strip of bezel or two numerals


def test_real_watches_filling_the_frame_are_boxed_whole(tmp_path: Path) -> None:
    from tests.helpers import SHARED_CATALOG
    from tiefwatch.config import Config
    from tiefwatch.images import list_images, load_image
    from tiefwatch.models import load_cropper
    from tiefwatch.workspace import Workspace

    if not SHARED_CATALOG.is_dir():
        pytest.skip(f"needs the shared dev catalogue at {SHARED_CATALOG}")
    cropper = load_cropper(Config(), Workspace(tmp_path / "ws"), required=True)
    watches = [load_image(p) for p in list_images(SHARED_CATALOG)[:40:5]]
    photos = [_close_up(w, 480, shift) for w in watches for shift in (0.0, 0.25)]
    ious = [p.box.iou(t) for (_, t), p in zip(photos, cropper.predict([p for p, _ in photos]), strict=True)]
    assert np.mean(ious) > 0.75 and min(ious) > 0.4, np.round(ious, 2)


def test_a_large_photo_is_boxed_in_its_own_pixels(tmp_path: Path) -> None:
    from tiefwatch.crop import crop_images
    from tiefwatch.images import MAX_SIDE

    image, truth = _scene(tmp_path)
    factor = 6  # 2,400 px: read scaled down to MAX_SIDE, boxed in the file's pixels
    assert 400 * factor > MAX_SIDE
    large = cv2.resize(image, (400 * factor, 300 * factor), interpolation=cv2.INTER_NEAREST)
    path = tmp_path / "large.png"
    Image.fromarray(large).save(path)
    (result,) = crop_images([path], tmp_path / "ws")
    assert result.box is not None and result.box.iou(truth.scale(factor)) > 0.5


def test_a_photo_with_two_watches_boxes_one_whole_watch(tmp_path: Path) -> None:
    from tiefwatch.config import Config
    from tiefwatch.models import load_cropper
    from tiefwatch.workspace import Workspace

    rng = np.random.default_rng(5)
    desk = cv2.GaussianBlur(rng.integers(40, 110, (320, 520, 3), dtype=np.uint8), (0, 0), 3)
    boxes = []
    for attrs, left in (
        (WatchAttributes("round", "gold", "black", "leather", "brown", "baton", "dots", False), 40),
        (WatchAttributes("square", "silver", "white", "bracelet", "silver", "sword", "arabic", False), 300),
    ):
        watch = render_watch(attrs, size=180)
        mask = np.any(watch < 235, axis=2)
        ys, xs = np.nonzero(mask)
        region = desk[70:250, left : left + 180]
        region[mask] = watch[mask]
        boxes.append(BoundingBox(left + xs.min(), 70 + ys.min(), left + xs.max() + 1, 70 + ys.max() + 1))
    cropper = load_cropper(Config(), Workspace(tmp_path / "ws"), required=True)
    (prediction,) = cropper.predict([desk])
    assert max(prediction.box.iou(box) for box in boxes) > 0.6  # one of them, whole; not a box across both


def test_tiefwatch_crop_frames_a_photo_cut_to_its_watch_whole(tmp_path: Path) -> None:
    """A user's photo cut to the watch (no background at all): the box is the whole photo, not the network's
    fragment a little inside it (search.fill_frame_within)."""
    from tiefwatch.config import Config
    from tiefwatch.crop import crop_images

    attrs = WatchAttributes("round", "silver", "black", "bracelet", "silver", "baton", "dots", False)
    photo, truth = _close_up(render_watch(attrs, size=200), 360)
    cut = truth.crop(photo)
    path = tmp_path / "cut.png"
    Image.fromarray(cut).save(path)
    whole = BoundingBox(0, 0, cut.shape[1], cut.shape[0])
    (spread,) = crop_images([path], tmp_path / "ws")
    off = Config().merged(overrides=["search.fill_frame_within=0"])
    (network,) = crop_images([path], tmp_path / "ws", config=off)
    assert spread.box is not None and spread.box.iou(whole) > 0.95, spread.box
    assert network.box is not None and spread.box.iou(whole) >= network.box.iou(whole)
