"""The synthetic benchmark scores triplets three ways: raw cosine, the blended re-ranking score, the learned cosine."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ranking.rerank import SimilarityReranker
from tools.bench_synthetic import accuracies


def test_accuracies_score_raw_blended_and_learned_separately() -> None:
    # Dimension 2 is nuisance: the learned projection drops it, the raw cosine does not.
    photos = {
        "a1": [0.6, 0, 0.8], "n1": [1, 0, 0], "f1": [0, 0.6, 0.8],  # raw prefers far (0.64 > 0.6); learned does not
        "a2": [1, 0, 0], "n2": [0.9, 0.436, 0], "f2": [0.5, 0, 0.866],  # learned prefers far (1 > 0.9); raw does not
        "a3": [1, 0, 0], "n3": [0.9, 0.436, 0], "f3": [0.5, 0, 0.866],  # the same again: raw and learned now differ
    }  # fmt: skip
    index = SimpleNamespace(
        entries=[SimpleNamespace(path=f"cat/{name}.png") for name in photos],
        vectors=np.asarray(list(photos.values()), np.float32),
        colours=np.zeros((len(photos), 0), np.float32),  # a model without colour takes the vectors alone
    )
    model = SimilarityReranker(np.eye(2, 3, dtype=np.float32), "test", raw_weight=0.5)
    triplets = [(f"a{i}.png", f"n{i}.png", f"f{i}.png") for i in (1, 2, 3)]
    raw, trained, learned = accuracies(index, model, triplets)
    # the blend (0.5 raw + 0.5 learned) gets all three right: 0.8 > 0.32, then 0.9 > 0.75 twice
    assert (raw, trained, learned) == (pytest.approx(2 / 3), 1.0, pytest.approx(1 / 3))
