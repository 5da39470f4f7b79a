from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bbox.conditions import ConditionSimulator
from bbox.settings import TRAINING_MIX
from bbox.synth import PhotoSimulator
from ranking.backbone import PHOTO_TAIL
from tiefwatch.cli import main
from tiefwatch.index import CatalogIndex, index_catalog
from tiefwatch.search import search
from tiefwatch.synthetic import make_catalog
from tiefwatch.train_backbone import train_backbone_tail
from tiefwatch.workspace import Workspace

OVERRIDES = ["backbone.image_size=64", "crop.enabled=false", "embed.engine=torch", "train_tail.batch_size=8"]


@pytest.fixture()
def small_workspace(tmp_path: Path) -> tuple[Workspace, Path]:
    catalog = tmp_path / "catalog"
    make_catalog(catalog, 12, seed=3, size=96)
    workspace = Workspace(tmp_path / "ws")
    config = workspace.load_config(overrides=OVERRIDES)
    workspace.save_config(config)
    index_catalog(catalog, workspace, config)
    return workspace, catalog


def test_tuning_writes_the_tail_points_the_workspace_at_it_and_reindexing_uses_it(small_workspace) -> None:
    workspace, catalog = small_workspace
    before = CatalogIndex.load(workspace.index_path).signature["weights"]
    stale = workspace.similarity_model_path
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"a model trained on the old vectors")

    summary = train_backbone_tail(workspace, stages=1, views=2, epochs=1, show_progress=False)
    weights = Path(summary.weights)
    state = torch.load(weights, weights_only=True)
    assert weights.exists() and set(k.split(".")[0] for k in state) == {"blocks", "conv_head", "bn2"}
    # one stage tuned on from the packaged tail (backbone.weights: photo) keeps the stage before it as packaged
    packaged = torch.load(PHOTO_TAIL, weights_only=True)
    assert {k for k in state if k.startswith("blocks.")} == {k for k in packaged if k.startswith("blocks.")}
    assert all(torch.equal(state[k].to(packaged[k].dtype), packaged[k]) for k in packaged if k.startswith("blocks.5."))
    assert workspace.load_config().backbone.weights == str(weights.resolve())
    assert summary.moved_similarity_model and not stale.exists()  # kept beside, out of the searches' way
    assert Path(summary.moved_similarity_model).read_bytes().startswith(b"a model")
    assert 0.0 <= summary.val_recall_at_1_tuned <= 1.0 and summary.items + summary.val_items == 12

    with pytest.raises(Exception, match="(?i)index"):  # the old index no longer matches the tuned backbone
        search([next(catalog.glob("*.png"))], workspace=workspace, k=3)
    index_catalog(catalog, workspace, workspace.load_config())
    after = CatalogIndex.load(workspace.index_path).signature["weights"]
    assert after != before and after.startswith(before.split("+")[0])
    hits = search([next(catalog.glob("*.png"))], workspace=workspace, k=3)[0].results
    assert len(hits) == 3


def test_cli_train_tail_stages_reports_json(small_workspace, capsys: pytest.CaptureFixture[str]) -> None:
    workspace, _ = small_workspace
    out = workspace.root / "elsewhere.pt"
    code = main(["--workspace", str(workspace.root), "--quiet", "train", "--tail-stages", "1", "--views", "1",
                 "--epochs", "1", "--out", str(out), "--format", "json"])  # fmt: skip
    assert code == 0 and out.exists()
    assert '"stages": 1' in capsys.readouterr().out
    assert workspace.load_config().backbone.weights != str(out.resolve())  # --out leaves the workspace alone


def test_check_zero_tunes_every_watch_and_says_so(small_workspace, capsys: pytest.CaptureFixture[str]) -> None:
    workspace, _ = small_workspace
    out = workspace.root / "all.pt"
    code = main(["--workspace", str(workspace.root), "--quiet", "train", "--tail-stages", "1", "--views", "1",
                 "--epochs", "1", "--check", "0", "--out", str(out)])  # fmt: skip
    assert code == 0 and out.exists()
    assert "every watch tuned, none held out" in capsys.readouterr().out
    quick = {"stages": 1, "views": 1, "epochs": 1, "out": out, "show_progress": False}
    summary = train_backbone_tail(workspace, check_fraction=0, **quick)
    assert (summary.items, summary.val_items, summary.val_recall_at_1_tuned) == (12, 0, None)
    with pytest.raises(ValueError, match="check_fraction"):
        train_backbone_tail(workspace, check_fraction=1, **quick)


def test_views_come_from_the_configured_photo_conditions(small_workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    import tiefwatch.views

    workspace, _ = small_workspace
    seen: list[object] = []
    real = tiefwatch.views.photo_view_crops

    def spy(image, views, simulator, *args, **kwargs):
        seen.append(simulator)
        return real(image, views, simulator, *args, **kwargs)

    monkeypatch.setattr(tiefwatch.views, "photo_view_crops", spy)
    quick = {"stages": 1, "views": 1, "epochs": 1, "out": workspace.root / "t.pt", "show_progress": False}
    train_backbone_tail(workspace, **quick)
    assert isinstance(seen[-1], ConditionSimulator) and seen[-1].names == list(TRAINING_MIX)  # the default
    standard = workspace.load_config(overrides=["train_tail.conditions={}"])
    train_backbone_tail(workspace, standard, **quick)
    assert type(seen[-1]) is PhotoSimulator


def test_on_a_cpu_the_frozen_trunk_runs_in_onnx_runtime(small_workspace) -> None:
    workspace, _ = small_workspace
    config = workspace.load_config(overrides=["embed.engine=onnx"])
    before = set(workspace.cache_dir.rglob("*.onnx"))
    out = workspace.root / "onnx-tail.pt"
    summary = train_backbone_tail(workspace, config, stages=1, views=1, epochs=1, out=out, show_progress=False)
    assert set(workspace.cache_dir.rglob("*.onnx")) - before  # the trunk's graph, exported once and cached
    assert out.exists() and 0.0 <= summary.val_recall_at_1_tuned <= 1.0
