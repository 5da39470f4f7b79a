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


class CountingCropper(FixedCropper):
    def __init__(self, confidence: float) -> None:
        super().__init__(confidence)
        self.seen = 0

    def predict(self, images: Sequence[np.ndarray]) -> list[BoxPrediction]:
        self.seen += len(images)
        return super().predict(images)


def test_photos_on_white_are_framed_by_their_cut_out_and_others_by_the_model() -> None:
    from tests.helpers import draw_watch

    on_white = draw_watch(3)  # a drawn watch on a white product background
    cluttered = np.random.default_rng(0).integers(0, 255, (100, 120, 3), dtype=np.uint8)
    pipeline = _pipeline(0.9)
    cropper = CountingCropper(0.9)
    pipeline.cropper = cropper
    crops, framings = pipeline.frame([on_white, cluttered], catalogue=True)
    assert len(crops) == 2 and crops[0].shape[0] == crops[0].shape[1]
    assert cropper.seen == 1, "only the photo that is not on a plain background needs the model"
    assert framings[0].note == "product cut-out" and framings[1].box == BoundingBox(10, 20, 50, 40)
    ys, xs = np.nonzero((on_white < 235).any(axis=2))
    truth = BoundingBox(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert framings[0].box is not None and framings[0].box.iou(truth) > 0.9
    # a query that is a product shot is cut out as its catalogue photo is (the same box, so the same crop); a
    # cluttered query, and any photo with the switch off, goes through the model
    query_crops, query_framings = pipeline.frame([on_white, cluttered], catalogue=False)
    assert cropper.seen == 2 and query_framings[0].box == framings[0].box
    np.testing.assert_array_equal(query_crops[0], crops[0])
    off = _pipeline(0.9, **{"crop.catalog_cutout": "false"})
    off.cropper = cropper
    off.frame([on_white], catalogue=True)
    off.frame([on_white], catalogue=False)
    assert cropper.seen == 4
    assert off.signature()["crop_catalog_cutout"] is False and pipeline.signature()["crop_catalog_cutout"] is True


def test_a_query_on_an_unevenly_lit_desk_goes_to_the_network_and_a_catalogue_photo_is_cut_out() -> None:
    """A cut-out on a backdrop whose light falls off takes the dark corner for the watch: queries need a studio's
    even light to be cut out (search.cutout_max_spread); catalogue photos, and the index with them, are unchanged."""
    from tests.helpers import on_unevenly_lit_desk

    photo = on_unevenly_lit_desk()
    pipeline = _pipeline(0.9)
    cropper = CountingCropper(0.9)
    pipeline.cropper = cropper
    _, catalogue = pipeline.frame([photo], catalogue=True)
    assert catalogue[0].note == "product cut-out" and cropper.seen == 0
    _, query = pipeline.frame([photo], catalogue=False)
    assert query[0].note != "product cut-out" and cropper.seen == 1
    anything = _pipeline(0.9, **{"search.cutout_max_spread": "0"})
    anything.cropper = cropper
    assert anything.frame([photo], catalogue=False)[1][0].note == "product cut-out" and cropper.seen == 1
    assert "cutout_max_spread" not in str(pipeline.signature())  # query-side only: an index stays valid


def test_the_refine_pass_and_its_padding_are_part_of_the_signature() -> None:
    """Both change the boxes, so an index built without the refine pass must not be searched with it."""
    off = _pipeline(0.9, **{"crop.refine": "false"}).signature()["crop_refine"]
    on = _pipeline(0.9).signature()["crop_refine"]  # on by default
    wider = _pipeline(0.9, **{"crop.refine_pad": "0.5"}).signature()["crop_refine"]
    assert off is False and on == {"pad": 1.0, "below": 0.35} and wider == {"pad": 0.5, "below": 0.35}
    unused = _pipeline(0.9, **{"crop.refine": "false", "crop.refine_pad": "0.5"}).signature()["crop_refine"]
    assert unused is False  # the padding is unused when the pass is off


class ListedCropper(FixedCropper):
    """One confidence per image, in order."""

    def __init__(self, confidences: list[float]) -> None:
        super().__init__(0.0)
        self.confidences = confidences

    def predict(self, images: Sequence[np.ndarray]) -> list[BoxPrediction]:
        return [BoxPrediction(BoundingBox(10, 20, 50, 40), c) for c in self.confidences[: len(images)]]


def test_extra_crop_scales_cut_the_box_again_and_average_the_vectors() -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (100, 120, 3), dtype=np.uint8) for _ in range(2)]
    pipeline = _pipeline(0.9, **{"search.extra_crop_scales": "[0.5, 1.5]"})
    pipeline.cropper = ListedCropper([0.9, 0.1])  # the second photo falls back to the whole image, box kept to try
    cut = pipeline.query_crops(images)
    crops, owners = cut.crops, cut.owners
    assert cut.photo_of.tolist() == [0, 1, 1] and not cut.candidates[1].cropped and cut.candidates[2].cropped
    assert owners.tolist() == [0, 1, 2, 0, 0, 2, 2]  # the whole photo has nothing to rescale
    assert [c.shape[0] for c in crops[3:5]] == [23, 70]  # half and 1.5 times the 40-px box, + 8 % a side
    vectors, _ = pipeline.embed_queries(images)
    separate = pipeline.embedder.embed(crops)
    expected = separate[[0, 3, 4]].sum(0)
    np.testing.assert_allclose(vectors[0], expected / np.linalg.norm(expected), atol=1e-5)
    np.testing.assert_allclose(vectors[1], separate[1], atol=1e-5)
    plain, _ = _pipeline(0.9, **{"search.extra_crop_scales": "[]"}).embed_queries(images[:1])
    np.testing.assert_allclose(plain[0], separate[0], atol=1e-5)  # no extra scales: the crop's own vector


class TwoPeakCropper(FixedCropper):
    """Unsure between two boxes: the first peak at (10, 20, 50, 40), another at (60, 50, 100, 90)."""

    def predict(self, images: Sequence[np.ndarray]) -> list[BoxPrediction]:
        other = ((BoundingBox(60, 50, 100, 90), self.confidence * 0.8),)
        return [BoxPrediction(BoundingBox(10, 20, 50, 40), self.confidence, other) for _ in images]


def test_several_heat_peaks_are_each_cut_as_candidates() -> None:
    image = np.random.default_rng(1).integers(0, 255, (100, 120, 3), dtype=np.uint8)
    pipeline = _pipeline(0.9, **{"search.extra_crop_scales": "[1.5]"})
    pipeline.cropper = TwoPeakCropper(0.9)
    cut = pipeline.query_crops([image])
    assert [f.box for f in cut.candidates] == [BoundingBox(10, 20, 50, 40), BoundingBox(60, 50, 100, 90)]
    assert cut.photo_of.tolist() == [0, 0] and cut.owners.tolist() == [0, 1, 0, 1]
    vectors, framings = pipeline.embed_queries([image])
    assert len(vectors) == 1 and framings[0].box == BoundingBox(10, 20, 50, 40)  # no catalogue: the first peak
    catalogue_cut, _ = pipeline.frame([image], catalogue=True)
    assert len(catalogue_cut) == 1  # a catalogue photo is framed once: nothing to check its peaks against


def test_an_unsure_query_tries_the_whole_photo_and_every_box() -> None:
    image = np.random.default_rng(1).integers(0, 255, (100, 120, 3), dtype=np.uint8)
    pipeline = _pipeline(0.1, **{"search.extra_crop_scales": "[]"})  # 0.1: below the fallback threshold
    pipeline.cropper = TwoPeakCropper(0.1)
    cut = pipeline.query_crops([image])
    assert [f.box for f in cut.candidates] == [None, BoundingBox(10, 20, 50, 40), BoundingBox(60, 50, 100, 90)]
    assert cut.crops[0] is image and "low crop confidence" in cut.candidates[0].note


def test_the_search_keeps_the_peak_whose_crop_matches_the_catalogue(monkeypatch) -> None:
    from tiefwatch.search import Searcher

    image = np.random.default_rng(2).integers(0, 255, (100, 120, 3), dtype=np.uint8)
    pipeline = _pipeline(0.9, **{"search.extra_crop_scales": "[]"})
    pipeline.cropper = TwoPeakCropper(0.9)
    catalogue = pipeline.embed_query_candidates([image])[0][1:2]  # the catalogue holds what the second peak shows

    class OneItemIndex:
        def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            scores = vectors @ catalogue.T
            return scores[:, :k], np.zeros_like(scores[:, :k], dtype=np.int64)

    searcher = Searcher.__new__(Searcher)  # the choice needs only the pipeline and the index
    searcher.pipeline, searcher.index = pipeline, OneItemIndex()
    vectors, framings = searcher.embed_queries([image, image])
    assert [f.box for f in framings] == [BoundingBox(60, 50, 100, 90)] * 2
    assert framings[0].note == "kept heat peak 2 among 2 heat peaks, by closest catalogue match"
    np.testing.assert_allclose(vectors[0], catalogue[0], atol=1e-6)
    pipeline.cropper = TwoPeakCropper(0.1)  # unsure: the whole photo is a candidate too, and loses here
    _, framings = searcher.embed_queries([image])
    assert framings[0].note == "kept heat peak 2 among the whole photo and 2 heat peaks, by closest catalogue match"


class CloseUpCropper(FixedCropper):
    """Sure of a box that covers most of a 100 x 120 photo, as on a close-up."""

    def predict(self, images: Sequence[np.ndarray]) -> list[BoxPrediction]:
        return [BoxPrediction(BoundingBox(30, 25, 110, 95), self.confidence) for _ in images]


def test_a_close_up_averages_in_the_whole_photo_uncorrected_and_keeps_its_box(monkeypatch) -> None:
    monkeypatch.setattr("tiefwatch.pipeline.light_correction", lambda image, box: 0.5)  # a lamp's cast, say
    image = np.random.default_rng(3).integers(0, 255, (100, 120, 3), dtype=np.uint8)
    pipeline = _pipeline(0.9, **{"search.extra_crop_scales": "[0.9]", "search.fill_frame_within": "0"})
    pipeline.cropper = CloseUpCropper(0.9)
    cut = pipeline.query_crops([image])
    assert [f.box for f in cut.candidates] == [BoundingBox(30, 25, 110, 95)]  # the box stays the framing
    assert "whole photo" in cut.candidates[0].note
    assert cut.owners.tolist() == [0, 0, 0] and cut.weights.tolist() == [1.0, 1.0, 2.0]  # as much as both crops
    assert cut.crops[2] is image  # not corrected: it is mostly watch
    assert all(crop is not image and crop.shape[0] == crop.shape[1] for crop in cut.crops[:2])  # the box, corrected
    embedded = pipeline.embedder.embed(cut.crops)
    expected = embedded[0] + embedded[1] + 2 * embedded[2]
    vectors, framings = pipeline.embed_queries([image])
    np.testing.assert_allclose(vectors[0], expected / np.linalg.norm(expected), atol=1e-5)
    assert framings[0].box == BoundingBox(30, 25, 110, 95)
    off = _pipeline(0.9, **{"search.whole_photo_above": "0"})
    off.cropper = CloseUpCropper(0.9)
    assert len(off.query_crops([image]).crops) == 3 and off.query_crops([image]).candidates[0].note == ""
    higher = _pipeline(0.9, **{"search.whole_photo_above": "0.5"})  # the box covers 0.47 of the photo
    higher.cropper = CloseUpCropper(0.9)
    assert len(higher.query_crops([image]).crops) == 3
    small = _pipeline(0.9)  # FixedCropper's box covers 0.07 of the photo
    assert len(small.query_crops([image]).crops) == 3
    assert len(pipeline.frame([image], catalogue=True)[0]) == 1  # catalogue photos are framed once


class ZoomingCropper(FixedCropper):
    """Unsure at first; its second look finds the watch elsewhere."""

    def __init__(self) -> None:
        super().__init__(0.1)
        self.closer: list[float] = []

    def look_closer(
        self, images: Sequence[np.ndarray], predictions: list[BoxPrediction], below: float, window: float
    ) -> list[BoxPrediction]:
        self.closer.append(below)
        return [BoxPrediction(BoundingBox(60, 60, 90, 90), 0.9, ((p.box, p.confidence),)) for p in predictions]


def test_unsure_query_photos_get_a_second_look_and_catalogue_photos_never() -> None:
    image = np.zeros((100, 120, 3), np.uint8)
    config = Config().merged(overrides=["crop.catalog_cutout=false"])  # catalogue photos through the model too
    embedder = Embedder(image_size=64, engine="torch", device="cpu")
    cropper = ZoomingCropper()
    pipeline = Pipeline(config, embedder, cropper)
    _, framings = pipeline.frame([image])
    below = config.search.zoom_below
    assert cropper.closer == [below] and framings[0].box == BoundingBox(60, 60, 90, 90)
    assert framings[0].alternatives == ((BoundingBox(10, 20, 50, 40), 0.1),)  # the first look stays a candidate
    _, framings = pipeline.frame([image], catalogue=True)
    assert cropper.closer == [below] and not framings[0].cropped  # the index never depends on the second look
    off = Pipeline(config.merged(overrides=["search.zoom_below=0"]), embedder, cropper)
    assert not off.frame([image])[1][0].cropped and cropper.closer == [below]


class FragmentCropper(FixedCropper):
    """Boxes an all-watch photo a little inside its frame, as the crop network does."""

    def predict(self, images: Sequence[np.ndarray]) -> list[BoxPrediction]:
        return [BoxPrediction(BoundingBox(8, 10, 112, 92), self.confidence) for _ in images]


def test_a_query_box_that_nearly_spans_the_photo_is_spread_to_its_edges_but_not_a_catalogue_photo_s() -> None:
    image = np.zeros((100, 120, 3), np.uint8)
    config = Config().merged(overrides=["crop.catalog_cutout=false"])
    embedder = Embedder(image_size=64, engine="torch", device="cpu")
    pipeline = Pipeline(config, embedder, FragmentCropper(0.9))
    assert pipeline.frame([image])[1][0].box == BoundingBox(0, 0, 120, 100)
    assert pipeline.frame([image], catalogue=True)[1][0].box == BoundingBox(8, 10, 112, 92)  # the index never spreads
    off = Pipeline(config.merged(overrides=["search.fill_frame_within=0"]), embedder, FragmentCropper(0.9))
    assert off.frame([image])[1][0].box == BoundingBox(8, 10, 112, 92)
