"""Search: crop the query, embed it, find FAISS candidates, re-rank them.

``Searcher`` loads the index and models once for any number of queries (the web server holds one per worker);
``search`` is the one-call library form of ``tiefwatch search``. ``tiefwatch.search`` names both this module and
that function, so the module itself is callable: ``tiefwatch.search(["photo.jpg"], workspace="ws")`` works however
often it is called, and whether or not ``tiefwatch.search`` was imported as a module first.
"""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ranking.colour import prepare_colour_tables
from ranking.rerank import keep_nearest_order, sure_of_nearest
from tiefwatch.config import Config
from tiefwatch.images import ImageReadError, expand_queries, load_image
from tiefwatch.index import CatalogIndex, CatalogIndexError
from tiefwatch.models import load_cropper, load_reranker, same_embedding
from tiefwatch.pipeline import Framing, Pipeline, Reranker, rerank_inputs
from tiefwatch.progress import progress_bar
from tiefwatch.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass
class Hit:
    rank: int
    path: str
    score: float
    faiss_score: float
    kept_nearest: bool = False  # placed on the page for being among the backbone's nearest, not for its score
    id: int | None = None  # the index row: what the web API serves a thumbnail by (no paths from clients)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rank": self.rank,
            "id": self.id,
            "path": self.path,
            "score": round(self.score, 6),
            "faiss_score": round(self.faiss_score, 6),
        }
        if self.kept_nearest:
            out["kept_nearest"] = True
        return out


@dataclass
class QueryResult:
    query: str
    framing: Framing | None
    results: list[Hit] = field(default_factory=list)
    reranked: bool = False
    error: str | None = None
    size: tuple[int, int] | None = None  # (width, height) of the photo as searched (EXIF rotation applied)

    @property
    def box(self) -> list[float] | None:
        if self.framing is None or self.framing.box is None:
            return None
        return [round(v, 1) for v in self.framing.box.as_list()]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"query": self.query, "size": list(self.size) if self.size else None, "box": self.box}
        if self.framing is not None and self.framing.confidence is not None:
            out["crop_confidence"] = round(self.framing.confidence, 4)
        if self.framing is not None and self.framing.note:
            out["note"] = self.framing.note
        out["reranked"] = self.reranked
        if self.error:
            out["error"] = self.error
        out["results"] = [hit.as_dict() for hit in self.results]
        return out


class Searcher:
    """Everything a query needs, loaded once."""

    def __init__(
        self,
        workspace: Workspace | str | Path | None = None,
        config: Config | None = None,
        use_crop: bool = True,
        use_rerank: bool = True,
        index: CatalogIndex | None = None,
    ) -> None:
        """``workspace``: a folder or ``Workspace`` (default ``./.tiefwatch`` or ``$TIEFWATCH_WORKSPACE``);
        ``config``: the workspace's own when not given. ``use_crop`` / ``use_rerank`` are the defaults of each
        search, which can still turn either off per call. ``index``: the workspace's index when the caller has it
        loaded already (several searchers over one catalogue, as ``eval`` builds, need not read a large index once
        each)."""
        workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        config = config or workspace.load_config()
        self.workspace = workspace
        self.config = config
        if index is None:
            CatalogIndex.require(workspace.index_path)  # before any model opens: no index fails at once
        # Loading is mostly native code that lets go of the GIL (ONNX Runtime opening a graph, the index's arrays,
        # OpenCV building its colour tables on first use), so the crop model and the colour tables are readied in
        # threads while this one reads the index and opens the backbone (with the index's faster loading, a fresh
        # `tiefwatch search` 10-20 % sooner on two cores: docs/benchmarks.md, session 20).
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="tiefwatch-load") as pool:
            crop_job = pool.submit(load_cropper, config, workspace) if use_crop and config.crop.enabled else None
            pool.submit(prepare_colour_tables)
            self.index = index if index is not None else CatalogIndex.load(workspace.index_path, config)
            # The catalogue was framed with the index's crop settings; queries must be framed the same way.
            embedder = Pipeline.from_config(config, cache_dir=workspace.cache_dir).embedder
            self.pipeline = Pipeline(config, embedder, crop_job.result() if crop_job is not None else None)
        self.index.check_compatible(self._comparable(self.pipeline.signature()))
        self.reranker: Reranker | None = (
            load_reranker(config, workspace, self.index.signature) if use_rerank and config.rerank.enabled else None
        )
        if getattr(self.reranker, "colour_dim", 0) and self.index.colours.shape[1] != self.reranker.colour_dim:
            raise CatalogIndexError(
                "the similarity model compares colour descriptors and this index keeps none (index.colour: false, "
                "or built before them); re-run `tiefwatch index` with index.colour: true, or use --no-rerank"
            )
        trained_on = getattr(self.reranker, "signature", None)
        if not same_embedding(trained_on, self.index.signature):
            raise CatalogIndexError(
                "the similarity model was trained on vectors made with other settings than this index; "
                "re-run `tiefwatch train` / `tiefwatch train-triplets`, or use --no-rerank"
            )

        self._whole_photo: Pipeline | None = None

    def _comparable(self, signature: dict[str, Any]) -> dict[str, Any]:
        """``--no-crop`` changes how the query is framed, not how the catalogue was (its crop model, padding,
        refine pass and product cut-outs stay the index's), and the catalogue's views and colour descriptors are
        the index's own business (a query's colours are only read by a model that needs the index's): compare the
        rest, i.e. what makes the vectors (backbone, weights, input size, pooling) and, for cropped queries, the
        crop model that frames both sides. Re-ranking is query-side only and never part of the signature."""
        catalogue_only = ["catalog_views", "catalog_colour"]
        if self.pipeline.cropper is None:
            catalogue_only += [key for key in {*signature, *self.index.signature} if key.startswith("crop_")]
        return {**signature, **{key: self.index.signature.get(key) for key in catalogue_only}}

    def _pipeline(self, crop: bool) -> Pipeline:
        """The loaded pipeline, or one over the same embedder that embeds the whole photo (``crop=False``)."""
        if crop or self.pipeline.cropper is None:
            return self.pipeline
        if self._whole_photo is None:
            self._whole_photo = Pipeline(self.config, self.pipeline.embedder, None)
        return self._whole_photo

    def __len__(self) -> int:
        """Catalogue photos in the index."""
        return len(self.index)

    def embed_queries(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[Framing]]:
        """One vector and framing per query photo (``describe_queries`` without the colours)."""
        vectors, _, framings = self.describe_queries(images)
        return vectors, framings

    def describe_queries(
        self, images: Sequence[np.ndarray], crop: bool = True
    ) -> tuple[np.ndarray, np.ndarray, list[Framing]]:
        """One vector, colour descriptor and framing per query photo. Where the crop network saw several
        watch-like peaks, each peak's crop was embedded, and the one whose nearest catalogue photo is closest wins:
        the catalogue knows what a watch looks like better than a heat map does (3 % of the benchmark's photos;
        benchmarks.md)."""
        vectors, cut = self._pipeline(crop).embed_query_candidates(images)
        if len(cut.candidates) == len(images):
            return vectors, cut.colours, cut.candidates
        best_match = self.index.search(vectors, 1)[0][:, 0]
        chosen = []
        for number in range(len(images)):
            mine = np.flatnonzero(cut.photo_of == number)
            pick = int(mine[np.argmax(best_match[mine])])
            chosen.append(pick)
            if len(mine) > 1:
                framing, whole_first = cut.candidates[pick], cut.candidates[mine[0]].box is None
                peaks = len(mine) - whole_first  # an unsure photo's first candidate is the whole photo
                among = f"the whole photo and {peaks} heat peaks" if whole_first else f"{peaks} heat peaks"
                kept = "the whole photo" if framing.box is None else f"heat peak {pick - mine[0] + (not whole_first)}"
                note = f"kept {kept} among {among}, by closest catalogue match"
                cut.candidates[pick] = Framing(framing.box, framing.confidence, note)
        return vectors[chosen], cut.colours[chosen], [cut.candidates[i] for i in chosen]

    def rerank_scores(self, vector: np.ndarray, colour: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The re-ranker's score of one query against these index rows."""
        assert self.reranker is not None
        query = rerank_inputs(self.reranker, vector[None, :], colour[None, :])[0]
        candidates = rerank_inputs(self.reranker, self.index.vectors[rows], self.index.colours[rows])
        return self.reranker.score(query, candidates)

    def search_images(
        self,
        images: Sequence[np.ndarray],
        names: Sequence[str] | None = None,
        k: int | None = None,
        crop: bool = True,
        rerank: bool = True,
    ) -> list[QueryResult]:
        """The ``k`` (default ``search.k``) most similar catalogue photos for each RGB uint8 image; ``names`` label
        the results (default ``image 0``, ``image 1``...). ``crop=False`` embeds the whole photo and
        ``rerank=False`` keeps the FAISS order for this call only. Safe to call from several threads at once: the
        loaded models are only read."""
        k = self.config.search.k if k is None else k
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        names = [f"image {number}" for number in range(len(images))] if names is None else list(names)
        if not images:
            return []
        reranker = self.reranker if rerank else None
        vectors, colours, framings = self.describe_queries(images, crop=crop)
        depth = max(k, self.config.rerank.top_k if reranker is not None else k)
        scores, rows = self.index.search(vectors, depth)
        results = []
        for name, image, framing, vector, colour, row_scores, row_ids in zip(
            names, images, framings, vectors, colours, scores, rows, strict=True
        ):
            valid = row_ids >= 0
            row_scores, row_ids = row_scores[valid], row_ids[valid]
            final, order, kept = row_scores, np.arange(len(row_ids)), set()
            if reranker is not None and len(row_ids):
                final = self.rerank_scores(vector, colour, row_ids)
                keep = self.config.rerank
                pin = sure_of_nearest(row_scores, keep.pin_margin)
                order = keep_nearest_order(final, keep.keep_nearest, keep.keep_within, pin_nearest=pin)
                plain = np.argsort(-final, kind="stable")
                kept = set(order[: keep.keep_within].tolist()) - set(plain[: keep.keep_within].tolist())
                if pin and plain[0] != 0:  # first by the backbone's word, not by its score
                    kept.add(0)
            paths = [str(self.index.path_of(int(row_ids[i]))) for i in order[:k]]
            hits = [
                Hit(rank + 1, path, float(final[i]), float(row_scores[i]), i in kept, int(row_ids[i]))
                for rank, (i, path) in enumerate(zip(order[:k], paths, strict=True))
            ]
            size = (int(image.shape[1]), int(image.shape[0]))
            results.append(QueryResult(name, framing, hits, reranked=reranker is not None, size=size))
        return results

    def search_paths(
        self,
        paths: Sequence[str | Path],
        k: int | None = None,
        show_progress: bool = True,
        crop: bool = True,
        rerank: bool = True,
    ) -> list[QueryResult]:
        """Search each file; a missing or unreadable one gets a result with ``error`` set instead of stopping the
        batch."""
        out: list[QueryResult] = []
        batch = max(1, self.config.embed.batch_size)
        with progress_bar("Searching", total=len(paths), enabled=show_progress and len(paths) > 1) as advance:
            for start in range(0, len(paths), batch):
                chunk = paths[start : start + batch]
                images, names, by_name = [], [], {}
                for path in chunk:
                    try:
                        images.append(load_image(path))
                        names.append(str(path))
                    except ImageReadError as error:  # its message names the path already
                        log.warning("skipped %s", error)
                        by_name[str(path)] = QueryResult(str(path), None, error=str(error))
                    except OSError as error:  # missing, a folder, no permission
                        message = f"{path}: {error.strerror or error}"
                        log.warning("skipped %s", message)
                        by_name[str(path)] = QueryResult(str(path), None, error=message)
                if images:
                    for result in self.search_images(images, names, k, crop=crop, rerank=rerank):
                        by_name[result.query] = result
                out.extend(by_name[str(path)] for path in chunk)
                advance(len(chunk))
        return out


def search(
    queries: Sequence[str | Path],
    workspace: Workspace | str | Path | None = None,
    k: int | None = None,
    crop: bool = True,
    rerank: bool = True,
    config: Config | None = None,
    sheet: str | Path | None = None,
    show_progress: bool = False,
) -> list[QueryResult]:
    """The most similar catalogue watches for each query image (files or folders; a folder contributes its images).
    A query that is missing or unreadable gets a result with ``error`` set and the others go on. Loads the models
    on every call: hold a ``Searcher`` to answer many photos."""
    if isinstance(queries, str | Path):
        queries = [queries]
    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    config = config or workspace.load_config()
    searcher = Searcher(workspace, config, use_crop=crop, use_rerank=rerank)
    paths = expand_queries(queries, config.index.extensions)
    results = searcher.search_paths(paths, k, show_progress=show_progress)
    if sheet is not None:
        from tiefwatch.sheet import write_search_sheet

        write_search_sheet(results, Path(sheet), pad=config.crop.pad)
    return results


class _CallableModule(types.ModuleType):
    """``tiefwatch.search`` is this module once anything imported it (Python binds a submodule on its package),
    so calling it searches, as the function of the same name does."""

    def __call__(self, *args: Any, **kwargs: Any) -> list[QueryResult]:
        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
