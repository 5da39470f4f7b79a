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

    # The backbone's nearest photo kept on a one-place page: first again, and flagged where the re-ranker had not
    # put it there.
    config = workspace.load_config(overrides=["rerank.keep_nearest=1", "rerank.keep_within=1"])
    kept = search(queries, workspace=workspace, k=8, config=config)
    for with_kept, ranked, unranked in zip(kept, reranked, plain, strict=True):
        first = with_kept.as_dict()["results"][0]
        assert first["path"] == unranked.results[0].path
        assert first.get("kept_nearest", False) == (ranked.results[0].path != unranked.results[0].path)
        rest = [h.path for h in ranked.results if h.path != first["path"]][:7]
        assert [h.path for h in with_kept.results[1:]] == rest


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


def test_photo_anchors_are_shot_in_the_configured_conditions(
    drawn_workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bbox.conditions import ConditionSimulator

    workspace, csv_path, _ = drawn_workspace
    drawn: list[str] = []
    real = ConditionSimulator.__call__

    def spy(self, *args, **kwargs):
        scene = real(self, *args, **kwargs)
        drawn.append(scene.params["condition"])
        return scene

    monkeypatch.setattr(ConditionSimulator, "__call__", spy)
    config = workspace.load_config(overrides=["train_triplets.view_conditions={far: 1, lamp: 1}"])
    train_triplets(csv_path, workspace, config, epochs=1, verbose=False, out=tmp_path / "shots.pt", views=1)
    assert drawn and set(drawn) == {"far", "lamp"}  # one shot per anchor, each from the mix
    drawn.clear()
    train_triplets(csv_path, workspace, epochs=1, verbose=False, out=tmp_path / "standard.pt", views=1)
    assert not drawn  # the default: the standard scene


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
    settings = workspace.load_config().train_triplets
    assert report["weight"] in settings.attribute_weights
    # the share was checked on photo-like shots (every watch is labelled here, so all 40 are shot)
    assert report["identity_views"] == 40
    for k in (1, 10):
        recall = report[f"identity_recall_at_{k}"]
        assert set(recall) == {f"{w:g}" for w in settings.attribute_weights}
        assert recall[f"{report['weight']:g}"] >= recall["0"] - settings.identity_tolerance
        assert 0 < report["identity_recall_faiss_order"][f"at_{k}"] <= 1  # beside it, the search without re-ranking
    checkpoint = torch.load(model, map_location="cpu", weights_only=True)
    assert checkpoint["meta"]["attribute_weight"] == report["weight"]
    reranker = SimilarityReranker.load(model)
    assert reranker.attributes is not None and reranker.attribute_weight == report["weight"]
    from tiefwatch.models import load_reranker

    own = workspace.load_config(overrides=[f"rerank.model={model}"])
    assert load_reranker(own, workspace).attribute_weight == report["weight"]  # -1: the model's own share
    chosen = own.merged(overrides=["rerank.attribute_weight=0.25"])
    assert load_reranker(chosen, workspace).attribute_weight == 0.25  # a shop's choice at search time
    assert load_reranker(own, workspace).expand == own.rerank.expand  # the search's query expansion
    assert load_reranker(own.merged(overrides=["rerank.expand=0"]), workspace).expand == 0
    # the heads learned the drawn watches' shapes: they name most of them right
    from tiefwatch.index import CatalogIndex

    index = CatalogIndex.load(workspace.index_path, workspace.load_config())
    predicted = reranker.predict_attributes(reranker.inputs(index.vectors, index.colours))
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


@pytest.mark.parametrize("costs", [1, 10])
def test_a_share_that_costs_the_exact_watch_its_place_is_not_chosen(
    drawn_workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, costs: int
) -> None:
    from tiefwatch.train_ranking import IdentityCheck

    workspace, csv_path, catalog = drawn_workspace
    attributes_csv = catalog[0][0].parent / "attributes.csv"

    # the attribute share as the check sees it: each 0.1 of it costs 1 shot in 20 its first place or first page
    def recall(self: IdentityCheck, score, catalog: np.ndarray, inputs=None) -> dict[int, float]:
        return {k: 1 - score.__self__.attribute_weight / 2 if k == costs else 1.0 for k in (1, 10)}

    monkeypatch.setattr(IdentityCheck, "recall", recall)
    config = workspace.load_config(overrides=["train_triplets.attribute_weights=[0.0, 0.5]"])
    off = config.merged(overrides=["train_triplets.identity_views=0"])  # the check off: agreement alone decides
    unguarded = train_triplets(
        csv_path, workspace, off, epochs=2, verbose=False, out=tmp_path / "u.pt", attributes=attributes_csv
    )
    assert unguarded.attributes["weight"] == 0.5 and "identity_recall_at_1" not in unguarded.attributes
    guarded = train_triplets(
        csv_path, workspace, config, epochs=2, verbose=False, out=tmp_path / "g.pt", attributes=attributes_csv
    )
    assert guarded.attributes[f"identity_recall_at_{costs}"] == {"0": 1.0, "0.5": 0.75}
    assert guarded.attributes[f"identity_recall_at_{11 - costs}"] == {"0": 1.0, "0.5": 1.0}
    assert guarded.attributes["weight"] == 0.0
    assert guarded.attributes["identity_recall_faiss_order"] == {"at_1": 1.0, "at_10": 1.0}  # raw cosine, no share


def test_identity_check_counts_shots_whose_own_photo_comes_first_and_on_the_first_page() -> None:
    from tiefwatch.train_ranking import IdentityCheck

    catalog = np.eye(12, dtype=np.float32)
    shots = np.zeros((3, 12), np.float32)
    shots[0, [0, 1]] = [1.0, 0.2]  # its own photo (0) first
    shots[1, 1], shots[1, 2:12] = 0.5, 1.0  # its own photo (1) behind ten closer ones
    shots[2, [2, 3]] = [1.0, 0.9]  # its own photo (3) second
    candidates = np.tile(np.arange(12), (3, 1))
    candidates[2, 11] = -1  # fewer candidates than asked for
    check = IdentityCheck(shots, np.array([0, 1, 3]), candidates)
    assert check.recall(lambda q, c: c @ q, catalog) == {1: pytest.approx(1 / 3), 10: pytest.approx(2 / 3)}
    assert check.recall(lambda q, c: -(c @ q), catalog)[1] == 0.0
    check.keep = (2, 10)  # as a search orders: the two nearest candidates stay on the first page
    assert check.recall(lambda q, c: c @ q, catalog) == {1: pytest.approx(1 / 3), 10: pytest.approx(1.0)}


def test_held_out_photos_are_kept_out_of_triplets_labels_and_shots(drawn_workspace, tmp_path: Path) -> None:
    workspace, csv_path, catalog = drawn_workspace
    held_out = {path.name for path, _ in catalog[:10]}
    naming = sum(
        bool(held_out & set(line.split(","))) for line in sorted(set(csv_path.read_text().splitlines()[1:]))
    )  # distinct rows: the fixture repeats one
    summary = train_triplets(
        csv_path, workspace, epochs=1, verbose=False, out=tmp_path / "h.pt",
        attributes=catalog[0][0].parent / "attributes.csv", exclude=held_out,
    )  # fmt: skip
    assert 0 < summary.held_out_skipped == naming and summary.triplets == 600 - naming
    assert summary.attributes["labelled"] == 30
    assert summary.attributes["identity_views"] == 30  # the other 30 watches are shot, the held-out 10 never


def test_the_model_compares_colours_where_the_index_keeps_them(
    drawn_workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ranking.rerank
    from ranking.colour import COLOUR_DIM
    from ranking.rerank import SimilarityReranker
    from tiefwatch.index import CatalogIndex, CatalogIndexError
    from tiefwatch.search import Searcher

    workspace, csv_path, catalog = drawn_workspace
    index = CatalogIndex.load(workspace.index_path, workspace.load_config())
    assert index.colours.shape == (len(index), COLOUR_DIM)
    coloured = train_triplets(csv_path, workspace, epochs=1, verbose=False, out=tmp_path / "colour.pt")
    model = SimilarityReranker.load(coloured.model)
    assert (model.raw_dim, model.colour_dim) == (index.dim, COLOUR_DIM)
    without = workspace.load_config(overrides=["train_triplets.colour_weight=0"])
    plain = train_triplets(csv_path, workspace, without, epochs=1, verbose=False, out=tmp_path / "plain.pt")
    plain_model = SimilarityReranker.load(plain.model)
    assert plain_model.colour is None and plain_model.input_dim == index.dim

    # the same catalogue indexed without colours: a colour model is refused with what to do, a plain one serves
    bare = Workspace(tmp_path / "bare")
    bare_config = bare.load_config(
        overrides=["backbone.image_size=96", "crop.enabled=false", "embed.engine=torch", "index.colour=false"]
    )
    index_catalog(catalog[0][0].parent, bare, bare_config)
    assert CatalogIndex.load(bare.index_path).colours.shape == (len(catalog), 0)
    with pytest.raises(CatalogIndexError, match="re-run `tiefwatch index`"):
        Searcher(bare, bare_config.merged(overrides=[f"rerank.model={coloured.model}"]))
    served = Searcher(bare, bare_config.merged(overrides=[f"rerank.model={plain.model}"]))
    assert served.search_paths([catalog[0][0]], k=3, show_progress=False)[0].reranked
    # as the package's default, a colour model is left out quietly where the index keeps no colours
    monkeypatch.setattr(ranking.rerank, "DEFAULT_MODEL", Path(coloured.model))
    assert Searcher(bare, bare_config).reranker is None
    import shutil

    fresh = Workspace(tmp_path / "fresh")  # the coloured index with no model of its own: the default serves it
    shutil.copytree(workspace.root / "index", fresh.root / "index")
    assert Searcher(fresh, workspace.load_config()).reranker.fingerprint == model.fingerprint
