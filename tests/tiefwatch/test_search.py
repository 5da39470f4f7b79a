from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiefwatch.config import Config
from tiefwatch.pipeline import Framing
from tiefwatch.search import Searcher


class ThreeWatchIndex:
    """FAISS's answer for one query: three catalogue photos, nearest first, at the cosines the test sets."""

    def __init__(self, cosines: list[float]) -> None:
        self.cosines = np.array([cosines], np.float32)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.cosines[:, :k], np.arange(self.cosines.shape[1])[None, :k]

    def path_of(self, row: int) -> Path:
        return Path(f"watch{row}.jpg")


def _searcher(cosines: list[float], pin_margin: float) -> Searcher:
    searcher = Searcher.__new__(Searcher)  # the ordering needs only the config, the index and the scores
    searcher.config = Config().merged(overrides=[f"rerank.pin_margin={pin_margin}"])
    searcher.index = ThreeWatchIndex(cosines)
    searcher.reranker = object()
    searcher.describe_queries = lambda images, crop=True: (  # type: ignore[method-assign]
        np.zeros((len(images), 4), np.float32),
        np.zeros((len(images), 2), np.float32),
        [Framing(None, 1.0) for _ in images],
    )
    searcher.rerank_scores = lambda vector, colour, rows: np.array([0.2, 0.9, 0.5], np.float32)  # type: ignore
    return searcher


@pytest.mark.parametrize(
    ("cosines", "pin_margin", "first"),
    [
        ([0.90, 0.70, 0.60], 0.05, "watch0.jpg"),  # the backbone is sure: its nearest stays first
        ([0.90, 0.88, 0.60], 0.05, "watch1.jpg"),  # two close candidates: the re-ranker decides
        ([0.90, 0.70, 0.60], 0.0, "watch1.jpg"),  # pinning off
    ],
)
def test_a_clearly_nearest_catalogue_photo_stays_first_over_the_re_rankers_pick(
    cosines: list[float], pin_margin: float, first: str
) -> None:
    image = np.zeros((32, 32, 3), np.uint8)
    hits = _searcher(cosines, pin_margin).search_images([image], k=3)[0].results
    assert hits[0].path == first
    assert hits[0].kept_nearest == (first == "watch0.jpg")  # pinned over a higher score: flagged as the backbone's
    assert sorted(hit.path for hit in hits) == ["watch0.jpg", "watch1.jpg", "watch2.jpg"]


def test_a_crop_model_that_fails_to_load_in_its_thread_is_the_searchers_error(
    tmp_path: Path, catalog_dir: Path, fast_overrides: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crop model opens in a loading thread beside the index and the backbone; its failure must still reach
    the caller as the error it is. A missing index is reported before any model opens (a crop model without its
    cached graph would be exported first, for a minute)."""
    from tiefwatch import search as search_module
    from tiefwatch.index import CatalogIndexError, index_catalog
    from tiefwatch.workspace import Workspace

    workspace = Workspace(tmp_path / "ws")
    missing = tmp_path / "no-such-crop.pt"

    opened: list[str] = []
    monkeypatch.setattr(search_module, "load_cropper", lambda *args, **kwargs: opened.append("crop model"))
    with pytest.raises(CatalogIndexError, match="no index"):
        Searcher(workspace, workspace.load_config(overrides=fast_overrides))
    assert opened == []
    monkeypatch.undo()
    index_catalog(catalog_dir, workspace, workspace.load_config(overrides=fast_overrides))
    with pytest.raises(FileNotFoundError, match="no-such-crop.pt does not exist"):
        Searcher(workspace, workspace.load_config(overrides=[*fast_overrides, f"crop.model={missing}"]))
