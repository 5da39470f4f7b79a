"""The runs benchmark measures the vectors a search makes, and the crop alone beside them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from bbox.box import BoundingBox
from bbox.predict import BoxPrediction
from ranking.features import Embedder
from tiefwatch.config import Config
from tiefwatch.pipeline import Pipeline
from tools.bench_runs import catalogue_vectors, query_vectors, recall


class CentreCropper:
    fingerprint = "centre"

    def predict(self, images: Sequence[np.ndarray]) -> list[BoxPrediction]:
        return [BoxPrediction(BoundingBox(30, 20, 90, 80), 0.9) for _ in images]


def test_all_crops_is_what_a_search_embeds_and_one_crop_the_box_alone() -> None:
    config = Config().merged(overrides=["search.correct_light=false"])
    pipeline = Pipeline(config, Embedder(image_size=64, engine="torch", device="cpu"), CentreCropper())
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (100, 120, 3), dtype=np.uint8) for _ in range(3)]
    ways = query_vectors(pipeline, photos)
    searched, _ = pipeline.embed_queries(photos)
    np.testing.assert_allclose(ways["all crops"], searched, atol=1e-6)
    crops, _ = pipeline.frame(photos)
    np.testing.assert_allclose(ways["one crop"], pipeline.embedder.embed(crops), atol=1e-6)
    assert not np.allclose(ways["one crop"], ways["all crops"], atol=1e-3)  # the scales change the vector


def test_recall_counts_the_right_row_within_the_first_k() -> None:
    catalogue = np.eye(4, dtype=np.float32)
    queries = np.array([[1, 0.5, 0, 0], [0.2, 1, 0, 0], [1, 0, 0.9, 0]], np.float32)  # ranks 1, 1 and 2
    truth = np.array([0, 1, 2])
    assert recall(queries, catalogue, truth, 1) == pytest.approx(2 / 3)
    assert recall(queries, catalogue, truth, 2) == 1.0


def test_compared_indexes_must_hold_the_same_catalogue(tmp_path, catalog_dir, fast_overrides) -> None:
    from tiefwatch.index import CatalogIndex, index_catalog
    from tiefwatch.workspace import Workspace

    for name in ("a", "b"):
        workspace = Workspace(tmp_path / name)
        config = workspace.load_config(overrides=fast_overrides)
        index_catalog(catalog_dir, workspace, config)
    index = CatalogIndex.load(workspace.index_path, config)
    paths = [str(index.path_of(i).resolve()) for i in range(len(index))]
    both = catalogue_vectors(f"{tmp_path / 'a'}+{tmp_path / 'b'}", paths)
    np.testing.assert_allclose(np.linalg.norm(both, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(both, catalogue_vectors(str(tmp_path / "a"), paths), atol=1e-5)  # same settings
    with pytest.raises(SystemExit, match="another catalogue"):
        catalogue_vectors(str(tmp_path / "a"), paths[::-1])
