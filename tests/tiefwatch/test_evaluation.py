"""``tiefwatch eval``: recall@k and mAP on queries with known answers, triplet accuracy on a held-out CSV."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tiefwatch.cli import main
from tiefwatch.evaluation import evaluate, read_query_csv
from tiefwatch.index import index_catalog
from tiefwatch.workspace import Workspace


@pytest.fixture
def indexed(tmp_path: Path, catalog_dir: Path, fast_overrides: list[str]) -> tuple[Workspace, list[str]]:
    overrides = [*fast_overrides, "crop.enabled=false"]
    workspace = Workspace(tmp_path / "ws")
    index_catalog(catalog_dir, workspace, workspace.load_config(overrides=overrides))
    return workspace, overrides


def test_recall_and_map_count_the_rank_of_the_true_watch(
    indexed: tuple[Workspace, list[str]], catalog_dir: Path, tmp_path: Path
) -> None:
    """Each catalogue photo queried for itself is found first, except one whose stated truth is another watch:
    R@1 drops to exactly 3/4, and mAP counts that watch at the rank where it was found."""
    workspace, overrides = indexed
    csv_path = tmp_path / "queries.csv"
    rows = ["query,truth"] + [f"{catalog_dir / f'w{i}.png'},w{i}.png" for i in range(3)]
    rows.append(f"{catalog_dir / 'w3.png'},w4.png")
    csv_path.write_text("\n".join(rows) + "\n")
    report = evaluate(workspace, queries=csv_path, ks=(1, 6), config=workspace.load_config(overrides=overrides))
    assert report.queries == 4 and report.depth == 100
    first = report.retrieval[0]
    assert first.recall[1] == 0.75 and first.recall[6] == 1.0
    rank_of_swapped = 1 / (first.mean_ap * 4 - 3)  # mAP = (1 + 1 + 1 + 1/rank) / 4
    assert round(rank_of_swapped, 6) in {2.0, 3.0, 4.0, 5.0, 6.0}
    assert first.found == 4


def test_query_csv_errors_name_the_line(tmp_path: Path) -> None:
    bad_header = tmp_path / "a.csv"
    bad_header.write_text("photo,answer\nx.jpg,y.jpg\n")
    with pytest.raises(ValueError, match="query,truth"):
        read_query_csv(bad_header, tmp_path)
    missing = tmp_path / "b.csv"
    missing.write_text("query,truth\nx.jpg,y.jpg\nz.jpg,\n")
    with pytest.raises(ValueError, match="line 3"):
        read_query_csv(missing, tmp_path)


def test_simulated_queries_and_triplets_through_the_cli(
    indexed: tuple[Workspace, list[str]], catalog_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace, overrides = indexed
    triplets = tmp_path / "held-out.csv"
    triplets.write_text("anchor,near,far\nw1.png,w3.png,w2.png\nw2.png,w4.png,w3.png\nw1.png,w3.png,w2.png\n")
    sets = [arg for item in overrides for arg in ("--set", item)]
    argv = ["-w", str(workspace.root), *sets, "-q", "eval", "--simulate", "3", "--triplets", str(triplets)]
    assert main([*argv, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["queries"] == 3 and len(list((workspace.root / "eval" / "simulated-0").glob("q*.jpg"))) == 3
    assert [row["name"] for row in data["retrieval"]] == ["raw features, whole photo (FAISS order)"]  # crop off
    assert set(data["retrieval"][0]["recall"]) == {"1", "5", "10"}
    assert data["triplets"]["count"] == 2 and data["triplets"]["duplicates_ignored"] == 1
    assert 0.0 <= data["triplets"]["raw"] <= 1.0
    assert main([*argv, "-k", "0"]) == 2  # a bad rank list is one clear line
    assert "positive ranks" in capsys.readouterr().err
