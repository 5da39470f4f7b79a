"""The GPU-lease tuning tool runs end to end on the CPU at a tiny scale and writes a tail that loads."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from bbox.conditions import CONDITIONS
from ranking.backbone import PHOTO_TAIL, create_backbone
from tiefwatch.synthetic import make_catalog
from tools.bench_conditions import CUT
from tools.tune_tail import main


def test_tune_tail_from_the_packaged_tail_keeps_its_stages_and_reports_every_condition(tmp_path: Path) -> None:
    make_catalog(tmp_path / "catalog", 30, seed=4, size=96)
    out = tmp_path / "out"
    code = main(["--catalog", str(tmp_path / "catalog"), "--views", "1", "--epochs", "1", "--queries", "2",
                 "--workers", "1", "--start", "photo", "--variants", "all:1", "--batch-size", "8", "--lr", "0.01",
                 "--cut-share", "0.5", "--half", "--out", str(out)])  # fmt: skip
    assert code == 0
    row = json.loads((out / "report.json").read_text())["results"][0]
    assert row["variant"] == "all:1" and row["train_views"] == 30
    assert set(row["tuned_r1"]) == {*CONDITIONS, CUT, "mean"}
    # the mean is the simulator conditions' alone, so it compares with runs made before the cut row existed
    assert row["tuned_r1"]["mean"] == round(sum(row["tuned_r1"][name] for name in CONDITIONS) / len(CONDITIONS), 3)
    saved = torch.load(out / "tail_all_1.pt", weights_only=True)
    packaged = torch.load(PHOTO_TAIL, weights_only=True)
    # the stage the packaged tail tuned and this run did not is kept as packaged; the one tuned here moved
    assert set(saved) == set(packaged)
    assert all(torch.equal(saved[k], packaged[k].half()) for k in packaged if k.startswith("blocks.5."))
    assert not torch.equal(saved["conv_head.weight"], packaged["conv_head.weight"].half())
    model = create_backbone(weights=out / "tail_all_1.pt")  # float16 tensors load over the float32 model
    assert next(model.conv_head.parameters()).dtype == torch.float32
