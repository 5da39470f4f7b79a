from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tiefwatch.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_index_then_search_json_contract(
    tmp_path: Path, catalog_dir: Path, fast_overrides: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    ws = str(tmp_path / "ws")
    sets = [arg for item in fast_overrides for arg in ("--set", item)]
    code, out, _ = _run(capsys, "--workspace", ws, *sets, "index", str(catalog_dir), "--format", "json")
    assert code == 0 and json.loads(out)["total"] == 6
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    sheet = tmp_path / "sheet.jpg"
    code, out, err = _run(
        capsys, "-w", ws, "search", str(catalog_dir / "w2.png"), str(tmp_path / "bad.jpg"),
        "-k", "4", "--format", "json", "--sheet", str(sheet),
    )  # fmt: skip
    assert code == 1  # one query failed: the batch went on, the status says so
    data = json.loads(out)  # stdout holds the JSON and nothing else
    assert [item["query"] for item in data] == [str(catalog_dir / "w2.png"), str(tmp_path / "bad.jpg")]
    first = data[0]
    assert set(first) >= {"query", "box", "results"}
    assert first["box"] is None or (len(first["box"]) == 4 and 0 <= first["box"][0] < first["box"][2] <= 96)
    assert [r["rank"] for r in first["results"]] == [1, 2, 3, 4]
    assert Path(first["results"][0]["path"]) == (catalog_dir / "w2.png").resolve()
    scores = [r["score"] for r in first["results"]]
    assert scores == sorted(scores, reverse=True) and all(isinstance(s, float) for s in scores)
    assert "error" in data[1] and data[1]["results"] == []
    assert "could not be read" in err
    assert sheet.exists() and sheet.stat().st_size > 1000


def test_search_csv_and_table(tmp_path: Path, catalog_dir: Path, fast_overrides: list[str], capsys) -> None:
    ws = str(tmp_path / "ws")
    sets = [arg for item in fast_overrides for arg in ("--set", item)]
    assert _run(capsys, "-w", ws, *sets, "--set", "rerank.top_k=7", "index", str(catalog_dir))[0] == 0
    saved = yaml.safe_load((tmp_path / "ws" / "config.yaml").read_text())
    # what the vectors depend on sticks, written as changes from the defaults; a one-off --set elsewhere does not
    assert saved["backbone"] == {"image_size": 96} and saved["index"] == {"views": 0} and "rerank" not in saved
    code, out, _ = _run(capsys, "-w", ws, "search", str(catalog_dir / "w1.png"), "-k", "2", "--format", "csv")
    lines = out.strip().splitlines()
    assert code == 0 and lines[0] == "query,rank,path,score" and len(lines) == 3
    code, out, _ = _run(capsys, "-w", ws, "search", str(catalog_dir / "w1.png"), "-k", "2")
    assert code == 0 and "w1.png" in out


def test_errors_are_one_line_runtime_1_usage_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "-w", str(tmp_path / "empty"), "search", str(tmp_path))
    assert code == 1 and out == ""  # a runtime error: no index
    assert err.count("\n") == 1 and "run `tiefwatch index" in err
    code, _, err = _run(capsys, "-w", str(tmp_path), "--set", "search.k=many", "config")
    assert code == 2 and "search.k must be an integer" in err  # a usage error: a bad value given
    for k in ("0", "-5", "two"):
        with pytest.raises(SystemExit) as exited:
            main(["-w", str(tmp_path), "search", "x.jpg", "-k", k])
        assert exited.value.code == 2
        assert "argument -k" in capsys.readouterr().err


def test_global_flags_before_or_after_the_verb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = str(tmp_path / "ws")
    before = _run(capsys, "-w", ws, "--set", "search.k=12", "config", "--format", "json")
    after = _run(capsys, "config", "--format", "json", "--workspace", ws, "--set", "search.k=12")
    assert before[0] == after[0] == 0 and before[1] == after[1]
    assert json.loads(after[1])["search"]["k"] == 12
    code, out, _ = _run(capsys, "--set", "search.k=3", "config", "-w", ws, "--set", "rerank.top_k=7", "--format=json")
    resolved = json.loads(out)
    assert code == 0 and resolved["search"]["k"] == 3 and resolved["rerank"]["top_k"] == 7  # both lists apply
    assert _run(capsys, "-w", ws, "config", "-c", str(tmp_path / "missing.yaml"))[0] == 2


def test_one_format_vocabulary_with_help(capsys: pytest.CaptureFixture[str]) -> None:
    from tiefwatch.cli import build_parser

    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "verb").choices
    for name, verb in verbs.items():
        fmt = next((a for a in verb._actions if a.dest == "format"), None)
        if fmt is None:
            continue
        assert fmt.default == "text" and set(fmt.choices) <= {"text", "json", "csv"}, name
        assert "machine-readable" in fmt.help, name
    assert "csv" in next(a for a in verbs["search"]._actions if a.dest == "format").choices
    assert parser.parse_args(["search", "x.jpg", "--format", "table"]).format == "text"  # the old name still works
    with pytest.raises(SystemExit):
        parser.parse_args(["index", "dir", "--format", "csv"])
    capsys.readouterr()


def test_missing_queries_are_entries_and_no_crop_no_rerank_work_on_any_index(
    tmp_path: Path, catalog_dir: Path, fast_overrides: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    ws = str(tmp_path / "ws")
    sets = [arg for item in fast_overrides for arg in ("--set", item)]
    assert _run(capsys, "index", str(catalog_dir), "-w", ws, *sets)[0] == 0  # crop on: the default framing
    quick = ["--set", "search.extra_crop_scales=[]", "--set", "search.zoom_below=0"]  # the flags are tested, not these
    assert _run(capsys, "config", "-w", ws, *quick, "--save")[0] == 0
    queries = [str(catalog_dir / "w1.png"), str(tmp_path / "gone.jpg"), str(catalog_dir / "w3.png")]
    code, out, err = _run(capsys, "search", *queries, "-w", ws, "--format", "json", "-k", "2", "--no-crop")
    data = json.loads(out)
    assert code == 1 and [item["query"] for item in data] == queries
    assert data[1]["error"] == f"{queries[1]}: no such file" and data[1]["results"] == []
    assert data[0]["box"] is None and Path(data[0]["results"][0]["path"]).name == "w1.png"
    assert data[2]["box"] is None and Path(data[2]["results"][0]["path"]).name == "w3.png"
    assert "1 of 3 queries could not be read" in err
    code, out, _ = _run(capsys, "search", queries[0], "-w", ws, "--format", "json", "--no-rerank")
    assert code == 0 and json.loads(out)[0]["reranked"] is False
    code, out, _ = _run(capsys, "search", queries[0], "-w", ws, "--format", "json")
    assert code == 0 and json.loads(out)[0]["box"] is not None  # cropped again without the flag


def test_index_of_another_folder_needs_replace(
    tmp_path: Path, catalog_dir: Path, fast_overrides: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    ws = str(tmp_path / "ws")
    sets = [arg for item in [*fast_overrides, "crop.enabled=false"] for arg in ("--set", item)]
    assert _run(capsys, "-w", ws, *sets, "index", str(catalog_dir))[0] == 0
    other = tmp_path / "other"
    shutil.copytree(catalog_dir / "sub", other)
    before = (tmp_path / "ws" / "index" / "catalog.npz").read_bytes()
    code, out, err = _run(capsys, "-w", ws, *sets, "index", str(other))
    assert code == 2 and out == "" and "--replace" in err and str(catalog_dir.resolve()) in err
    assert (tmp_path / "ws" / "index" / "catalog.npz").read_bytes() == before  # untouched
    assert _run(capsys, "-w", ws, *sets, "index", str(catalog_dir))[0] == 0  # the same folder: an update
    code, out, _ = _run(capsys, "-w", ws, *sets, "index", str(other), "--replace", "--format", "json")
    assert code == 0 and json.loads(out)["total"] == 1 and json.loads(out)["root"] == str(other.resolve())


def test_config_verb_prints_resolved_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "-w", str(tmp_path), "--set", "search.k=12", "config")
    assert code == 0 and "k: 12" in out


def test_config_save_keeps_overrides_for_later_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = _run(capsys, "-w", str(tmp_path), "--set", "backbone.weights=imagenet", "config")
    saved = tmp_path / "config.yaml"
    assert code == 0 and (not saved.exists() or "imagenet" not in saved.read_text())  # printing saves nothing
    code, _, err = _run(capsys, "-w", str(tmp_path), "--set", "backbone.weights=imagenet", "config", "--save")
    assert code == 0 and "saved to" in err
    code, out, _ = _run(capsys, "-w", str(tmp_path), "config")
    assert code == 0 and "weights: imagenet" in out


def test_train_triplets_holdout_skips_triplets_naming_the_held_out_fifth(
    tmp_path: Path, catalog_dir: Path, fast_overrides: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from itertools import permutations

    from tiefwatch.evaluation import is_holdout

    ws = str(tmp_path / "ws")
    sets = [arg for item in [*fast_overrides, "crop.enabled=false"] for arg in ("--set", item)]
    assert _run(capsys, "-w", ws, *sets, "index", str(catalog_dir))[0] == 0
    names = [f"w{i}.png" for i in range(5)]
    triplets = list(permutations(names, 3))
    (tmp_path / "t.csv").write_text("anchor,near,far\n" + "".join(f"{a},{n},{f}\n" for a, n, f in triplets))
    held = {name for name in names if is_holdout(name, 0.5)}
    assert 0 < len(held) <= 2  # the stable split leaves three photos to make triplets of
    code, out, _ = _run(
        capsys, "-w", ws, "train-triplets", str(tmp_path / "t.csv"), "--epochs", "1", "--holdout", "0.5",
        "--out", str(tmp_path / "m.pt"), "--format", "json",
    )  # fmt: skip
    summary = json.loads(out)
    expected = sum(bool(held & set(t)) for t in triplets)
    assert code == 0 and summary["held_out_skipped"] == expected and summary["triplets"] == len(triplets) - expected
