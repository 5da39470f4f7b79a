"""``tiefwatch label``: a small local web tool where annotators add triplets for the similarity model.

Like TiefVision's Similarity Editor it shows an anchor catalogue watch beside candidates from the current model's
ranking; the annotator picks the one most like the anchor (near) and then any less alike (far). Unlike it, the tool
chooses what to ask: anchors spread over the catalogue (least-labelled k-means cluster first) and, for each anchor,
the stretch of its ranking where the model's scores are closest, i.e. where a human answer teaches the model most.
Triplets go through ``TripletWriter``, so several annotators (and processes) can label into one CSV at once.

The server reads only the index and the images the index names; everything else on disk stays out of reach.
The page is served by the same FastAPI app as the search (``tiefwatch.web``, routes in ``web.label_routes``), under
``/label/``, with the same access checks.
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import random
import re
import sys
import threading
import time
import webbrowser
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from tiefwatch.config import Config
from tiefwatch.images import ImageReadError, load_image
from tiefwatch.index import CatalogIndex
from tiefwatch.models import load_reranker
from tiefwatch.pipeline import Reranker, rerank_inputs
from tiefwatch.triplets import Triplet, TripletWriter
from tiefwatch.workspace import Workspace

if TYPE_CHECKING:
    from tiefwatch.web.server import WebServer

log = logging.getLogger(__name__)

PAGE_PATH = Path(__file__).with_name("label_page.html")
CANDIDATES_SHOWN = 8  # one screen: enough context to judge, few enough to take in at a glance
NEIGHBOURS_SCANNED = 32  # how deep into the anchor's ranking the uncertain stretch is looked for
MAX_CLUSTERS = 256
LEASE_SECONDS = 300  # an anchor on someone's screen is not handed to another annotator for this long
ANCHOR_TRIES = 64  # anchors examined per question before concluding nothing is left to ask
MAX_BODY_BYTES = 4096
THUMBNAIL_SIDE = 480
THUMBNAIL_CACHE = 512
ANNOTATOR_PATTERN = re.compile(r"[\w .@-]{1,64}")  # no commas, quotes, formulas or control characters in the CSV


class RequestError(Exception):
    """A request the tool refuses: answered with ``status`` and a JSON ``{"error": message}``, changing nothing."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class LabelState:
    """What the CSV says so far, in index rows: who labelled how much, and which pairs each anchor was asked."""

    per_anchor: np.ndarray
    asked: dict[int, set[frozenset[int]]]
    per_annotator: Counter[str]
    total: int


class LabelApp:
    """Everything behind the HTTP handler: the index, the triplet writer, the model and the question chooser."""

    def __init__(self, workspace: Workspace, config: Config, triplets_path: Path, token: str | None = None) -> None:
        self.workspace = workspace
        self.config = config
        self.token = token
        self.index = CatalogIndex.load(workspace.index_path, config)
        if len(self.index) < 3:
            raise ValueError(f"the index holds {len(self.index)} photos; a triplet needs at least 3")
        self.row_of = {entry.path: row for row, entry in enumerate(self.index.entries)}
        self.writer = TripletWriter(triplets_path)
        self.writer.sync()  # a file that is not a triplet CSV is refused now, not at the first click
        self.cluster_of, self.centroid_rank = cluster_catalogue(self.index.vectors, config.seed)
        self.cluster_sizes = np.maximum(np.bincount(self.cluster_of), 1)
        self._lock = threading.Lock()
        self._leases: dict[int, tuple[str, float]] = {}
        self._skips: Counter[int] = Counter()
        self._exhausted: set[int] = set()
        self._allowed: set[int] | None = None
        self.thumbnails = CatalogThumbnails(self.index)
        self._model_lock = threading.Lock()
        self._reranker: Reranker | None = None
        self._model_key: tuple[Any, ...] | None = None
        self.model_note = "raw features (cosine)"
        self.model_reason = "not chosen yet"
        self.model_path: str | None = None
        self._page_template = PAGE_PATH.read_text(encoding="utf-8")
        self.refresh_model()  # chosen at start, so every answer (a triplet first, too) reports the same model

    # -------------------------------------------------------------- model
    def _model_files(self) -> list[Path]:
        """The files the model choice depends on, in the order ``load_reranker`` tries them."""
        from ranking.rerank import DEFAULT_MODEL

        files = [self.workspace.similarity_model_path]
        if self.config.rerank.model:
            files.insert(0, Path(self.config.rerank.model))
        if self.config.rerank.packaged:
            files.append(DEFAULT_MODEL)
        return files

    def refresh_model(self) -> None:
        """Choose the ranking model at start, and again when its file appears or changes (training then shows up
        without a restart); ``status`` says which one and why.

        The choice is ``load_reranker``'s, as a search makes it: ``rerank.model``, else the workspace's
        ``models/similarity.pt``, else the packaged model where this index's vectors are made as it was trained
        on, else the raw cosine. It used to be made lazily, by the first ``/api/next``: a server restarted under
        a page still open got a triplet (or an undo) first, and answered it with the note it started with, "raw
        features (cosine)", while a fresh start, asked ``/api/next`` first, answered "similarity model ...". The
        questions were ranked by the same model both times; the report differed. Now the model is chosen in
        ``__init__``, before any request, so every start on the same workspace reports the same model."""
        if not self.config.rerank.enabled:
            self.model_note = "raw features (cosine; rerank disabled)"
            self.model_reason = "rerank.enabled is false"
            self.model_path = None
            return
        key = tuple(_file_stamp(path) for path in self._model_files())
        with self._model_lock:
            if key == self._model_key:
                return
            self._model_key = key
            source, reason = self._model_source()
            try:
                reranker = load_reranker(self.config, self.workspace, self.index.signature)
            except Exception as error:  # a half-written or unsupported model must not stop the labelling
                log.warning("similarity model not loaded, keeping %s: %s", self.model_note, error)
                self.model_reason = f"{source} could not be loaded ({error}); kept the previous choice"
                return
            self._reranker = reranker
            if reranker is None:
                self.model_note = "raw features (cosine)"
                self.model_path = None
                self.model_reason = (
                    "the packaged similarity model does not fit this index (its vectors are made with other "
                    "settings, or it keeps no colour descriptors), and no other model is configured or trained"
                    if source is not None
                    else reason
                )
            else:
                self.model_note = f"similarity model {reranker.fingerprint}"
                self.model_path = None if source is None else str(source)
                self.model_reason = reason
            with self._lock:
                self._exhausted.clear()  # a new ranking opens new uncertain pairs
            log.info("labelling now ranks with %s: %s", self.model_note, self.model_reason)

    def _model_source(self) -> tuple[Path | None, str]:
        """The file ``load_reranker`` will try, and the reason it is that one (its order, in words)."""
        from ranking.rerank import DEFAULT_MODEL

        rerank = self.config.rerank
        if rerank.model:
            return Path(rerank.model), "configured as rerank.model"
        if self.workspace.similarity_model_path.exists():
            return self.workspace.similarity_model_path, "the workspace's own model (tiefwatch train-triplets)"
        if rerank.packaged and DEFAULT_MODEL.exists():
            return DEFAULT_MODEL, "the packaged default model: no workspace model, and it fits this index's vectors"
        return None, "no similarity model: none configured or trained, and the packaged one is off (rerank.packaged)"

    def status(self) -> dict[str, Any]:
        """Which ranking the labelling uses and why, for ``/api/status``: the same on every start of one workspace."""
        self.refresh_model()
        with self._model_lock:
            return {
                "model": self.model_note,
                "kind": "cosine" if self._reranker is None else "similarity",
                "path": self.model_path,
                "reason": self.model_reason,
                "catalogue": len(self.index),
            }

    def restrict_anchors(self, rows: set[int]) -> None:
        """Ask about these anchors only (candidates still come from the whole catalogue): annotators working in
        parallel from separate processes take disjoint shares this way."""
        with self._lock:
            self._allowed = set(rows)

    def model_scores(self, anchor: int, candidates: np.ndarray) -> np.ndarray:
        """The current model's similarity of each candidate row to the anchor row."""
        self.refresh_model()
        query = self.index.vectors[anchor]
        reranker = self._reranker
        if reranker is not None:
            rows = np.r_[anchor, np.asarray(candidates, np.int64)]
            inputs = rerank_inputs(reranker, self.index.vectors[rows], self.index.colours[rows])
            # the anchor among its own candidates, as a search of its catalogue photo finds it: a query widened
            # by its closest candidate (rerank.expand) is then widened by itself, as it is in the search
            return np.asarray(reranker.score(inputs[0], inputs)[1:], dtype=np.float32)
        return self.index.vectors[candidates] @ query

    # -------------------------------------------------------------- labels so far
    def entry_row(self, path: str) -> int | None:
        """The index row a CSV or request path names (relative to the catalogue root, or absolute inside it)."""
        row = self.row_of.get(path)
        if row is None and os.path.isabs(path):
            relative = os.path.relpath(path, self.index.root)
            row = self.row_of.get(Path(relative).as_posix()) if not relative.startswith("..") else None
        return row

    def label_state(self) -> LabelState:
        self.writer.sync()
        per_anchor = np.zeros(len(self.index), np.float64)
        asked: dict[int, set[frozenset[int]]] = defaultdict(set)
        per_annotator: Counter[str] = Counter()
        triplets = self.writer.triplets
        for triplet in triplets:
            per_annotator[triplet.annotator] += 1
            rows = [self.entry_row(path) for path in triplet.key]
            if rows[0] is None:
                continue
            per_anchor[rows[0]] += 1
            if rows[1] is not None and rows[2] is not None:
                asked[rows[0]].add(frozenset(rows[1:]))
        return LabelState(per_anchor, asked, per_annotator, len(triplets))

    # -------------------------------------------------------------- choosing questions
    def anchor_order(self, state: LabelState) -> np.ndarray:
        """Photos never asked first; among them (and later among all) the cluster with the fewest labels per member,
        then its least-labelled or -skipped photo, nearest the centroid first: clusters take turns, and every photo
        is an anchor once before any is asked again."""
        with self._lock:
            skips = np.zeros(len(self.index))
            for row, count in self._skips.items():
                skips[row] = count
        load = state.per_anchor + skips
        clusters = int(self.cluster_of.max()) + 1
        cluster_load = np.bincount(self.cluster_of, weights=load, minlength=clusters) / self.cluster_sizes
        return np.lexsort((self.centroid_rank, load, cluster_load[self.cluster_of], load > 0))

    def candidates_for(self, anchor: int, asked: set[frozenset[int]]) -> list[int] | None:
        """The ``CANDIDATES_SHOWN`` consecutive neighbours with the closest model scores that still hold an unasked
        pair; None when every pair near this anchor was asked."""
        depth = min(NEIGHBOURS_SCANNED + 1, len(self.index))
        _, found = self.index.search(self.index.vectors[anchor][None, :], depth)
        rows = np.array([row for row in found[0] if row >= 0 and row != anchor][:NEIGHBOURS_SCANNED], np.int64)
        if len(rows) < 2:
            return None
        scores = self.model_scores(anchor, rows)
        order = np.argsort(-scores, kind="stable")
        rows, scores = rows[order], scores[order]
        width = min(CANDIDATES_SHOWN, len(rows))
        best: tuple[float, int] | None = None
        for start in range(len(rows) - width + 1):
            window = rows[start : start + width]
            if all(frozenset(pair) in asked for pair in itertools.combinations(window.tolist(), 2)):
                continue
            spread = float(scores[start] - scores[start + width - 1])
            if best is None or spread < best[0]:
                best = (spread, start)
        if best is None:
            return None
        return rows[best[1] : best[1] + width].tolist()

    def next_question(self, annotator: str) -> dict[str, Any]:
        state = self.label_state()
        now = time.monotonic()
        with self._lock:
            self._leases = {
                row: lease for row, lease in self._leases.items() if lease[1] > now and lease[0] != annotator
            }
            leased, exhausted, allowed = set(self._leases), set(self._exhausted), self._allowed
        order = [
            row
            for row in self.anchor_order(state).tolist()
            if row not in exhausted and (allowed is None or row in allowed)
        ]
        # Anchors on another annotator's screen come last: better asked twice than telling someone to stop.
        order = [row for row in order if row not in leased] + [row for row in order if row in leased]
        for anchor in order[:ANCHOR_TRIES]:
            asked = state.asked.get(anchor, set())
            candidates = self.candidates_for(anchor, asked)
            if candidates is None:
                with self._lock:
                    self._exhausted.add(anchor)
                continue
            with self._lock:
                self._leases[anchor] = (annotator, now + LEASE_SECONDS)
            display = candidates[:]
            random.Random(f"{anchor}:{state.total}:{annotator}").shuffle(display)  # no position bias from the ranking
            shown = set(display)
            return {
                "done": False,
                "anchor": self.describe(anchor),
                "candidates": [self.describe(row) for row in display],
                "asked": [[self.index.entries[row].path for row in sorted(pair)] for pair in asked if pair <= shown],
                **self.counts(state, annotator),
            }
        finished = len(order) <= ANCHOR_TRIES
        message = (
            "Nothing left to ask: every pair near every anchor has an answer."
            if finished
            else "Almost every nearby pair has an answer; press Space to look further."
        )
        return {"done": finished, "retry": not finished, "message": message, **self.counts(state, annotator)}

    def describe(self, row: int) -> dict[str, Any]:
        return {"path": self.index.entries[row].path, "image": f"image/{row}"}  # relative to the page, /label/

    def counts(self, state: LabelState, annotator: str) -> dict[str, Any]:
        return {
            "counts": {"you": state.per_annotator.get(annotator, 0), "total": state.total},
            "model": self.model_note,
            "catalogue": len(self.index),
        }

    # -------------------------------------------------------------- actions
    def submit(self, annotator: str, anchor: str, near: str, far: str) -> dict[str, Any]:
        rows = [self.entry_row(path) for path in (anchor, near, far)]
        unknown = [path for path, row in zip((anchor, near, far), rows, strict=True) if row is None]
        if unknown:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"not a catalogue image of this index: {unknown[0]!r}")
        if len(set(rows)) < 3:
            raise RequestError(HTTPStatus.BAD_REQUEST, "anchor, near and far must be three different images")
        paths = [self.index.entries[row].path for row in rows]  # type: ignore[index]
        written = self.writer.append(Triplet(*paths, annotator=annotator))
        state = self.label_state()
        return {"ok": True, "written": written, **self.counts(state, annotator)}

    def undo(self, annotator: str) -> dict[str, Any]:
        removed = self.writer.remove_last(annotator)
        with self._lock:
            self._exhausted.clear()  # the undone pair can be asked again
        state = self.label_state()
        gone = None if removed is None else {"anchor": removed.anchor, "near": removed.near, "far": removed.far}
        return {"ok": True, "removed": gone, **self.counts(state, annotator)}

    def skip(self, annotator: str, anchor: str) -> dict[str, Any]:
        """An anchor the annotator passed on goes to the back of the queue (in memory; nothing is written)."""
        row = self.entry_row(anchor)
        if row is None:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"not a catalogue image of this index: {anchor!r}")
        with self._lock:
            self._skips[row] += 1
            if self._leases.get(row, ("", 0.0))[0] == annotator:
                del self._leases[row]
        return {"ok": True}

    # -------------------------------------------------------------- files served
    def page(self, nonce: str) -> bytes:
        return self._page_template.replace("__NONCE__", nonce).encode("utf-8")

    def image(self, row: int) -> bytes:
        """A JPEG thumbnail of one index entry, only if its real path is inside the catalogue root."""
        return self.thumbnails.get(row)


class CatalogThumbnails:
    """JPEG thumbnails of index rows, only where the row's real path is inside the catalogue folder (no path from
    a client is ever opened); the most recently served are kept. The labelling and search pages share it."""

    def __init__(self, index: CatalogIndex) -> None:
        self.index = index
        self.root_real = os.path.realpath(index.root)
        self._cache: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, row: int, side: int = THUMBNAIL_SIDE) -> bytes:
        if not 0 <= row < len(self.index):
            raise RequestError(HTTPStatus.NOT_FOUND, "no such catalogue image")
        with self._lock:
            cached = self._cache.get((row, side))
            if cached is not None:
                self._cache.move_to_end((row, side))
                return cached
        real = os.path.realpath(os.path.join(self.index.root, self.index.entries[row].path))
        if os.path.commonpath([real, self.root_real]) != self.root_real or real == self.root_real:
            raise RequestError(HTTPStatus.FORBIDDEN, "that catalogue entry points outside the catalogue folder")
        if not os.path.isfile(real):
            raise RequestError(HTTPStatus.NOT_FOUND, "catalogue image missing on disk; re-run `tiefwatch index`")
        data = make_thumbnail(Path(real), side)
        with self._lock:
            self._cache[(row, side)] = data
            while len(self._cache) > THUMBNAIL_CACHE:
                self._cache.popitem(last=False)
        return data


def make_thumbnail(path: Path, side: int = THUMBNAIL_SIDE) -> bytes:
    """Catalogue photos can be large; a few hundred pixels is all a judgement needs and keeps the page fast. Read
    by the shared reader, so a served picture is decoded (and refused) exactly as the index read it."""
    from PIL import Image

    try:
        pixels = load_image(path, max_side=side)
    except ImageReadError as error:
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"unreadable image: {error.reason}") from error
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


def cluster_catalogue(vectors: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means over the index vectors (about sqrt(N) clusters): the cluster of each row and its rank by distance
    to its centroid within the cluster, so anchors can be drawn in turn from every kind of watch in the catalogue."""
    count = len(vectors)
    clusters = int(min(MAX_CLUSTERS, max(1, round(np.sqrt(count)))))
    if count <= 3 or clusters == 1:
        return np.zeros(count, np.int64), np.arange(count)
    kmeans = faiss.Kmeans(vectors.shape[1], clusters, niter=12, seed=seed, spherical=True, verbose=False)
    kmeans.cp.min_points_per_centroid = 1
    kmeans.cp.max_points_per_centroid = 64  # train on a sample: seconds even for 100k photos on two cores
    kmeans.train(np.ascontiguousarray(vectors, dtype=np.float32))
    distances, assigned = kmeans.index.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
    cluster_of = assigned[:, 0].astype(np.int64)
    order = np.lexsort((distances[:, 0], cluster_of))
    first_of_cluster = np.searchsorted(cluster_of[order], cluster_of[order])
    centroid_rank = np.empty(count, np.int64)
    centroid_rank[order] = np.arange(count) - first_of_cluster
    return cluster_of, centroid_rank


# ---------------------------------------------------------------------------- request checks
def text_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"field {name!r} must be a non-empty string")
    return value


def annotator_name(value: Any) -> str:
    if not isinstance(value, str) or not ANNOTATOR_PATTERN.fullmatch(value.strip()):
        raise RequestError(
            HTTPStatus.BAD_REQUEST, "annotator must be 1-64 letters, digits, spaces or . @ - _ (no commas or quotes)"
        )
    return value.strip()


def _file_stamp(path: Path) -> tuple[str, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (str(path), stat.st_mtime_ns, stat.st_size)


# ---------------------------------------------------------------------------- entry points
def make_server(
    workspace: Workspace,
    config: Config,
    triplets_path: Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
) -> tuple[WebServer, LabelApp]:
    """A bound (not yet serving) web server with the labelling page at ``/label/``, and its app; ``port=0`` picks
    a free port. The same FastAPI app as ``tiefwatch serve``, without the search.

    Refuses a non-loopback ``host`` without a token: anyone on the network could otherwise write labels.
    """
    from tiefwatch.web.app import create_app
    from tiefwatch.web.server import WebServer

    web = create_app(workspace, config, token=token, host=host, search=False, label_triplets=Path(triplets_path))
    server = WebServer(web, host, port)
    return server, web.state.tiefwatch.label_app


def server_url(server: WebServer, app: LabelApp) -> str:
    return server.url(app.token, path="/label/")


def serve_labelling(
    workspace: Workspace,
    config: Config,
    triplets_path: Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    open_browser: bool = False,
    ready: threading.Event | None = None,
) -> None:
    """Serve the labelling page until interrupted (Ctrl-C); ``ready`` is set once the server is bound."""
    server, app = make_server(workspace, config, triplets_path, host=host, port=port, token=token)
    url = server_url(server, app)
    print(
        f"labelling {len(app.index)} catalogue photos into {triplets_path} ({len(app.writer)} triplets so far)\n"
        f"open {url}   (Ctrl-C stops; every saved triplet is already on disk)",
        file=sys.stderr,
    )
    if open_browser:
        webbrowser.open(url)
    if ready is not None:
        ready.set()
    try:
        server.serve_forever()
    finally:
        server.server_close()
