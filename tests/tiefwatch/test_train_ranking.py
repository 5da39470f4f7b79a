from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiefwatch.index import index_catalog
from tiefwatch.search import search
from tiefwatch.synthetic import attribute_triplets, make_catalog
from tiefwatch.train_ranking import train_triplets
from tiefwatch.workspace import Workspace


@pytest.fixture(scope="module")
def drawn_workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Path, list]:
    """40 drawn watches indexed at a small size, and simulated-annotator triplets over them."""
    root = tmp_path_factory.mktemp("ranking")
    catalog = make_catalog(root / "catalog", 40, seed=1, size=96)
    workspace = Workspace(root / "ws")
    config = workspace.load_config(
        overrides=["backbone.image_size=96", "crop.enabled=false", "train_triplets.epochs=12", "embed.engine=torch"]
    )
    index_catalog(root / "catalog", workspace, config)
    items = [(path.name, attrs) for path, attrs in catalog]
    triplets = attribute_triplets(items, 600, np.random.default_rng(0))
    csv_path = root / "triplets.csv"
    csv_path.write_text("anchor,near,far\n" + "".join(f"{a},{n},{f}\n" for a, n, f in triplets) + f"{triplets[0][0]},"
                        f"{triplets[0][1]},{triplets[0][2]}\n")  # fmt: skip
    return workspace, csv_path, catalog


def test_training_learns_the_annotators_notion_and_search_reranks(drawn_workspace) -> None:
    workspace, csv_path, catalog = drawn_workspace
    summary = train_triplets(csv_path, workspace, verbose=False)
    assert summary.duplicates == 1 and summary.triplets == 600
    assert summary.val_accuracy > summary.backbone_val_accuracy + 0.05
    assert summary.margin in (0.05, 0.1, 0.2)
    assert Path(summary.model).exists() and Path(summary.model).with_suffix(".config.yaml").exists()

    queries = [catalog[i][0] for i in (0, 5, 9)]
    reranked = search(queries, workspace=workspace, k=8)
    plain = search(queries, workspace=workspace, k=8, rerank=False)
    assert all(r.reranked for r in reranked) and not any(r.reranked for r in plain)
    orders = [([h.path for h in a.results], [h.path for h in b.results]) for a, b in zip(reranked, plain, strict=True)]
    assert any(x != y for x, y in orders)  # the learned similarity changes the ranking
    assert reranked[0].as_dict()["results"][0]["faiss_score"] >= -1.0


def test_resume_continues_after_the_saved_epoch(drawn_workspace) -> None:
    workspace, csv_path, _ = drawn_workspace
    train_triplets(csv_path, workspace, epochs=2, verbose=False)
    resumed = train_triplets(csv_path, workspace, epochs=4, resume=True, verbose=False)
    assert resumed.epochs[0].epoch == 3


def test_triplet_naming_a_photo_outside_the_index_is_refused(drawn_workspace, tmp_path: Path) -> None:
    workspace, _, catalog = drawn_workspace
    stray = tmp_path / "stray.png"
    stray.write_bytes(catalog[0][0].read_bytes())
    bad = tmp_path / "bad.csv"
    bad.write_text(f"anchor,near,far\n{catalog[0][0]},{catalog[1][0]},{stray}\n")
    with pytest.raises(ValueError, match="not in the index"):
        train_triplets(bad, workspace, verbose=False)


def test_photo_views_add_photo_anchored_and_identity_triplets(drawn_workspace, tmp_path: Path) -> None:
    workspace, csv_path, _ = drawn_workspace
    plain = train_triplets(csv_path, workspace, epochs=1, verbose=False, out=tmp_path / "plain.pt")
    viewed = train_triplets(csv_path, workspace, epochs=1, verbose=False, out=tmp_path / "views.pt", views=1)
    # every training triplet gets a photo-anchored copy, plus one identity triplet per photo (at most 40 watches)
    assert 2 * plain.train_triplets < viewed.train_triplets <= 2 * plain.train_triplets + 40
    import torch

    meta = torch.load(tmp_path / "views.pt", map_location="cpu", weights_only=True)["meta"]
    assert meta["photo_views"] == 1


def test_packaged_model_serves_a_fresh_workspace_only_where_it_fits(
    drawn_workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import torch

    import ranking.rerank
    from tiefwatch.search import Searcher

    workspace, csv_path, _ = drawn_workspace
    packaged = tmp_path / "packaged.pt"
    train_triplets(csv_path, workspace, epochs=1, verbose=False, out=packaged)
    fresh = Workspace(tmp_path / "fresh")
    shutil.copytree(workspace.root / "index", fresh.root / "index")
    config = workspace.load_config()
    monkeypatch.setattr(ranking.rerank, "DEFAULT_MODEL", packaged)
    assert Searcher(fresh, config).reranker is not None
    off = config.merged(overrides=["rerank.packaged=false"])
    assert Searcher(fresh, off).reranker is None

    checkpoint = torch.load(packaged, map_location="cpu", weights_only=True)
    checkpoint["meta"]["signature"] = {**checkpoint["meta"]["signature"], "image_size": 999}
    torch.save(checkpoint, packaged)
    assert Searcher(fresh, config).reranker is None, "a packaged model for other vectors is left out, no error"


def test_attribute_labels_add_heads_that_search_uses(drawn_workspace, tmp_path: Path) -> None:
    import torch

    from ranking.rerank import SimilarityReranker

    workspace, csv_path, catalog = drawn_workspace
    attributes_csv = catalog[0][0].parent / "attributes.csv"  # make_catalog writes file + one column per attribute
    model = tmp_path / "with-attributes.pt"
    summary = train_triplets(csv_path, workspace, epochs=2, verbose=False, out=model, attributes=attributes_csv)
    report = summary.attributes
    assert report is not None and report["labelled"] == 40
    assert set(report["attributes"]) >= {"shape", "case_colour", "strap_kind"}
    assert report["weight"] in workspace.load_config().train_triplets.attribute_weights
    checkpoint = torch.load(model, map_location="cpu", weights_only=True)
    assert checkpoint["meta"]["attribute_weight"] == report["weight"]
    reranker = SimilarityReranker.load(model)
    assert reranker.attributes is not None and reranker.attribute_weight == report["weight"]
    from tiefwatch.models import load_reranker

    own = workspace.load_config(overrides=[f"rerank.model={model}"])
    assert load_reranker(own, workspace).attribute_weight == report["weight"]  # -1: the model's own share
    chosen = own.merged(overrides=["rerank.attribute_weight=0.25"])
    assert load_reranker(chosen, workspace).attribute_weight == 0.25  # a shop's choice at search time
    # the heads learned the drawn watches' shapes: they name most of them right
    from tiefwatch.index import CatalogIndex

    index = CatalogIndex.load(workspace.index_path, workspace.load_config())
    predicted = reranker.attributes.predict(index.vectors)
    truth = {path.name: attrs.shape for path, attrs in catalog}
    hits = [p["shape"][0] == truth[Path(e.path).name] for p, e in zip(predicted, index.entries, strict=True)]
    assert np.mean(hits) > 0.8


def test_an_attribute_file_naming_a_photo_outside_the_index_fails_before_training(
    drawn_workspace, tmp_path: Path
) -> None:
    workspace, csv_path, _ = drawn_workspace
    bad = tmp_path / "attributes.csv"
    bad.write_text("file,shape\nnot-there.png,round\n")
    with pytest.raises(ValueError, match="row 2: not-there.png is not in the index"):
        train_triplets(csv_path, workspace, verbose=False, out=tmp_path / "never.pt", attributes=bad)
    assert not (tmp_path / "never.pt").exists()
