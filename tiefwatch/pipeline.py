"""The query/catalogue path in one place: crop -> embed (-> re-rank, in search).

Catalogue photos and user photos go through the same ``Pipeline.embed_images`` so both sides of a comparison
are framed and normalised alike; the pipeline's ``signature`` is what an index records and checks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from bbox.box import BoundingBox
from bbox.predict import BoxPrediction
from bbox.segment import product_box, shrunk
from ranking.backbone import weights_fingerprint
from ranking.colour import COLOUR_DIM, COLOUR_VERSION, colour_descriptors
from ranking.features import Embedder, backbone_pixels
from ranking.illuminant import correct_warm_cool, light_correction
from tiefwatch.config import Config, SearchConfig

if TYPE_CHECKING:  # the photo simulator is only needed to index: a search process never imports it
    from bbox.conditions import ConditionSimulator
    from bbox.synth import PhotoSimulator

CUTOUT_SIDE = 512  # cut-outs are found on a copy this large: the morphology's cost grows with the photo (a
# 1,024 px catalogue photo's took 0.3 s, 2,000 px 1.3 s) and a box needs no more
VIEW_SOURCE_SIDE = 512  # the catalogue photo a view is made from: a view reaches the network at 260 px
VIEW_LONG_SIDE = 800  # views are embedded at 260 px: larger frames only cost simulation time


class Cropper(Protocol):
    """Anything that finds one watch per image (``bbox`` provides the trained regressor)."""

    fingerprint: str

    def predict(self, images: Sequence[np.ndarray]) -> list[BoxPrediction]: ...


class Reranker(Protocol):
    """Re-scores FAISS candidates for one query (``ranking`` provides the triplet-trained network).

    ``query`` and ``candidates`` are backbone vectors, unless the re-ranker has an ``inputs(vectors, colours)``
    method: then they are what it makes of the vectors and their colour descriptors (``rerank_inputs``)."""

    fingerprint: str

    def score(self, query: np.ndarray, candidates: np.ndarray) -> np.ndarray: ...


def rerank_inputs(reranker: Reranker, vectors: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """The rows ``reranker.score`` takes for these backbone vectors and their colour descriptors."""
    inputs = getattr(reranker, "inputs", None)
    return np.asarray(vectors, np.float32) if inputs is None else inputs(vectors, colours)


WHOLE_PHOTO_NOTE = "the whole photo averaged in: the box covers most of it"


@dataclass(frozen=True)
class Framing:
    """How one image was framed before embedding: the box in original pixels, or None for the whole image."""

    box: BoundingBox | None
    confidence: float | None
    note: str = ""
    # other heat peaks' boxes and heights, where the crop network saw more than one: a search tries each
    alternatives: tuple[tuple[BoundingBox, float], ...] = ()

    @property
    def cropped(self) -> bool:
        return self.box is not None


@dataclass
class QueryCrops:
    """What ``Pipeline.query_crops`` cut: the crops, each crop's candidate (``owners``), each candidate's framing
    and photo (``photo_of``, non-decreasing; a photo's first candidate is ``frame``'s own framing)."""

    crops: list[np.ndarray]
    owners: np.ndarray
    candidates: list[Framing]
    photo_of: np.ndarray
    colours: np.ndarray  # (candidates, COLOUR_DIM) each candidate's own crop's colour descriptor, or (candidates, 0)
    weights: np.ndarray  # (crops,) each crop's weight in its candidate's vector

    def candidate_vectors(self, embedded: np.ndarray) -> np.ndarray:
        """The crops' embeddings -> one unit vector per candidate, its crops' weighted mean."""
        return mean_rows(embedded, self.owners, len(self.candidates), self.weights)


class Pipeline:
    """Holds the loaded models once, for any number of images."""

    def __init__(self, config: Config, embedder: Embedder, cropper: Cropper | None = None) -> None:
        self.config = config
        self.embedder = embedder
        self.cropper = cropper if config.crop.enabled else None

    @classmethod
    def from_config(cls, config: Config, cropper: Cropper | None = None, cache_dir: Path | None = None) -> Pipeline:
        b, e = config.backbone, config.embed
        embedder = Embedder(
            backbone=b.name,
            image_size=b.image_size,
            pooling=b.pooling,
            gem_p=b.gem_p,
            light_norm=b.light_norm,
            device=e.device,
            batch_size=e.batch_size,
            engine=e.engine,
            cache_dir=cache_dir,
            weights=b.weights,
        )
        return cls(config, embedder, cropper)

    def signature(self) -> dict[str, Any]:
        """Everything that must match between an index and its queries."""
        return {
            **self.config.embedding_signature(),
            "weights": weights_fingerprint(self.config.backbone.name, self.config.backbone.weights),
            "crop_model": self.cropper.fingerprint if self.cropper is not None else None,
            "crop_pad": self.config.crop.pad if self.cropper is not None else None,
            "crop_refine": self._refine_setting() if self.cropper is not None else None,
            "crop_catalog_cutout": self.config.crop.catalog_cutout if self.cropper is not None else None,
            "catalog_views": self._views_signature(),
            # beside the vectors, not in them: a model without colour serves an index with or without it
            "catalog_colour": COLOUR_VERSION if self.config.index.colour else None,
        }

    @property
    def colour_dim(self) -> int:
        """Numbers in each crop's colour descriptor (``index.colour``; 0 when off)."""
        return COLOUR_DIM if self.config.index.colour else 0

    def colours(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """(N, colour_dim) colour descriptors of framed crops (``ranking.colour``), computed on the picture the
        backbone sees, so the light normalisation that evens out a phone photo's cast applies to both."""
        if not self.colour_dim:
            return np.zeros((len(crops), 0), np.float32)
        size, light = self.config.backbone.image_size, self.config.backbone.light_norm
        return colour_descriptors([backbone_pixels(crop, size, light) for crop in crops])

    @property
    def catalogue_view_count(self) -> int:
        """Photo-like shots made of each catalogue photo at index time (``index.views``). Only where queries are
        cropped and catalogue photos framed by their cut-out: the views are cut as a cropped query is."""
        if self.cropper is None or not self.config.crop.catalog_cutout:
            return 0
        return max(0, self.config.index.views)

    def _views_signature(self) -> int | dict[str, Any]:
        """How many views and, where not the standard scene alone, from which conditions (an index from before
        ``index.view_conditions`` recorded the count alone, and still matches)."""
        conditions = self.config.index.view_conditions
        count = self.catalogue_view_count
        return {"count": count, "conditions": dict(sorted(conditions.items()))} if count and conditions else count

    @functools.cached_property
    def _view_simulator(self) -> PhotoSimulator | ConditionSimulator:
        # Procedural clutter only: the photo backgrounds bundled for crop training and the benchmarks' queries
        # stay out of the index, so a benchmark query never meets its own background there.
        from bbox.conditions import scene_simulator

        return scene_simulator(self.config.index.view_conditions, long_side_cap=VIEW_LONG_SIDE, backgrounds=[])

    def catalogue_views(self, image: np.ndarray, key: str) -> list[np.ndarray]:
        """``catalogue_view_count`` simulated phone photos of one catalogue photo, each cut around a slightly
        wrong box as the crop model would cut it. ``key`` (the file's hex hash) seeds them, so re-indexing the same
        file gives the same vector."""
        from tiefwatch.views import photo_view_crops

        count = self.catalogue_view_count
        if not count:
            return []
        rng = np.random.default_rng([self.config.seed, int(key[:15], 16)])
        return photo_view_crops(shrunk(image, VIEW_SOURCE_SIDE), count, self._view_simulator, rng, self.config.crop.pad)

    def _refine_setting(self) -> bool | dict[str, float]:
        """False, or how the refine pass looks again: any of it changes the boxes, so it belongs in the signature."""
        crop = self.config.crop
        return {"pad": crop.refine_pad, "below": crop.refine_below} if crop.refine else False

    def frame(self, images: Sequence[np.ndarray], catalogue: bool = False) -> tuple[list[np.ndarray], list[Framing]]:
        """Crop each image to its watch; low-confidence boxes fall back to the whole image, and say so.

        Photos on a plain light background are framed by their product cut-out (``crop.catalog_cutout``), the box
        the crop model is trained to reproduce, found on a copy at most ``CUTOUT_SIDE`` large; the rest go through
        the model, and only queries (not ``catalogue`` photos) get its second look."""
        if self.cropper is None:
            return list(images), [Framing(None, None, "crop off") for _ in images]
        crops: list[np.ndarray | None] = [None] * len(images)
        framings: list[Framing | None] = [None] * len(images)
        # A query that is a product shot on a plain, evenly lit light background (a shop's own photo) is framed by its
        # cut-out as its catalogue photo is, so both are cut alike; the rest go to the crop network.
        for number, image in enumerate(images):
            framed = self.frame_without_model(image, catalogue=catalogue)
            if framed is not None:
                crops[number], framings[number] = framed
        pending = [number for number, crop in enumerate(crops) if crop is None]
        predictions = self.cropper.predict([images[number] for number in pending]) if pending else []
        if not catalogue:
            predictions = second_look(
                self.cropper, [images[number] for number in pending], predictions, self.config.search
            )
        threshold = self.config.crop.min_confidence
        for number, prediction in zip(pending, predictions, strict=True):
            image = images[number]
            # a query's other heat peaks, and its box where the whole photo stands in for it, are tried by the
            # search (``Searcher.embed_queries``); a catalogue photo has no catalogue to be checked against
            try_others = not catalogue and self.config.crop.alternatives_ratio > 0
            others = prediction.alternatives if try_others else ()
            if prediction.confidence < threshold:
                crops[number] = image
                framings[number] = Framing(
                    None,
                    prediction.confidence,
                    f"low crop confidence {prediction.confidence:.2f}",
                    ((prediction.box, prediction.confidence), *others) if try_others else (),
                )
                continue
            crops[number] = self._square(image, prediction.box)
            framings[number] = Framing(prediction.box, prediction.confidence, "", others)
        return [crop for crop in crops if crop is not None], [f for f in framings if f is not None]

    def frame_without_model(
        self, image: np.ndarray, max_side: int | None = CUTOUT_SIDE, catalogue: bool = True
    ) -> tuple[np.ndarray, Framing] | None:
        """A photo's framing where no network is needed (crop off, or its product cut-out, found on a copy at most
        ``max_side`` large), else None. Cheap numpy work, so ``index`` runs it in its decode threads while the
        model embeds the previous batch. A query (not ``catalogue``) is cut out only where its backdrop is lit as
        evenly as a studio's (``search.cutout_max_spread``); a catalogue photo on a plain backdrop always is."""
        if self.cropper is None:
            return image, Framing(None, None, "crop off")
        if not self.config.crop.catalog_cutout:
            return None
        limit = self.config.search.cutout_max_spread
        box = product_box(image, max_side, None if catalogue or limit <= 0 else limit)
        return None if box is None else (self._square(image, box), Framing(box, 1.0, "product cut-out"))

    def _square(self, image: np.ndarray, box: BoundingBox) -> np.ndarray:
        h, w = image.shape[:2]
        return box.to_square(pad=self.config.crop.pad, w=w, h=h).crop(image)

    def query_crops(self, images: Sequence[np.ndarray]) -> QueryCrops:
        """Each query photo framed as ``frame`` does, and where the crop network saw more than one heat peak, each
        other peak's box too (candidates the search chooses among); every box is cut again at
        ``search.extra_crop_scales`` (``mean_rows`` folds a candidate's crops into one vector)."""
        first_crops, framings = self.frame(images)
        shift_of = [0.0] * len(images)
        if self.config.search.correct_light:  # judged around the first box; every crop of the photo shares it
            shift_of = [
                light_correction(image, framing.box.as_list() if framing.box is not None else None)
                for image, framing in zip(images, framings, strict=True)
            ]
        scales = [float(s) for s in self.config.search.extra_crop_scales if float(s) > 0]
        candidates: list[Framing] = []
        photo_of: list[int] = []
        crops: list[np.ndarray] = []
        averaged: list[bool] = []  # each candidate: is the whole photo averaged into it (a close-up's own box)
        for number, framing in enumerate(framings):
            whole = self.averages_whole_photo(images[number], framing)
            if whole:
                framing = replace(
                    framing, note=f"{framing.note}; {WHOLE_PHOTO_NOTE}" if framing.note else WHOLE_PHOTO_NOTE
                )
            averaged.append(whole)
            candidates.append(framing)
            photo_of.append(number)
            crops.append(first_crops[number])
            for box, confidence in framing.alternatives:
                candidates.append(Framing(box, confidence, "another heat peak of the crop network"))
                averaged.append(False)
                photo_of.append(number)
                crops.append(self._square(images[number], box))
        owners = list(range(len(candidates)))
        weights = [1.0] * len(candidates)
        shifts = [shift_of[number] for number in photo_of]
        for index, (number, framing) in enumerate(zip(photo_of, candidates, strict=True)):
            if framing.box is None:
                continue  # the whole photo (crop off or unsure) has nothing to rescale
            cx, cy = framing.box.center
            for scale in scales:
                half_w, half_h = framing.box.width * scale / 2, framing.box.height * scale / 2
                box = BoundingBox(cx - half_w, cy - half_h, cx + half_w, cy + half_h)
                crops.append(self._square(images[number], box))
                owners.append(index)
                weights.append(1.0)
                shifts.append(shift_of[number])
            if averaged[index]:
                # a close-up: the whole photo weighs as much as the box's crops together, and keeps its light, since
                # it is mostly watch and the watch's own colour would be taken for the light's
                crops.append(images[number])
                owners.append(index)
                weights.append(1.0 + len(scales))
                shifts.append(0.0)
        crops = [correct_warm_cool(crop, shift) for crop, shift in zip(crops, shifts, strict=True)]
        colours = self.colours(crops[: len(candidates)])  # each candidate's own crop comes first, in order
        return QueryCrops(
            crops,
            np.asarray(owners, np.int64),
            candidates,
            np.asarray(photo_of, np.int64),
            colours,
            np.asarray(weights, np.float32),
        )

    def averages_whole_photo(self, image: np.ndarray, framing: Framing) -> bool:
        """Whether a query framed by ``framing`` has the whole photo averaged into its vector: its box covers more
        than ``search.whole_photo_above`` of the photo (a close-up, the watch often cut by the frame)."""
        above = self.config.search.whole_photo_above
        if framing.box is None or above <= 0:
            return False
        h, w = image.shape[:2]
        return framing.box.clip(w, h).area > above * w * h

    def embed_query_candidates(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, QueryCrops]:
        """One unit vector per candidate framing of each query photo (``query_crops``, embedded and averaged)."""
        cut = self.query_crops(images)
        return cut.candidate_vectors(self.embedder.embed(cut.crops)), cut

    def embed_queries(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[Framing]]:
        """Query photos -> one unit vector each, from ``frame``'s own framing (without a catalogue to ask, the
        other peaks' candidates have nothing to be chosen by: ``Searcher`` chooses among them)."""
        vectors, cut = self.embed_query_candidates(images)
        first = np.flatnonzero(np.r_[True, cut.photo_of[1:] != cut.photo_of[:-1]])
        return vectors[first], [cut.candidates[i] for i in first]

    def embed_images(
        self,
        images: Sequence[np.ndarray],
        progress: Callable[[int], None] | None = None,
        catalogue: bool = False,
    ) -> tuple[np.ndarray, list[Framing]]:
        crops, framings = self.frame(images, catalogue)
        return self.embedder.embed(crops, progress=progress), framings

    def describe_images(
        self, images: Sequence[np.ndarray], catalogue: bool = False
    ) -> tuple[np.ndarray, np.ndarray, list[Framing]]:
        """``embed_images`` with the crops' colour descriptors: what a re-ranker that compares colour needs."""
        crops, framings = self.frame(images, catalogue)
        return self.embedder.embed(crops), self.colours(crops), framings


def second_look(
    cropper: Cropper, images: Sequence[np.ndarray], predictions: list[BoxPrediction], search: SearchConfig
) -> list[BoxPrediction]:
    """The crop network's second look at query photos: unsure ones again zoomed (``search.zoom_below``), where the
    cropper offers it (``BoxPredictor.look_closer``), then boxes that nearly span the photo stretched to its edges
    (``search.fill_frame_within``). For query photos only (searches, ``tiefwatch crop``): never for catalogue
    photos, so the index does not depend on it."""
    closer = getattr(cropper, "look_closer", None)
    if search.zoom_below > 0 and closer is not None and predictions:
        predictions = closer(images, predictions, search.zoom_below, search.zoom_window)
    if search.fill_frame_within <= 0:
        return predictions
    return [
        replace(p, box=p.box.spread_to_frame(image.shape[1], image.shape[0], search.fill_frame_within))
        for p, image in zip(predictions, images, strict=True)
    ]


def mean_rows(vectors: np.ndarray, owners: np.ndarray, count: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(N, D) vectors -> (count, D) unit rows, each the renormalised (``weights``-weighted) sum of the vectors its
    ``owners`` name."""
    out = np.zeros((count, vectors.shape[1]), np.float32)
    weighted = vectors if weights is None else vectors * np.asarray(weights, np.float32)[:, None]
    np.add.at(out, np.asarray(owners, np.int64), weighted)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
