from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from bbox.box import BoundingBox
from bbox.model import giou_loss, heat_targets
from bbox.netio import CropNetSpec, decode, decode_peaks, letterbox
from bbox.predict import BoxPrediction, BoxPredictor, build_net, checkpoint_bytes
from bbox.synth import PhotoSimulator
from bbox.train import BoxTrainSettings, CachedFeatures, box_iou, extract_features, fit, split_rows, synthesise
from tests.helpers import draw_watch


def test_letterbox_keeps_aspect_and_maps_boxes_back() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    boxed, scale, (ox, oy) = letterbox(image, 64)
    assert boxed.shape == (64, 64, 3) and scale == pytest.approx(0.32)
    assert (ox, oy) == (0, 16)
    assert boxed[0, 0, 0] == 128 and boxed[32, 32, 0] == 0  # grey padding above, image in the middle


def test_heat_target_peaks_at_the_box_centre_and_is_empty_without_a_watch() -> None:
    boxes = torch.tensor([[0.5, 0.25, 0.75, 0.5], [0, 0, 0, 0]])
    heat = heat_targets(boxes, torch.tensor([True, False]), grid=8)
    assert heat.shape == (2, 1, 8, 8)
    assert heat[0, 0, 3, 5] == 1.0 and heat[0].argmax() == 3 * 8 + 5
    assert heat[1].abs().sum() == 0


def test_giou_loss_is_zero_for_equal_boxes_and_grows_with_distance() -> None:
    a = torch.tensor([[0.1, 0.1, 0.4, 0.4]])
    near, far = torch.tensor([[0.15, 0.1, 0.45, 0.4]]), torch.tensor([[0.6, 0.6, 0.9, 0.9]])
    assert float(giou_loss(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert 0 < float(giou_loss(a, near)) < 1 < float(giou_loss(a, far)) < 2


def test_decode_reads_the_box_at_the_peak() -> None:
    heat = np.full((1, 1, 4, 4), -8.0, np.float32)
    heat[0, 0, 1, 2] = 4.0
    boxes = np.zeros((1, 4, 4, 4), np.float32)
    boxes[0, :, 1, 2] = [0.4, 0.1, 0.8, 0.5]
    decoded, confidence = decode(heat, boxes)
    np.testing.assert_allclose(decoded[0], [0.4, 0.1, 0.8, 0.5], atol=1e-6)
    assert confidence[0] == pytest.approx(1 / (1 + np.exp(-4.0)), rel=1e-5)


def two_peak_grid(second_logit: float) -> tuple[np.ndarray, np.ndarray]:
    """An 8x8 grid with a peak at (1, 1) whose cells say box A and one at (6, 6) (height ``second_logit``)
    whose cells say box B."""
    heat = np.full((1, 1, 8, 8), -8.0, np.float32)
    boxes = np.zeros((1, 4, 8, 8), np.float32)
    heat[0, 0, 1, 1], heat[0, 0, 1, 2] = 4.0, 3.5  # a peak and a cell that agrees with it
    boxes[0, :, 1, 1], boxes[0, :, 1, 2] = [0.1, 0.1, 0.3, 0.3], [0.1, 0.1, 0.3, 0.3]
    heat[0, 0, 6, 6] = second_logit
    boxes[0, :, 6, 6] = [0.7, 0.7, 0.9, 0.9]
    return heat, boxes


def test_two_distant_peaks_are_two_boxes_never_one_between_them() -> None:
    heat, boxes = two_peak_grid(3.0)  # heights 0.98 and 0.95: both "agree" with the top over the whole map
    decoded, confidence = decode(heat, boxes)
    np.testing.assert_allclose(decoded[0], [0.1, 0.1, 0.3, 0.3], atol=1e-6)  # not pulled towards box B
    peaks = decode_peaks(heat, boxes, ratio=0.5, limit=3)[0]
    assert len(peaks) == 2, "the agreeing neighbour cell is the same peak, not a third"
    np.testing.assert_allclose(peaks[1][0], [0.7, 0.7, 0.9, 0.9], atol=1e-6)
    assert peaks[0][1] == pytest.approx(confidence[0]) and peaks[1][1] < peaks[0][1]


def test_a_low_second_peak_is_not_an_alternative() -> None:
    heat, boxes = two_peak_grid(-1.0)  # height 0.27 against 0.98: below half the top
    assert len(decode_peaks(heat, boxes, ratio=0.5)[0]) == 1
    assert len(decode_peaks(heat, boxes, ratio=0.2)[0]) == 2
    assert len(decode_peaks(heat, boxes, ratio=0.2, limit=1)[0]) == 1


@pytest.fixture(scope="module")
def tiny_features():
    """48 synthesised scenes through the real frozen trunk at 128 px: small enough for a unit test."""
    spec = CropNetSpec(input_size=128, width=16)
    sources = [draw_watch(seed, size=96) for seed in range(8)]
    settings = BoxTrainSettings(samples=48, epochs=6, batch_size=16, lr=5e-3, seed=0)
    scenes = synthesise(sources, 48, 128, PhotoSimulator(backgrounds=[], seed=0), settings, np.random.default_rng(0))
    return spec, settings, extract_features(scenes, 48, spec, engine="torch")


def test_training_lowers_the_loss_and_resumes_where_it_stopped(tiny_features) -> None:
    spec, settings, features = tiny_features
    assert features.c4.shape == (48, 120, 8, 8) and features.c5.shape == (48, 1280, 4, 4)
    assert features.present.sum() >= 40  # mostly scenes with a watch
    train_rows, val_rows = split_rows(len(features), 0.25, seed=0)
    train, val = features.subset(train_rows), features.subset(val_rows)
    _, reports = fit(train, val, spec, settings)
    assert reports[-1].train_loss < reports[0].train_loss * 0.8

    saved: dict = {}

    def stop_after_three(report, head, optimizer) -> None:
        if report.epoch == 3:
            saved.update(head=copy.deepcopy(head.state_dict()), optimizer=copy.deepcopy(optimizer))

    fit(train, val, spec, settings, on_epoch=stop_after_three)
    from bbox.train import new_head

    resumed_head = new_head(train, spec)
    resumed_head.load_state_dict(saved["head"])
    _, resumed = fit(train, val, spec, settings, resumed_head, 3, saved["optimizer"])
    assert [r.epoch for r in resumed] == [4, 5, 6]
    assert resumed[-1].train_loss == pytest.approx(reports[-1].train_loss, rel=1e-3)


def test_predictor_round_trips_a_checkpoint_and_returns_pixel_boxes(tmp_path, tiny_features) -> None:
    spec = tiny_features[0]
    head = build_net(spec).head
    path = tmp_path / "crop.pt"
    path.write_bytes(checkpoint_bytes(head, spec, {"note": "untrained"}))
    predictor = BoxPredictor(path, device="cpu", engine="torch")
    image = np.zeros((90, 160, 3), np.uint8)
    (prediction,) = predictor.predict([image])
    box = prediction.box
    assert 0 <= box.x0 <= box.x1 <= 160 and 0 <= box.y0 <= box.y1 <= 90
    assert 0.0 <= prediction.confidence <= 1.0
    assert predictor.fingerprint == BoxPredictor(path, device="cpu", engine="torch").fingerprint
    (tmp_path / "bad.pt").write_bytes(b"nope")
    with pytest.raises(Exception):  # noqa: B017 - any load error, but never a silent success
        BoxPredictor(tmp_path / "bad.pt")


def test_box_iou_rows() -> None:
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], np.float32)
    b = np.array([[1, 1, 3, 3], [0, 0, 1, 1]], np.float32)
    np.testing.assert_allclose(box_iou(a, b), [1 / 7, 1.0], rtol=1e-6)
    assert BoundingBox(0, 0, 2, 2).iou(BoundingBox(1, 1, 3, 3)) == pytest.approx(1 / 7)


def test_refine_pass_looks_again_inside_the_padded_first_box(tmp_path, tiny_features, monkeypatch) -> None:
    """The second look sees the padded square around the first box, and its box is moved back to image pixels."""
    spec = tiny_features[0]
    path = tmp_path / "crop.pt"
    path.write_bytes(checkpoint_bytes(build_net(spec).head, spec, {}))
    predictor = BoxPredictor(path, device="cpu", engine="torch", refine=True, refine_pad=1.0)
    seen: list[tuple[int, int]] = []
    first = BoundingBox(100, 50, 120, 70)  # 20 px: padded by 20 px a side -> a 60-px square

    def fake_once(images):
        seen.extend(image.shape[:2] for image in images)
        if len(seen) == 1:
            return [BoxPrediction(first, 0.9)]
        return [BoxPrediction(BoundingBox(10, 10, 50, 50), 0.5)]

    monkeypatch.setattr(predictor, "_predict_once", fake_once)
    (prediction,) = predictor.predict([np.zeros((200, 300, 3), np.uint8)])
    assert seen == [(200, 300), (60, 60)]
    assert prediction.box == BoundingBox(90, 40, 130, 80) and prediction.confidence == 0.9
    seen.clear()
    predictor.refine_below = 20 / 300  # the 20-px box is not below 20 px: no second look
    (prediction,) = predictor.predict([np.zeros((200, 300, 3), np.uint8)])
    assert seen == [(200, 300)] and prediction.box == first


def test_a_view_of_cached_features_picks_rows_without_copying_them() -> None:
    c4 = np.arange(10 * 2, dtype=np.float16).reshape(10, 2, 1, 1)
    features = CachedFeatures(c4, c4 * 2, np.arange(40, dtype=np.float32).reshape(10, 4), np.ones(10, bool))
    view = features.view(np.array([7, 2, 5]))
    assert len(view) == 3 and view.c4 is features.c4  # shares the arrays
    batch = view.subset(np.array([0, 2]))  # rows 7 and 5 of the whole set, copied
    np.testing.assert_array_equal(batch.boxes[:, 0], [28, 20])
    assert len(view.view(np.array([1])).subset(np.array([0]))) == 1
    assert view.view(np.array([1])).subset(np.array([0])).boxes[0, 0] == 8  # row 2
