"""FAISS structures over unit-length vectors (inner product = cosine), chosen by catalogue size or config.

Flat search is exact and fast enough for thousands of watches; large catalogues need HNSW or IVF-PQ, which
are trained here from the vectors themselves so a user never tunes FAISS by hand.
"""

from __future__ import annotations

import math

import faiss
import numpy as np

from tiefwatch.config import IndexConfig

INDEX_TYPES = ("auto", "flat", "hnsw", "ivfpq")


def resolve_index_type(config: IndexConfig, count: int) -> str:
    if config.type not in INDEX_TYPES:
        raise ValueError(f"unknown index type {config.type!r}; use one of {INDEX_TYPES}")
    if config.type != "auto":
        return config.type
    return "flat" if count < config.auto_flat_below else "hnsw"


def build_faiss_index(vectors: np.ndarray, config: IndexConfig) -> faiss.Index:
    """An index over ``vectors`` (rows are ids 0..N-1) of the configured or size-appropriate type."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    count, dim = vectors.shape
    kind = resolve_index_type(config, count)
    if kind == "flat" or count == 0:
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.hnsw_ef_construction
        index.hnsw.efSearch = config.hnsw_ef_search
    else:
        nlist = config.ivf_nlist or max(1, min(count // 39, int(4 * math.sqrt(count))))
        if dim % config.pq_m:
            raise ValueError(f"index.pq_m={config.pq_m} must divide the vector size {dim}")
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, config.pq_m, 8, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = config.ivf_nprobe
    if count:
        index.add(vectors)
    return index


def index_kind(index: faiss.Index) -> str:
    if isinstance(index, faiss.IndexHNSWFlat):
        return "hnsw"
    if isinstance(index, faiss.IndexIVFPQ):
        return "ivfpq"
    return "flat"


def serialize(index: faiss.Index) -> np.ndarray:
    return faiss.serialize_index(index)


def deserialize(data: np.ndarray, config: IndexConfig) -> faiss.Index:
    index = faiss.deserialize_index(np.asarray(data, dtype=np.uint8))
    if isinstance(index, faiss.IndexHNSWFlat):
        index.hnsw.efSearch = config.hnsw_ef_search
    elif isinstance(index, faiss.IndexIVFPQ):
        index.nprobe = config.ivf_nprobe
    return index
