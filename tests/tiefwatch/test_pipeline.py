from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bbox.box import BoundingBox
from bbox.predict import BoxPrediction
from ranking.features import Embedder
from tiefwatch.config import Config
from tiefwatch.pipeline import Pipeline


class FixedCropper:
    """A cropper double whose answers the test controls: the fallback logic is what is under test."""

    fingerprint = "fixed"

    def __init__(self, confidence: float) -> None:
        self.confidence = confidence

    def predict(self, images: Sequence[np.ndarray]) -> list[BoxPrediction]:
        return [BoxPrediction(BoundingBox(10, 20, 50, 40), self.confidence) for _ in images]


def _pipeline(confidence: float, **overrides: str) -> Pipeline:
    config = Config().merged(overrides=[f"{k}={v}" for k, v in overrides.items()])
    embedder = Embedder(image_size=64, engine="torch", device="cpu")
    return Pipeline(config, embedder, FixedCropper(confidence))


def test_confident_box_is_cut_as_a_padded_square() -> None:
    image = np.zeros((100, 120, 3), np.uint8)
    crops, framings = _pipeline(0.9).frame([image])
    assert framings[0].cropped and framings[0].box == BoundingBox(10, 20, 50, 40)
    h, w = crops[0].shape[:2]
    assert h == w and 40 <= w <= 48  # the 40-px long side plus 8 % padding


def test_low_confidence_falls_back_to_the_whole_image_and_says_so() -> None:
    image = np.zeros((100, 120, 3), np.uint8)
    crops, framings = _pipeline(0.1).frame([image])
    assert crops[0] is image and not framings[0].cropped
    assert "low crop confidence 0.10" in framings[0].note


def test_crop_disabled_ignores_the_cropper_and_changes_the_signature() -> None:
    on, off = _pipeline(0.9), _pipeline(0.9, **{"crop.enabled": "false"})
    assert off.cropper is None and off.frame([np.zeros((8, 8, 3), np.uint8)])[1][0].note == "crop off"
    assert on.signature()["crop_model"] == "fixed" and off.signature()["crop_model"] is None
