"""The judged benchmark ranks anchors as a search does, and pools its test sets as their union would."""

from __future__ import annotations

import numpy as np

from ranking.rerank import SimilarityReranker
from tools.bench_judged import ANCHOR_NAMES, anchor_accuracy, as_searched, pooled


def test_pooled_accuracy_is_what_the_union_of_the_test_sets_measures() -> None:
    rng = np.random.default_rng(0)
    catalog = rng.normal(size=(30, 4)).astype(np.float32)
    anchors = {row: catalog[row] for row in range(30)}
    first = rng.integers(0, 30, size=(7, 3))
    second = rng.integers(0, 30, size=(20, 3))
    sets = {
        name: {
            "triplets": len(rows),
            "anchors": len(np.unique(rows[:, 0])),
            **{anchor: {"raw": anchor_accuracy(anchors, catalog, rows)} for anchor in ANCHOR_NAMES},
        }
        for name, rows in (("first", first), ("second", second))
    }
    union = np.vstack([first, second])
    both = pooled(sets, ["first", "second"], len(np.unique(union[:, 0])))
    assert both["triplets"] == 27
    for anchor in ANCHOR_NAMES:
        assert np.isclose(both[anchor]["raw"], anchor_accuracy(anchors, catalog, union))


def test_anchors_are_widened_only_by_the_catalogue_rows_they_may_meet() -> None:
    rng = np.random.default_rng(2)
    reranker = SimilarityReranker(rng.normal(size=(3, 5)).astype(np.float32), "test")
    catalog = (1.0 + 0.3 * rng.normal(size=(6, 5))).astype(np.float32)
    embedded, raw = reranker.embed(catalog), catalog / np.linalg.norm(catalog, axis=1, keepdims=True)
    queries = catalog[:2]
    everything = [np.arange(6)] * 2
    assert np.array_equal(as_searched(reranker, queries, embedded, raw, everything, 100), reranker.embed(queries))
    reranker.expand = 1
    # its own row is the closest: widening a catalogue photo by itself leaves it where it was
    assert np.allclose(as_searched(reranker, queries, embedded, raw, everything, 100), reranker.embed(queries))
    # "the shop doesn't stock it": without its own row, the closest other watch widens it
    others = [np.arange(1, 6), np.delete(np.arange(6), 1)]
    widened = as_searched(reranker, queries, embedded, raw, others, 100)
    assert not np.allclose(widened, reranker.embed(queries), atol=1e-4)
    for number, rows in enumerate(others):
        closest = rows[np.argmax(embedded[rows] @ reranker.embed(queries)[number])]
        assert embedded[closest] @ widened[number] > embedded[closest] @ reranker.embed(queries)[number]
