"""The labelling tool's ranking model is chosen the same way on every start of a workspace, and says why.

The reported restart difference: a fresh start, asked for a question first, answered "similarity model ..."; a
restart under a page still open got a triplet first and answered "raw features (cosine)", because the model was
only chosen by the first question. These tests start the tool twice on one workspace and ask in both orders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiefwatch.config import Config
from tiefwatch.index import CatalogIndex, Entry
from tiefwatch.label import LabelApp
from tiefwatch.workspace import Workspace


def _workspace(tmp_path: Path, fits_packaged_model: bool) -> tuple[Workspace, Config, Path]:
    """An index of eight random rows, made as the packaged similarity model was trained on (or not)."""
    from ranking.rerank import DEFAULT_MODEL, SimilarityReranker

    packaged = SimilarityReranker.load(DEFAULT_MODEL)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(8, packaged.raw_dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    colours = rng.random((8, packaged.colour_dim)).astype(np.float32)
    signature = dict(packaged.signature or {})
    if not fits_packaged_model:
        signature["image_size"] = 96
    catalogue = tmp_path / "catalog"
    catalogue.mkdir()
    entries = [Entry(f"w{i}.png", 1, 1, "0" * 40) for i in range(8)]
    workspace, config = Workspace(tmp_path / "ws"), Config()
    CatalogIndex(catalogue, entries, vectors, signature, config, colours=colours).save(workspace.index_path)
    return workspace, config, tmp_path / "triplets.csv"


def test_two_starts_on_one_workspace_use_and_report_the_same_model(tmp_path: Path) -> None:
    workspace, config, triplets = _workspace(tmp_path, fits_packaged_model=True)
    first = LabelApp(workspace, config, triplets)  # no cache yet: the checkpoint is read, its numpy form cached
    assert first.status()["kind"] == "similarity"
    question = first.next_question("alice")
    assert question["model"] == first.status()["model"]

    second = LabelApp(workspace, config, triplets)  # a restart: the cache is there now
    answer = second.submit("bob", "w0.png", "w1.png", "w2.png")  # a page left open answers before it asks
    assert answer["model"] == question["model"]
    assert second.status() == first.status()
    assert second.status()["reason"].startswith("the packaged default model")
    anchor = second.row_of["w0.png"]
    candidates = np.array([1, 2, 3, 4])
    assert np.allclose(first.model_scores(anchor, candidates), second.model_scores(anchor, candidates), atol=1e-6)


def test_an_index_the_packaged_model_does_not_fit_is_ranked_by_cosine_on_every_start_and_says_why(
    tmp_path: Path,
) -> None:
    workspace, config, triplets = _workspace(tmp_path, fits_packaged_model=False)
    statuses = [LabelApp(workspace, config, triplets).status() for _ in range(2)]
    assert statuses[0] == statuses[1]
    assert statuses[0]["kind"] == "cosine" and statuses[0]["model"] == "raw features (cosine)"
    assert "does not fit this index" in statuses[0]["reason"]


@pytest.mark.parametrize(
    ("overrides", "kind", "reason"),
    [(["rerank.enabled=false"], "cosine", "rerank.enabled is false"), (["rerank.packaged=false"], "cosine", "off")],
)
def test_the_configured_choice_is_reported(tmp_path: Path, overrides: list[str], kind: str, reason: str) -> None:
    workspace, _, triplets = _workspace(tmp_path, fits_packaged_model=True)
    status = LabelApp(workspace, Config().merged(overrides=overrides), triplets).status()
    assert status["kind"] == kind and reason in status["reason"]
