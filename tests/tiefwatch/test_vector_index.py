"""The FAISS layer: the size picks the index type, the build-time tuning reaches its recall target on queries it
never saw, candidates are re-scored exactly, and an update re-fills a trained index without re-training."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from tiefwatch import vector_index
from tiefwatch.config import IndexConfig


def clustered(count: int, dim: int = 64, clusters: int = 40, seed: int = 0) -> np.ndarray:
    """Unit vectors in crowded neighbourhoods, like embeddings of similar watches (not a uniform ball)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    vectors = centres[rng.integers(0, clusters, count)] + 0.6 * rng.normal(size=(count, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_auto_type_follows_catalogue_size() -> None:
    config = IndexConfig(auto_flat_below=1000)
    assert vector_index.resolve_index_type(config, 999) == "flat"
    assert vector_index.resolve_index_type(config, 1000) == "ivf"
    assert vector_index.resolve_index_type(IndexConfig(type="hnsw"), 10) == "hnsw"
    with pytest.raises(ValueError, match="unknown index type"):
        vector_index.resolve_index_type(IndexConfig(type="annoy"), 10)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_tuned_index_reaches_recall_on_unseen_queries(kind: str) -> None:
    vectors = clustered(6000)
    config = IndexConfig(type=kind, pca_dim=32, target_recall=0.95)
    index, tuning = vector_index.build_tuned(vectors, config)
    assert vector_index.index_kind(index) == kind
    assert vector_index.get_depth(index) == tuning.depth > 0 and tuning.recall >= 0.95
    queries = vector_index.tuning_queries(clustered(6300, seed=0)[6000:], 200, seed=9)
    truth = vector_index.exact_top(vectors, queries, 10)
    _, rows = vector_index.search(index, vectors, queries, 10, tuning.refine)
    assert vector_index.recall_at(rows, truth) >= 0.9


def test_untuned_shallow_ivf_loses_recall_so_the_tuning_matters() -> None:
    vectors = clustered(6000)
    shallow = IndexConfig(type="ivf", pca_dim=32, ivf_nprobe=1, refine=1)
    index = vector_index.build_faiss_index(vectors, shallow)
    queries = vector_index.tuning_queries(vectors, 200, seed=3)
    truth = vector_index.exact_top(vectors, queries, 10)
    _, rows = vector_index.search(index, vectors, queries, 10, shallow.refine)
    assert vector_index.recall_at(rows, truth) < 0.9


def test_candidates_are_rescored_exactly() -> None:
    vectors = clustered(3000)
    index = vector_index.build_faiss_index(vectors, IndexConfig(type="ivf", pca_dim=16, ivf_codes="PQ4"))
    queries = vectors[:5] + 0.01
    scores, rows = vector_index.search(index, vectors, queries, 10, 10)
    exact = np.einsum("qkd,qd->qk", vectors[rows], queries)
    np.testing.assert_allclose(scores, exact, rtol=1e-5, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6), "results must come best first"


def test_small_catalogue_pads_like_faiss() -> None:
    vectors = clustered(8)
    index = vector_index.build_faiss_index(vectors, IndexConfig(type="hnsw"))
    scores, rows = vector_index.search(index, vectors, vectors[:1], 12, 10)
    assert np.all(scores[0, 8:] == -1.0)
    assert rows.shape == (1, 12) and np.all(rows[0, 8:] == -1) and sorted(rows[0, :8]) == list(range(8))


def test_refill_keeps_the_trained_codebooks() -> None:
    vectors = clustered(4000)
    config = IndexConfig(type="ivf", pca_dim=32)
    trained = vector_index.build_faiss_index(vectors, config)
    grown = np.vstack([vectors, clustered(200, seed=5)])
    refilled, _ = vector_index.refill(trained, grown, config)
    ivf_before, ivf_after = faiss.extract_index_ivf(trained), faiss.extract_index_ivf(refilled)
    assert refilled.ntotal == len(grown) and trained.ntotal == len(vectors), "the old index is left untouched"
    assert ivf_after.nlist == ivf_before.nlist
    np.testing.assert_array_equal(
        ivf_after.quantizer.reconstruct_n(0, ivf_after.nlist), ivf_before.quantizer.reconstruct_n(0, ivf_before.nlist)
    )
    _, rows = vector_index.search(refilled, grown, grown[-200:], 1, config.refine)
    assert np.mean(rows[:, 0] == np.arange(4000, 4200)) >= 0.95


def test_refill_of_another_kind_builds_afresh() -> None:
    vectors = clustered(500)
    flat = vector_index.build_faiss_index(vectors, IndexConfig(type="flat"))
    rebuilt, _ = vector_index.refill(flat, vectors, IndexConfig(type="hnsw"))
    assert vector_index.index_kind(rebuilt) == "hnsw"


def test_bad_code_spec_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="ivf_codes"):
        vector_index.build_faiss_index(clustered(2000), IndexConfig(type="ivf", pca_dim=30, ivf_codes="PQ7"))


def test_tuned_depth_survives_save_and_load() -> None:
    vectors = clustered(3000)
    index = vector_index.build_faiss_index(vectors, IndexConfig(type="ivf", pca_dim=32))
    depth = vector_index.get_depth(index)
    loaded = vector_index.deserialize(vector_index.serialize(index), IndexConfig(), depth)
    assert vector_index.get_depth(loaded) == depth
    forced = vector_index.deserialize(vector_index.serialize(index), IndexConfig(ivf_nprobe=3), depth)
    assert vector_index.get_depth(forced) == 3


def test_tuning_widens_the_exact_rescoring_when_depth_alone_falls_short() -> None:
    """Coarse codes (PQ4 on 32 dims) cannot rank the true neighbours into the top k*refine at any depth: the
    tuning must re-score more candidates rather than settle for lower recall."""
    vectors = clustered(6000)
    config = IndexConfig(type="ivf", pca_dim=32, ivf_codes="PQ4", refine=2, target_recall=0.95)
    _, tuning = vector_index.build_tuned(vectors, config)
    assert tuning.refine > config.refine and tuning.recall >= 0.95
