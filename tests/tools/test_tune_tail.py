"""The GPU-lease tuning tool runs end to end on the CPU at a tiny scale and writes a tail that loads."""

from __future__ import annotations

import json
from pathlib import Path

from ranking.backbone import create_backbone
from tiefwatch.synthetic import make_catalog
from tools.tune_tail import main


def test_tune_tail_writes_a_loadable_tail_and_a_report(tmp_path: Path) -> None:
    make_catalog(tmp_path / "catalog", 30, seed=4, size=96)
    out = tmp_path / "out"
    code = main(["--catalog", str(tmp_path / "catalog"), "--views", "1", "--epochs", "1", "--queries", "4",
                 "--workers", "1", "--variants", "all:1", "--half", "--out", str(out)])  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    row = report["results"][0]
    assert row["variant"] == "all:1" and row["train_views"] == 30 and 0.0 <= row["tuned_r1"] <= 1.0
    model = create_backbone(weights=out / "tail_all_1.pt")  # float16 tensors load over the float32 model
    assert next(model.conv_head.parameters()).dtype.is_floating_point
