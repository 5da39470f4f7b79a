"""The re-ranker a search runs: the learned projection as a numpy matrix, no torch per call or per process.

A trained ``SimilarityNet`` (``ranking.similarity``) is a bias-free linear map, so at search time it is one
(K+1, D) x (D, d) product, plus a (K+1, D) x (D, V) one where the model has attribute heads
(``ranking.attributes``). Its checkpoint is a torch file; the first load writes the matrix and what the
search needs beside it into a small ``.npz`` cache keyed by the checkpoint's bytes, and later processes read
that instead, without importing torch.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ranking.attributes import AttributeHeads
from ranking.colour import ColourScaling
from ranking.engines import write_cache_file

if TYPE_CHECKING:
    from ranking.similarity import SimilarityNet

CACHE_VERSION = 3  # 2: attribute heads; 3: colour descriptors
DEFAULT_MODEL = Path(__file__).resolve().parent / "weights" / "similarity_default.pt"  # see benchmarks/judged


@functools.lru_cache(maxsize=1)
def _blas_controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # only a speed guard; scikit-learn brings it
        return None
    return ThreadpoolController()


@contextlib.contextmanager
def _single_blas_thread() -> Iterator[None]:
    """One BLAS thread for one small product: on a busy two-core machine a threaded (100, 1280) x (1280, 256)
    product measured 5 ms median and 40 ms at the 90th percentile, single-threaded 1.5 ms flat."""
    controller = _blas_controller()
    if controller is None:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield


class SimilarityReranker:
    """The ``Reranker`` protocol on a trained projection: numpy in, numpy out.

    ``projection`` is the net's (d, D) weight; ``raw_weight`` the share of the raw cosine in the score;
    ``signature`` the embedding signature the model was trained on, when known; ``attributes`` the attribute heads
    and ``attribute_weight`` the share of their expected agreement in the score.

    With ``colour`` (``ranking.colour``) the model's inputs are a backbone vector with the crop's colour descriptor
    after it (``inputs``): the projection and heads see both, the raw cosine the backbone part alone.
    """

    def __init__(
        self,
        projection: np.ndarray,
        fingerprint: str,
        signature: dict[str, Any] | None = None,
        raw_weight: float = 0.0,
        attributes: AttributeHeads | None = None,
        attribute_weight: float = 0.0,
        colour: ColourScaling | None = None,
    ) -> None:
        projection = np.asarray(projection, np.float32)
        self._projection_t = np.ascontiguousarray(projection.T)  # (D, d)
        self.input_dim = projection.shape[1]
        self.colour = colour
        self.colour_dim = colour.dim if colour is not None else 0
        self.raw_dim = self.input_dim - self.colour_dim  # the backbone vector's part of an input row
        if self.raw_dim <= 0:
            raise ValueError(f"a {self.input_dim}-d projection has no room for {self.colour_dim} colour numbers")
        self.fingerprint = fingerprint
        self.signature = signature
        self.raw_weight = float(raw_weight)
        if attributes is not None and attributes.input_dim != self.input_dim:
            raise ValueError(f"attribute heads take {attributes.input_dim}-d vectors, the projection {self.input_dim}")
        self.attributes = attributes
        self.attribute_weight = float(attribute_weight) if attributes is not None else 0.0
        # search-time settings (``rerank.expand``, ``rerank.expand_alpha``), not part of the model
        self.expand = 0
        self.expand_alpha = 3.0
        _blas_controller()  # found once here (about 10 ms), not inside the first query

    @classmethod
    def from_net(cls, net: SimilarityNet, colour: ColourScaling | None = None) -> SimilarityReranker:
        from ranking.similarity import fingerprint

        return cls(net.projection.weight.detach().cpu().float().numpy(), fingerprint(net), colour=colour)

    def with_attributes(self, attributes: AttributeHeads | None, weight: float) -> SimilarityReranker:
        """The same projection and raw share with these heads at this share (a candidate blend to try)."""
        other = SimilarityReranker(
            self._projection_t.T, self.fingerprint, self.signature, self.raw_weight, attributes, weight, self.colour
        )
        other.expand, other.expand_alpha = self.expand, self.expand_alpha
        return other

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> SimilarityReranker:
        from ranking.similarity import attribute_state, colour_state, from_checkpoint

        colour = colour_state(checkpoint)
        scaling = None if colour is None else ColourScaling.from_state(colour)
        reranker = cls.from_net(from_checkpoint(checkpoint), scaling)
        meta = checkpoint.get("meta", {})
        reranker.signature = meta.get("signature")
        reranker.raw_weight = float(meta.get("raw_weight") or 0.0)
        state = attribute_state(checkpoint)
        if state is not None:
            reranker.attributes = AttributeHeads.from_state(state)
            reranker.attribute_weight = float(meta.get("attribute_weight") or 0.0)
        reranker.fingerprint = checkpoint.get("fingerprint", reranker.fingerprint)  # covers heads and colour too
        return reranker

    @classmethod
    def load(cls, path: str | Path, cache_dir: Path | None = None) -> SimilarityReranker:
        """A checkpoint file, through the numpy cache in ``cache_dir`` when there is one (no torch then)."""
        data = Path(path).read_bytes()
        cached = cache_dir / f"similarity-{hashlib.sha256(data).hexdigest()[:16]}.npz" if cache_dir else None
        if cached is not None and cached.exists():
            try:
                return cls.from_npz(cached)
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache entry is rebuilt from the checkpoint below
        import torch

        reranker = cls.from_checkpoint(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
        if cached is not None:
            write_cache_file(cached, reranker.npz_bytes())
        return reranker

    def npz_bytes(self) -> bytes:
        meta: dict[str, Any] = {
            "version": CACHE_VERSION,
            "fingerprint": self.fingerprint,
            "signature": self.signature,
            "raw_weight": self.raw_weight,
        }
        arrays = {"projection": self._projection_t.T}
        if self.colour is not None:
            arrays |= {f"colour_{name}": value for name, value in self.colour.to_state().items()}
        if self.attributes is not None:
            state = self.attributes.to_state()
            meta |= {"attribute_weight": self.attribute_weight, "attributes": [state["names"], state["values"]]}
            for number, (weight, bias) in enumerate(zip(state["weights"], state["biases"], strict=True)):
                arrays |= {f"attribute_weight_{number}": weight, f"attribute_bias_{number}": bias}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
        return buffer.getvalue()

    @classmethod
    def from_npz(cls, path: Path) -> SimilarityReranker:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("version") != CACHE_VERSION:
                raise ValueError(f"{path}: cache version {meta.get('version')}")
            attributes = None
            if meta.get("attributes"):
                names, values = meta["attributes"]
                attributes = AttributeHeads.from_state(
                    {
                        "names": names,
                        "values": values,
                        "weights": [data[f"attribute_weight_{i}"] for i in range(len(names))],
                        "biases": [data[f"attribute_bias_{i}"] for i in range(len(names))],
                    }
                )
            colour = None
            if "colour_mean" in data:
                colour = ColourScaling.from_state({"mean": data["colour_mean"], "scale": data["colour_scale"]})
            return cls(
                data["projection"],
                meta["fingerprint"],
                meta["signature"],
                meta["raw_weight"],
                attributes,
                meta.get("attribute_weight", 0.0),
                colour,
            )

    def inputs(self, vectors: np.ndarray, colours: np.ndarray | None = None) -> np.ndarray:
        """What ``score`` and ``embed`` take: backbone vectors (N, D), with their colour descriptors (N, C) after
        them where the model uses colour. A model that does and no colours is a clear error, not a silent guess."""
        return join_colours(vectors, colours, self.colour)

    def prepare(self, inputs: np.ndarray) -> np.ndarray:
        """Input rows -> what the projection and heads were trained on (``prepare_inputs``)."""
        return prepare_inputs(inputs, self.colour)

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """(K, D) -> (K, d) unit rows in the learned space; the numpy twin of ``SimilarityNet.forward``."""
        return self._project_prepared(self.prepare(vectors))

    def _project_prepared(self, prepared: np.ndarray) -> np.ndarray:
        x = prepared / np.maximum(np.linalg.norm(prepared, axis=-1, keepdims=True), 1e-12)
        y = x @ self._projection_t
        return y / np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-12)

    def embed(self, vectors: np.ndarray) -> np.ndarray:
        """(K, D) -> rows whose dot products are the re-ranking score: the raw unit vector scaled by
        sqrt(raw_weight) beside the learned one scaled by sqrt(1 - raw_weight) (just the learned one when 0);
        with attribute heads, that scaled by sqrt(1 - attribute_weight) beside their probabilities scaled by
        sqrt(attribute_weight), so the score adds attribute_weight x the expected share of attributes in common."""
        prepared = self.prepare(vectors)
        embedded = self.cosines_prepared(prepared)
        if self.attributes is None or not self.attribute_weight:
            return embedded
        w = self.attribute_weight
        attributes = self.attributes.embed(prepared)
        return np.hstack([np.sqrt(1.0 - w) * embedded, np.sqrt(w) * attributes]).astype(np.float32)

    def predict_attributes(self, vectors: np.ndarray) -> list[dict[str, tuple[str, float]]]:
        """Per input row, each attribute's most likely value and its probability (``AttributeHeads.predict``)."""
        if self.attributes is None:
            raise ValueError("this similarity model has no attribute heads")
        return self.attributes.predict(self.prepare(vectors))

    def embed_cosines(self, vectors: np.ndarray) -> np.ndarray:
        """``embed`` without the attribute columns: the raw and learned cosine blend alone."""
        return self.cosines_prepared(self.prepare(vectors))

    def cosines_prepared(self, prepared: np.ndarray) -> np.ndarray:
        """``embed_cosines`` of rows already ``prepare``-d: what attribute heads are fitted beside, in training."""
        learned = self._project_prepared(prepared)
        if not self.raw_weight:
            return learned
        x = np.asarray(prepared, np.float32)[..., : self.raw_dim]
        raw = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        return np.hstack([np.sqrt(self.raw_weight) * raw, np.sqrt(1.0 - self.raw_weight) * learned]).astype(np.float32)

    def score(self, query: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Similarity of one query (D,) to each of K candidates (K, D): (K,) float32, higher = closer; the learned
        cosine, blended with the raw one by ``raw_weight``, of the query as ``expand`` widens it."""
        candidates = np.asarray(candidates, np.float32).reshape(-1, self.input_dim)
        if not len(candidates):
            return np.zeros(0, np.float32)
        with _single_blas_thread():
            embedded = self.embed(np.vstack([np.asarray(query, np.float32).reshape(1, -1), candidates]))
        return embedded[1:] @ self.widen(embedded[0], embedded[1:])

    def widen(self, query: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """A query row of ``embed`` widened by its ``expand`` closest candidate rows (``expand_query``), except
        for the raw cosine's share, which stays the query's own: that share is what keeps the exact watch near the
        top, and widening it too cost recall@5 of the retrieval benchmark's photos 0.017 against 0.007."""
        widened = expand_query(query, candidates, self.expand, self.expand_alpha)
        if self.expand and self.raw_weight:
            widened[: self.raw_dim] = query[: self.raw_dim]
        return widened


def expand_query(query: np.ndarray, candidates: np.ndarray, count: int, alpha: float = 3.0) -> np.ndarray:
    """The query row plus its ``count`` closest candidate rows, each weighted by its score to the query raised to
    ``alpha`` (alpha query expansion, Radenovic et al., TPAMI 2018), scaled back to the query's length.

    Why: a phone photo's colours and outline are less sure than a catalogue photo's, and its closest catalogue
    photos (usually the watch itself, when the shop has it) describe it more cleanly; the query still counts most,
    with weight 1 against at most 1 for a candidate as close as the query is to itself."""
    query = np.asarray(query, np.float32)
    if count <= 0 or not len(candidates):
        return query
    own = float(query @ query)
    scores = candidates @ query
    top = np.argsort(-scores, kind="stable")[:count]
    weights = np.clip(scores[top] / max(own, 1e-12), 0.0, None) ** alpha
    expanded = query + weights @ candidates[top]
    return (expanded * np.sqrt(own / max(float(expanded @ expanded), 1e-12))).astype(np.float32)


def join_colours(vectors: np.ndarray, colours: np.ndarray | None, colour: ColourScaling | None) -> np.ndarray:
    """Input rows for a model with this colour scaling: the vectors alone where it has none, else each vector with
    its colour descriptor after it; missing descriptors are a clear error, not a silent guess."""
    vectors = np.asarray(vectors, np.float32)
    if colour is None:
        return vectors
    if colours is None or np.asarray(colours).shape[-1] != colour.dim:
        raise ValueError(
            "this similarity model compares colour descriptors, and the index has none: re-run `tiefwatch index`"
        )
    return np.concatenate([vectors, np.asarray(colours, np.float32)], axis=-1)


def prepare_inputs(inputs: np.ndarray, colour: ColourScaling | None) -> np.ndarray:
    """Re-ranker input rows -> what its projection and heads see: the unit backbone vector, then the colour
    descriptor scaled by ``colour`` (``ColourScaling``); without colour, the rows as they are (both normalise)."""
    x = np.asarray(inputs, np.float32)
    if colour is None:
        return x
    raw_dim = x.shape[-1] - colour.dim
    raw = x[..., :raw_dim]
    raw = raw / np.maximum(np.linalg.norm(raw, axis=-1, keepdims=True), 1e-12)
    return np.concatenate([raw, colour.apply(x[..., raw_dim:])], axis=-1).astype(np.float32)


def keep_nearest_order(scores: np.ndarray, keep_nearest: int, within: int, pin_nearest: bool = False) -> np.ndarray:
    """Candidates, given nearest first as FAISS returns them, in order of ``scores`` (highest first), except that
    the first ``keep_nearest`` of them all stay within the first ``within`` places, and with ``pin_nearest`` the
    nearest of all takes the first place (``sure_of_nearest`` says when).

    Why: what people judge alike is not always the same watch, and a re-ranker trained on their judgement can push
    the exact watch off the first page (benchmarks.md, retrieval sections). This keeps the backbone's nearest
    matches on the page without touching its top: where some are missing, they take the last places of the page in
    re-ranked order, and the re-ranked candidates they displace follow the page. With ``keep_nearest`` no more than
    ``within - keep_nearest`` (5 within 10), the first ``within - keep_nearest`` places are the re-ranker's alone.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    if pin_nearest and len(order):
        order = np.concatenate([[0], order[order != 0]])
    page = min(within, len(order))
    keep = min(keep_nearest, page)
    if keep <= 0:
        return order
    head = order[:page]
    missing = order[page:][order[page:] < keep]  # nearest ones off the page, in re-ranked order
    if not len(missing):
        return order
    others = np.flatnonzero(head >= keep)
    displaced = head[others[len(others) - len(missing) :]]  # the page's last re-ranked picks make room
    kept_head = head[~np.isin(head, displaced)]
    return np.concatenate([kept_head, missing, displaced, order[page:][order[page:] >= keep]])


def sure_of_nearest(faiss_scores: np.ndarray, margin: float) -> bool:
    """Whether the backbone's nearest candidate is closer to the query than the next by at least ``margin`` of
    cosine (candidates nearest first, as FAISS returns them; ``margin`` 0 = never).

    Why: a photo of a watch the shop has usually lies much closer to that watch's catalogue photo than to any other,
    and there the exact watch is what the person wants first; the re-ranker, trained on what people judge alike,
    sometimes put a look-alike above it (benchmarks.md, retrieval and conditions sections)."""
    scores = np.asarray(faiss_scores, np.float32)
    return margin > 0 and len(scores) > 1 and float(scores[0] - scores[1]) >= margin
