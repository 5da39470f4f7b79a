"""The catalogue index: one vector per catalogue photo, the FAISS structure over them, and what made them.

Beside each vector it keeps the photo crop's colour descriptor (``index.colour``, ``ranking.colour``): the
re-ranker compares colours, FAISS does not.

Saved as a single ``.npz`` written atomically, so an interrupted ``tiefwatch index`` leaves the previous index
usable, and the next run removes the temp file a killed one left (``storage.remove_stale_temps``). Re-indexing
is incremental: files whose size and mtime (or, failing that, content hash) are unchanged keep their vectors;
deleted files are dropped.

Every file the reader cannot take (``images.load_image``: broken, truncated, too large, a looping or broken
symlink, one that vanished since the listing) is skipped, counted and named with its one-line reason
(``IndexSummary.skipped`` and ``skip_reasons``); the rest of the catalogue is indexed as if it were not there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import stat
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from bbox.box import BoundingBox
from tiefwatch import __version__, vector_index
from tiefwatch.config import Config
from tiefwatch.images import ImageReadError, display_path, list_images, load_image
from tiefwatch.pipeline import Framing, Pipeline, mean_rows
from tiefwatch.progress import progress_bar
from tiefwatch.storage import remove_stale_temps, write_atomic
from tiefwatch.workspace import Workspace

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# What an index's vectors and its search structure depend on: ``index`` records these in the workspace's settings,
# so later searches embed as it did; a one-off ``--set`` on anything else does not stick.
INDEX_SECTIONS = ("backbone", "embed", "index", "crop")
# Catalogue photos are read at most this long (a query keeps images.MAX_SIDE): a product shot's watch fills the
# frame, and the backbone sees 260 px of it. The product cut-out's morphology (bbox.synth: cv2.morphologyEx and
# dilate, kernels that grow with the photo) costs far more than the pixels: ``_prepare_chunk`` of one 2,048 px
# photo took 17.5 s under cProfile, of a 1,024 px one 1.3 s (2 shared cores, 2026-12-07).
CATALOGUE_MAX_SIDE = 1024


class CatalogIndexError(RuntimeError):
    """An index that is missing, unreadable, or was built with other settings than the current ones."""


@dataclass(frozen=True)
class Entry:
    """One catalogue photo: where it is, how to tell whether it changed, and how it was framed."""

    path: str  # relative to the catalogue root
    size: int
    mtime_ns: int
    sha1: str
    box: tuple[float, float, float, float] | None = None


@dataclass
class IndexSummary:
    """What an ``index`` run did; printed for people and as JSON for scripts."""

    root: str
    total: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[str] = field(default_factory=list)  # catalogue-relative names, printable (images.display_path)
    skip_reasons: dict[str, str] = field(default_factory=dict)  # name -> why, e.g. "too large: 30000×30000, ..."
    rebuilt_reason: str = ""
    catalog_views: int = 0  # photo-like views averaged into each newly embedded photo's vector (index.views)
    with_views: int = 0  # newly embedded photos that got them (those framed by their product cut-out)
    index_type: str = ""
    seconds: float = 0.0
    embedded_per_second: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "skipped_count": len(self.skipped)}

    def skip(self, rel: str, error: ImageReadError) -> None:
        name = display_path(rel)
        self.skipped.append(name)
        self.skip_reasons[name] = error.reason


class CatalogIndex:
    """Vectors, entries and the FAISS index, with the signature and config they were built with."""

    def __init__(
        self,
        root: Path,
        entries: list[Entry],
        vectors: np.ndarray,
        signature: dict[str, Any],
        config: Config,
        faiss_index: faiss.Index | None = None,
        created: float | None = None,
        search_refine: int | None = None,
        colours: np.ndarray | None = None,
    ) -> None:
        if len(entries) != len(vectors):
            raise ValueError(f"{len(entries)} entries for {len(vectors)} vectors")
        if colours is not None and len(colours) != len(vectors):
            raise ValueError(f"{len(colours)} colour descriptors for {len(vectors)} vectors")
        self.root = root
        self.entries = entries
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        # (N, COLOUR_DIM), or (N, 0) for an index built without colour (``index.colour: false``)
        self.colours = np.zeros((len(vectors), 0), np.float32) if colours is None else np.asarray(colours, np.float32)
        self.signature = signature
        self.config = config
        if faiss_index is None:
            faiss_index, tuning = vector_index.build_tuned(self.vectors, config.index, config.seed)
            search_refine = tuning.refine
        self.faiss_index = faiss_index
        self.search_refine = search_refine or config.index.refine  # what the build-time tuning chose
        self.created = created or time.time()

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def path_of(self, row: int) -> Path:
        return self.root / self.entries[row].path

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, rows) per query row; rows of -1 where the catalogue is smaller than k."""
        k = max(1, min(k, len(self)))
        return vector_index.search(self.faiss_index, self.vectors, queries, k, self.search_refine)

    # ------------------------------------------------------------------ persistence
    def save(self, path: Path) -> None:
        meta = {
            "format": FORMAT_VERSION,
            "tiefwatch": __version__,
            "root": str(self.root),
            "signature": self.signature,
            "config": self.config.to_dict(),
            "created": self.created,
            "index_type": vector_index.index_kind(self.faiss_index),
            "search_depth": vector_index.get_depth(self.faiss_index),
            "search_refine": self.search_refine,
        }
        boxes = np.array([e.box if e.box is not None else (np.nan,) * 4 for e in self.entries], np.float32).reshape(
            -1, 4
        )
        arrays = {
            "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8),
            "vectors": self.vectors,
            "colours": self.colours,
            "paths": np.array([e.path for e in self.entries], dtype=np.str_),
            "sizes": np.array([e.size for e in self.entries], np.int64),
            "mtimes": np.array([e.mtime_ns for e in self.entries], np.int64),
            "sha1": np.array([e.sha1 for e in self.entries], dtype=np.str_),
            "boxes": boxes,
            "faiss": vector_index.serialize(self.faiss_index),
        }
        remove_stale_temps(path, rescan=True)  # what a killed `index` left, even one killed since this process began
        write_atomic(path, lambda handle: np.savez(handle, **arrays))
        self.config.save(path.with_suffix(".config.yaml"))

    @staticmethod
    def require(path: Path) -> None:
        """Fail with the one-line answer a user needs where there is no index yet."""
        if not path.exists():
            raise CatalogIndexError(f"no index at {path}; run `tiefwatch index CATALOG_DIR` first")

    @classmethod
    def load(cls, path: Path, config: Config | None = None) -> CatalogIndex:
        """Load an index; ``config`` (the current one) supplies search-time knobs such as efSearch."""
        cls.require(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]).decode())
                if meta.get("format") != FORMAT_VERSION:
                    raise CatalogIndexError(f"{path}: index format {meta.get('format')} is not {FORMAT_VERSION}")
                saved_config = Config.from_dict(meta["config"])
                # as Python lists first: 3,000 entries built from numpy scalars took 30 ms of a fresh search process
                columns = (data[name].tolist() for name in ("paths", "sizes", "mtimes", "sha1", "boxes"))
                entries = [
                    Entry(p, s, m, h, None if math.isnan(b[0]) else tuple(b))
                    for p, s, m, h, b in zip(*columns, strict=True)
                ]
                vectors = data["vectors"]
                index_config = (config or saved_config).index
                if meta.get("index_type") == "flat":
                    # a flat index is the vectors themselves: filled again in 5 ms, where reading and deserialising
                    # its saved copy took 60
                    faiss_index = vector_index.flat_index(vectors)
                else:
                    faiss_index = vector_index.deserialize(data["faiss"], index_config, meta.get("search_depth"))
                colours = data.get("colours")  # None in an index written before colour descriptors
        except CatalogIndexError:
            raise
        except Exception as error:
            raise CatalogIndexError(f"{path}: unreadable index ({error}); rebuild it with `tiefwatch index`") from error
        return cls(
            Path(meta["root"]),
            entries,
            vectors,
            meta["signature"],
            saved_config,
            faiss_index,
            meta["created"],
            meta.get("search_refine"),
            colours,
        )

    def check_compatible(self, signature: dict[str, Any]) -> None:
        """Refuse to compare vectors made differently: that would return confident garbage."""
        differences = {
            key: (self.signature.get(key), signature.get(key))
            for key in sorted(set(self.signature) | set(signature))
            if self.signature.get(key) != signature.get(key)
        }
        if differences:
            listed = "; ".join(f"{k}: index has {a!r}, now {b!r}" for k, (a, b) in differences.items())
            raise CatalogIndexError(
                f"the index was built with other settings ({listed}); re-run `tiefwatch index` "
                "or use the settings it was built with"
            )


# ---------------------------------------------------------------------- building
def file_sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _scan(path: Path) -> os.stat_result | ImageReadError:
    """The file's stat, or why it cannot be indexed: a broken or looping symlink, a folder or FIFO named like an
    image, a file that vanished since the listing. ``load_image`` gives the reason in the reader's words."""
    try:
        info = path.stat()
    except OSError:
        info = None
    if info is not None and stat.S_ISREG(info.st_mode):
        return info
    try:
        load_image(path)
    except ImageReadError as error:
        return error
    return ImageReadError(f"{display_path(path)}: not a regular file", str(path), "not a regular file")


def _decode(path: Path) -> np.ndarray | ImageReadError:
    try:
        return load_image(path, max_side=CATALOGUE_MAX_SIDE)
    except ImageReadError as error:
        return error


@dataclass
class _Prepared:
    """A decoded catalogue photo, with its framing and model input when no network was needed to frame it."""

    image: np.ndarray
    framing: Framing | None = None
    tensor: np.ndarray | None = None
    views: list[np.ndarray] = field(default_factory=list)  # model inputs of its photo-like shots (index.views)
    colour: np.ndarray | None = None  # its crop's colour descriptor (index.colour), with ``tensor``


def _prepare_chunk(chunk: list[tuple], pipeline: Pipeline) -> list[_Prepared | ImageReadError]:
    """Decode, frame by cut-out and preprocess (numpy and OpenCV, off the model's thread)."""
    out: list[_Prepared | ImageReadError] = []
    for item in chunk:
        image = _decode(item[1])
        if isinstance(image, ImageReadError):
            out.append(image)
            continue
        framed = pipeline.frame_without_model(image)
        if framed is None:
            out.append(_Prepared(image))
            continue
        preprocess = pipeline.embedder.preprocess
        views = [preprocess(view) for view in pipeline.catalogue_views(image, item[4])]
        colour = pipeline.colours([framed[0]])[0]  # of the photo itself: its views are made-up light and clutter
        out.append(_Prepared(image, framed[1], preprocess(framed[0]), views, colour))
    return out


def _embed_prepared(pipeline: Pipeline, prepared: list[_Prepared]) -> tuple[np.ndarray, np.ndarray, list[Framing]]:
    """Vectors and colour descriptors in order: ready inputs go straight to the model, the rest through the crop
    model first."""
    vectors = np.zeros((len(prepared), pipeline.embedder.dim), np.float32)
    colours = np.zeros((len(prepared), pipeline.colour_dim), np.float32)
    framings: list[Framing | None] = [item.framing for item in prepared]
    ready = [number for number, item in enumerate(prepared) if item.tensor is not None]
    if ready:
        # A photo's vector is the mean of its own and its views' (``index.views``), renormalised.
        inputs = [tensor for n in ready for tensor in (prepared[n].tensor, *prepared[n].views)]
        owners = np.repeat(np.arange(len(ready)), [1 + len(prepared[n].views) for n in ready])
        step = max(1, pipeline.config.embed.batch_size)
        embedded = np.concatenate(
            [pipeline.embedder.embed_batch(np.stack(inputs[i : i + step])) for i in range(0, len(inputs), step)]
        )
        vectors[ready] = mean_rows(embedded, owners, len(ready))
        colours[ready] = [prepared[n].colour for n in ready]
    rest = [number for number, item in enumerate(prepared) if item.tensor is None]
    if rest:
        rest_vectors, rest_colours, rest_framings = pipeline.describe_images(
            [prepared[n].image for n in rest], catalogue=True
        )
        vectors[rest], colours[rest] = rest_vectors, rest_colours
        for number, framing in zip(rest, rest_framings, strict=True):
            framings[number] = framing
    return vectors, colours, [framing for framing in framings if framing is not None]


@dataclass(frozen=True)
class Embedded:
    """What embedding one catalogue photo gave: its vector, colour descriptor and product box."""

    vector: np.ndarray
    colour: np.ndarray
    box: tuple[float, float, float, float] | None
    with_views: bool  # its vector averages in photo-like views (index.views)


# A new or changed photo to embed: (relative path, path, size, mtime_ns, sha1, was in the previous index).
Item = tuple[str, Path, int, int, str, bool]
Outcome = Embedded | ImageReadError
# (pipeline, items, show_progress) -> (chunk of items, their outcomes in order), chunk after chunk
EmbedItems = Callable[[Pipeline, list[Item], bool], Iterable[tuple[list[Item], list[Outcome]]]]


def _outcomes(pipeline: Pipeline, decoded: list[_Prepared | ImageReadError]) -> list[Outcome]:
    """Embed a prepared chunk (``_prepare_chunk``): one outcome per photo, in order."""
    good = [ready for ready in decoded if isinstance(ready, _Prepared)]
    if not good:
        return list(decoded)  # type: ignore[arg-type]  # all errors
    vectors, colours, framings = _embed_prepared(pipeline, good)
    done = iter(zip(good, vectors, colours, framings, strict=True))
    out: list[Outcome] = []
    for ready in decoded:
        if isinstance(ready, ImageReadError):
            out.append(ready)
            continue
        prepared, vector, colour, framing = next(done)
        out.append(Embedded(vector, colour, _box_tuple(framing), bool(prepared.views)))
    return out


def embed_chunk(pipeline: Pipeline, chunk: list[Item]) -> list[Outcome]:
    """Decode, frame, simulate views and embed one chunk of photos in this process: the unit of work a Ray actor
    runs (``tiefwatch.distributed``), the same code a local run uses, so both write the same vectors."""
    return _outcomes(pipeline, _prepare_chunk(chunk, pipeline))


def embed_locally(
    pipeline: Pipeline, to_embed: list[Item], show_progress: bool
) -> Iterator[tuple[list[Item], list[Outcome]]]:
    """Embed in this process, a batch at a time; the next batches are decoded, framed and preprocessed in threads
    while the model runs on this one. The look-ahead is bounded so a large catalogue is never decoded into memory
    all at once."""
    config = pipeline.config
    batch = max(1, config.embed.batch_size)
    with (
        progress_bar("Embedding catalogue", total=len(to_embed), enabled=show_progress) as advance,
        ThreadPoolExecutor(max_workers=max(1, config.embed.decode_workers)) as pool,
    ):
        chunks = [to_embed[i : i + batch] for i in range(0, len(to_embed), batch)]
        ahead = max(1, config.embed.decode_workers)
        pending = deque(pool.submit(_prepare_chunk, chunk, pipeline) for chunk in chunks[:ahead])
        for number, chunk in enumerate(chunks):
            decoded = pending.popleft().result()
            if number + ahead < len(chunks):
                pending.append(pool.submit(_prepare_chunk, chunks[number + ahead], pipeline))
            yield chunk, _outcomes(pipeline, decoded)
            advance(len(chunk))


def build_index(
    catalog_dir: Path,
    pipeline: Pipeline,
    index_path: Path,
    previous: CatalogIndex | None = None,
    show_progress: bool = True,
    embed_items: EmbedItems | None = None,
) -> tuple[CatalogIndex, IndexSummary]:
    """Index (or update the index of) every image under ``catalog_dir`` and save it atomically.

    ``embed_items`` embeds the new and changed photos (default ``embed_locally``; ``tiefwatch.distributed`` runs
    the same per-photo work on Ray): everything else (listing, reuse, order, saving) is the same either way."""
    started = time.perf_counter()
    config = pipeline.config
    root = catalog_dir.resolve()
    summary = IndexSummary(root=str(root), catalog_views=pipeline.catalogue_view_count)
    files = list_images(root, config.index.extensions)
    signature = pipeline.signature()

    reusable: dict[str, tuple[Entry, np.ndarray, np.ndarray]] = {}
    if previous is not None:
        if previous.root != root:
            summary.rebuilt_reason = f"catalogue folder changed from {previous.root}"
        elif previous.signature != signature:
            summary.rebuilt_reason = "embedding settings changed"
        else:
            reusable = {e.path: (e, previous.vectors[i], previous.colours[i]) for i, e in enumerate(previous.entries)}

    kept: list[tuple[Entry, np.ndarray, np.ndarray]] = []
    to_embed: list[Item] = []
    unreadable: set[str] = set()
    for path in files:
        rel = path.relative_to(root).as_posix()
        info = _scan(path)
        if isinstance(info, ImageReadError):
            log.warning("skipped %s", info)
            summary.skip(rel, info)
            unreadable.add(rel)
            continue
        old = reusable.get(rel)
        if old is not None and old[0].size == info.st_size and old[0].mtime_ns == info.st_mtime_ns:
            kept.append(old)
            continue
        try:
            sha1 = file_sha1(path)
        except OSError as error:  # vanished or became unreadable since the stat
            reason = error.strerror or error.__class__.__name__
            summary.skip(rel, ImageReadError(f"{display_path(path)}: {reason}", str(path), reason))
            unreadable.add(rel)
            continue
        if old is not None and old[0].sha1 == sha1:
            entry = old[0]
            kept.append((Entry(rel, info.st_size, info.st_mtime_ns, sha1, entry.box), old[1], old[2]))
            continue
        to_embed.append((rel, path, info.st_size, info.st_mtime_ns, sha1, old is not None))
    summary.unchanged = len(kept)
    present = {path.relative_to(root).as_posix() for path in files} - unreadable
    summary.removed = sum(1 for rel in reusable if rel not in present)

    embedded: list[tuple[Entry, np.ndarray, np.ndarray]] = []
    embed_started = time.perf_counter()
    for chunk, outcomes in (embed_items or embed_locally)(pipeline, to_embed, show_progress):
        for item, outcome in zip(chunk, outcomes, strict=True):
            if isinstance(outcome, ImageReadError):
                log.warning("skipped %s", outcome)
                summary.skip(item[0], outcome)
                continue
            rel, _, size, mtime, sha1, existed = item
            embedded.append((Entry(rel, size, mtime, sha1, outcome.box), outcome.vector, outcome.colour))
            summary.with_views += outcome.with_views
            summary.updated += existed
            summary.added += not existed
    embed_seconds = time.perf_counter() - embed_started

    rows = sorted(kept + embedded, key=lambda row: row[0].path)
    entries = [entry for entry, _, _ in rows]
    dim = pipeline.embedder.dim
    vectors = np.stack([vector for _, vector, _ in rows]) if rows else np.zeros((0, dim), np.float32)
    colours = np.stack([c for _, _, c in rows]) if rows else np.zeros((0, pipeline.colour_dim), np.float32)
    trained, refine = None, None
    if reusable and previous is not None and previous.config.index == config.index:
        if summary.added or summary.updated or summary.removed:
            # Keep the previous index's trained codebooks: at scale, training is the costly part of an update.
            trained, tuning = vector_index.refill(previous.faiss_index, vectors, config.index, config.seed)
            refine = tuning.refine
        else:
            trained, refine = previous.faiss_index, previous.search_refine
    index = CatalogIndex(root, entries, vectors, signature, config, trained, search_refine=refine, colours=colours)
    index.save(index_path)
    summary.total = len(entries)
    summary.index_type = vector_index.index_kind(index.faiss_index)
    summary.seconds = round(time.perf_counter() - started, 3)
    if embedded:
        summary.embedded_per_second = round(len(embedded) / max(embed_seconds, 1e-9), 2)
    return index, summary


def _box_tuple(framing: Framing) -> tuple[float, float, float, float] | None:
    box: BoundingBox | None = framing.box
    return None if box is None else (box.x0, box.y0, box.x1, box.y1)


def index_catalog(
    catalog_dir: str | Path,
    workspace: Workspace | str | Path | None = None,
    config: Config | None = None,
    show_progress: bool = False,
    ray_address: str | None = None,
) -> IndexSummary:
    """Library form of ``tiefwatch index``: embed new or changed photos, drop deleted ones, save atomically.

    ``ray_address`` embeds on Ray instead of in this process (``tiefwatch.distributed``; the ``ray`` extra): ""
    for Ray's default (the cluster ``RAY_ADDRESS`` names, else a local Ray), or a cluster's address. The index it
    writes is the one a local run writes."""
    from tiefwatch.models import load_cropper, load_reranker

    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    config = config or workspace.load_config()
    catalog_dir = Path(catalog_dir)
    if not catalog_dir.is_dir():
        raise FileNotFoundError(f"catalogue folder not found: {catalog_dir}")
    previous = None
    if workspace.index_path.exists():
        try:
            previous = CatalogIndex.load(workspace.index_path, config)
        except CatalogIndexError as error:
            log.warning("previous index not reused: %s", error)
    embed_items = None
    if ray_address is not None:  # first: without Ray, nothing is built or written
        from tiefwatch.distributed import ray_embedder

        embed_items = ray_embedder(workspace, config, ray_address)
    cropper = load_cropper(config, workspace) if config.crop.enabled else None
    pipeline = Pipeline.from_config(config, cropper, cache_dir=workspace.cache_dir)
    workspace.save_config(config, sections=INDEX_SECTIONS)
    index, summary = build_index(catalog_dir, pipeline, workspace.index_path, previous, show_progress, embed_items)
    if config.rerank.enabled:
        # Loading the similarity model leaves its numpy form in the workspace cache (as building the pipeline
        # left the ONNX graphs): the first search then needs no torch.
        load_reranker(config, workspace, index.signature)
    return summary
