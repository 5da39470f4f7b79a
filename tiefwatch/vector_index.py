"""FAISS structures over unit-length vectors (inner product = cosine), chosen by catalogue size or config.

Flat search is exact and fast enough for tens of thousands of watches. Large catalogues use an approximate index
for candidates - IVF (SQ8 or PQ codes) over a PCA projection, or HNSW - and the candidates are re-scored exactly
against the stored vectors, so the order a user sees is the exact cosine order of whatever the index found. The
approximate index is trained from the vectors themselves and its search depth (``nprobe`` / ``efSearch``) is tuned
at build time to a recall target, so a user never tunes FAISS by hand.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import faiss
import numpy as np

from tiefwatch.config import IndexConfig

INDEX_TYPES = ("auto", "flat", "hnsw", "ivf")
TUNING_QUERIES = 256
TUNING_K = 10
TUNING_NOISE = 0.5  # query = vector + noise of this norm, renormalised: cosine ~0.9 to its source, like a re-shot photo


@dataclass
class Tuning:
    """What the build-time tuning chose and the recall@10 of exact search it measured there."""

    kind: str
    depth: int  # nprobe (ivf) or efSearch (hnsw); 0 for flat
    recall: float
    refine: int  # candidates re-scored exactly: k * refine


def resolve_index_type(config: IndexConfig, count: int) -> str:
    if config.type not in INDEX_TYPES:
        raise ValueError(f"unknown index type {config.type!r}; use one of {INDEX_TYPES}")
    if config.type != "auto":
        return config.type
    return "flat" if count < config.auto_flat_below else "ivf"


def ivf_lists(config: IndexConfig, count: int) -> int:
    """About sqrt(N) lists (1,000 at a million): the low end of FAISS's advice, because k-means on 2 cores is the
    build's cost; the tuned nprobe makes up the recall. At least 39 training points per list."""
    return config.ivf_nlist or max(1, min(count // 39, round(math.sqrt(count))))


def build_faiss_index(vectors: np.ndarray, config: IndexConfig, seed: int = 0) -> faiss.Index:
    """An index over ``vectors`` (rows are ids 0..N-1) of the configured or size-appropriate type, trained, filled
    and tuned; ``build_tuned`` also returns what the tuning chose."""
    return build_tuned(vectors, config, seed)[0]


def build_tuned(vectors: np.ndarray, config: IndexConfig, seed: int = 0) -> tuple[faiss.Index, Tuning]:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    count, dim = vectors.shape
    kind = resolve_index_type(config, count)
    if kind == "flat" or count == 0:
        return flat_index(vectors), Tuning("flat", 0, 1.0, 1)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.hnsw_ef_construction
    else:
        index = _untrained_ivf(dim, count, config)
        index.train(_training_sample(vectors, ivf_lists(config, count), seed))
    index.add(vectors)
    return index, tune(index, vectors, config, seed)


def flat_index(vectors: np.ndarray) -> faiss.IndexFlatIP:
    """Exact inner-product search over ``vectors`` (N, D)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index


def refill(trained: faiss.Index, vectors: np.ndarray, config: IndexConfig, seed: int = 0) -> tuple[faiss.Index, Tuning]:
    """The same trained structure holding ``vectors`` instead: an incremental update keeps the codebooks (the
    costly part at scale) and only re-adds; a different kind or size class trains afresh."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    wanted = resolve_index_type(config, len(vectors))
    if wanted != index_kind(trained) or wanted != "ivf" or trained.d != vectors.shape[1]:
        return build_tuned(vectors, config, seed)
    index = faiss.clone_index(trained)
    index.reset()
    index.add(vectors)
    return index, tune(index, vectors, config, seed)


def _untrained_ivf(dim: int, count: int, config: IndexConfig) -> faiss.Index:
    """PCA to ``pca_dim``, then IVF with ``ivf_codes`` (SQ8: one byte a dimension, nothing to train; PQn: n bytes),
    in L2: for unit vectors L2 order is cosine order, and L2 (unlike inner product) survives the PCA's centring."""
    reduced = min(config.pca_dim or dim, dim)
    codes = config.ivf_codes
    if codes.startswith("PQ") and reduced % int(codes[2:].split("x")[0]):
        raise ValueError(f"index.ivf_codes={codes} must divide the indexed vector size {reduced}")
    prefix = f"PCA{reduced}," if reduced < dim else ""
    try:
        return faiss.index_factory(dim, f"{prefix}IVF{ivf_lists(config, count)},{codes}", faiss.METRIC_L2)
    except RuntimeError as error:
        raise ValueError(f"index.ivf_codes={codes!r} is not a FAISS code (try SQ8, SQfp16 or PQ32)") from error


def _training_sample(vectors: np.ndarray, lists: int, seed: int) -> np.ndarray:
    """k-means needs ~39-256 points per list and the PCA a few times its size; more only costs time."""
    limit = max(lists * 39, 20_000)
    if len(vectors) <= limit:
        return vectors
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), size=limit, replace=False))
    return vectors[rows]


def index_kind(index: faiss.Index) -> str:
    if isinstance(index, faiss.IndexHNSWFlat):
        return "hnsw"
    if isinstance(index, faiss.IndexFlat):
        return "flat"
    return "ivf"


def set_depth(index: faiss.Index, depth: int) -> None:
    kind = index_kind(index)
    if kind == "hnsw":
        index.hnsw.efSearch = int(depth)
    elif kind == "ivf":
        faiss.extract_index_ivf(index).nprobe = int(depth)


def get_depth(index: faiss.Index) -> int:
    kind = index_kind(index)
    if kind == "hnsw":
        return int(index.hnsw.efSearch)
    if kind == "ivf":
        return int(faiss.extract_index_ivf(index).nprobe)
    return 0


def search(
    index: faiss.Index, vectors: np.ndarray, queries: np.ndarray, k: int, refine: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (cosine scores, rows); an approximate index returns ``k·refine`` candidates that are re-scored
    exactly against ``vectors``. Rows are -1 where fewer than ``k`` were found."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if index_kind(index) == "flat":
        return index.search(queries, k)
    depth = min(max(k, k * max(1, refine)), max(1, index.ntotal))
    _, candidates = index.search(queries, depth)
    valid = candidates >= 0
    gathered = vectors[np.where(valid, candidates, 0)]
    exact = np.einsum("qcd,qd->qc", gathered, queries)
    exact[~valid] = -np.inf
    order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(exact, order, axis=1)
    rows = np.take_along_axis(candidates, order, axis=1)
    rows[~np.isfinite(scores)] = -1
    scores[~np.isfinite(scores)] = -1.0
    if k > depth:  # a catalogue smaller than k: pad like FAISS does
        pad = k - depth
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-1.0)
        rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
    return scores.astype(np.float32), rows


def tuning_queries(vectors: np.ndarray, count: int = TUNING_QUERIES, seed: int = 0) -> np.ndarray:
    """Perturbed copies of stored vectors: queries near the catalogue but not in it, as a photo of a stocked watch."""
    rng = np.random.default_rng(seed + 1)
    rows = rng.choice(len(vectors), size=min(count, len(vectors)), replace=False)
    noise = rng.normal(size=(len(rows), vectors.shape[1])).astype(np.float32)
    noise *= TUNING_NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
    queries = vectors[rows] + noise
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int, block: int = 65_536) -> np.ndarray:
    """Exact top-``k`` rows by inner product, blockwise so a million vectors need no second copy."""
    best_scores = np.full((len(queries), 0), -np.inf, np.float32)
    best_rows = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(vectors), block):
        scores = queries @ vectors[start : start + block].T
        take = min(k, scores.shape[1])
        part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        best_scores = np.hstack([best_scores, np.take_along_axis(scores, part, axis=1)])
        best_rows = np.hstack([best_rows, part + start])
        keep = np.argsort(-best_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(best_scores, keep, axis=1)
        best_rows = np.take_along_axis(best_rows, keep, axis=1)
    return best_rows


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the exact top-k that the approximate top-k contains."""
    k = truth.shape[1]
    hits = sum(len(set(f[:k].tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


REFINE_STEPS = (1, 2, 5, 10)  # multiples of ``index.refine`` the tuning may use when depth alone falls short


def tune(index: faiss.Index, vectors: np.ndarray, config: IndexConfig, seed: int = 0) -> Tuning:
    """Set the cheapest (search depth, refine) whose recall@10 of exact search reaches ``config.target_recall`` on
    perturbed catalogue vectors, timed on those queries; a configured depth is kept as it is. Where nothing
    reaches the target, the deepest, widest setting is kept and its recall reported."""
    kind = index_kind(index)
    fixed = config.ivf_nprobe if kind == "ivf" else config.hnsw_ef_search
    if kind == "ivf":
        lists = faiss.extract_index_ivf(index).nlist
        depths = [d for d in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024) if d < lists] + [lists]
    else:
        depths = [16, 32, 64, 128, 256, 512, 1024]
    if fixed:
        depths = [fixed]
    k = min(TUNING_K, len(vectors))
    queries = tuning_queries(vectors, seed=seed)
    truth = exact_top(vectors, queries, k)
    reached: list[tuple[float, int, int, float]] = []  # (seconds, depth, refine, recall)
    fallback = (0.0, depths[-1], config.refine * REFINE_STEPS[-1], 0.0)
    for refine in (config.refine * step for step in REFINE_STEPS):
        for depth in depths:
            set_depth(index, depth)
            started = time.perf_counter()
            _, rows = search(index, vectors, queries, k, refine)
            seconds = time.perf_counter() - started
            recall = recall_at(rows, truth)
            fallback = (seconds, depth, refine, recall) if recall >= fallback[3] else fallback
            if recall >= config.target_recall:
                reached.append((seconds, depth, refine, recall))
                break
    _, depth, refine, recall = min(reached) if reached else fallback
    set_depth(index, depth)
    return Tuning(kind, get_depth(index), recall, refine)


def serialize(index: faiss.Index) -> np.ndarray:
    return faiss.serialize_index(index)


def deserialize(data: np.ndarray, config: IndexConfig, depth: int | None = None) -> faiss.Index:
    """Load an index; the tuned ``depth`` saved beside it (or a configured one) is set again."""
    index = faiss.deserialize_index(np.asarray(data, dtype=np.uint8))
    kind = index_kind(index)
    configured = config.ivf_nprobe if kind == "ivf" else config.hnsw_ef_search if kind == "hnsw" else 0
    if configured or depth:
        set_depth(index, configured or depth or 0)
    return index
