"""The judged-set tool: attribute files are validated, derived triplets are clear calls within one half, and
the picture-mode labelling flow writes through the labelling tool's writer, remembering skips between calls."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tiefwatch.config import Config
from tiefwatch.index import CatalogIndex, Entry
from tiefwatch.triplets import read_triplets
from tiefwatch.workspace import Workspace
from tools.judged_set import (
    ATTRIBUTES,
    RECHECK_KEY,
    agreement_summary,
    answer,
    ask,
    derive_triplets,
    half_of,
    read_attributes,
    recheck_verdicts,
    render_recheck_sheets,
    shared_count,
)


def write_attributes(path: Path, rows: list[list[str]]) -> Path:
    path.write_text("file," + ",".join(ATTRIBUTES) + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    return path


def test_attribute_values_outside_the_vocabulary_name_their_row(tmp_path: Path) -> None:
    path = write_attributes(
        tmp_path / "a.csv",
        [["a.jpg", "round", "silver", "black", "leather", "black"], ["b.jpg", "round", "purple", "black", "mesh", "x"]],
    )
    with pytest.raises(ValueError, match=r"a.csv:3: case_colour='purple'"):
        read_attributes(path)


def test_derived_triplets_are_clear_calls_inside_one_half(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    values = {
        "shape": ["round", "square"],
        "case_colour": ["silver", "gold"],
        "dial_colour": ["white", "black"],
        "strap_kind": ["leather", "bracelet"],
        "strap_colour": ["black", "silver"],
    }
    rows = [[f"w{i}.jpg", *(values[n][int(rng.integers(0, 2))] for n in ATTRIBUTES)] for i in range(60)]
    attributes = read_attributes(write_attributes(tmp_path / "a.csv", rows))
    triplets = derive_triplets(attributes, per_anchor=5, min_gap=2)
    assert len(triplets) > 100
    for anchor, near, far in triplets:
        assert half_of(anchor) == half_of(near) == half_of(far)
        gap = shared_count(attributes[anchor], attributes[near]) - shared_count(attributes[anchor], attributes[far])
        assert gap >= 2


@pytest.fixture
def picture_workspace(tmp_path: Path, catalog_dir: Path) -> Workspace:
    paths = sorted(p.relative_to(catalog_dir).as_posix() for p in catalog_dir.rglob("*.png"))
    vectors = np.random.default_rng(1).normal(size=(len(paths), 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    workspace = Workspace(tmp_path / "ws")
    config = Config()
    CatalogIndex(catalog_dir.resolve(), [Entry(p, 1, 1, "0" * 40) for p in paths], vectors, {}, config).save(
        workspace.index_path
    )
    config.save(workspace.config_path)
    return workspace


def test_ask_answer_writes_triplets_and_remembers_skips(tmp_path: Path, picture_workspace: Workspace) -> None:
    ws, csv_path = str(picture_workspace.root), tmp_path / "direct.csv"
    state, image = tmp_path / "ann.json", tmp_path / "q.png"
    first = ask(ws, csv_path, "ann", state, image)
    assert image.exists() and len(first["candidates"]) == 5
    answer(ws, csv_path, "ann", state, None, [])  # skip
    second = ask(ws, csv_path, "ann", state, image)
    assert second["anchor"] != first["anchor"], "a skipped anchor must not come straight back"
    with pytest.raises(ValueError, match="not on the sheet"):
        answer(ws, csv_path, "ann", state, 1, [9])
    result = answer(ws, csv_path, "ann", state, 2, [1, 3])
    assert result["written"] == 2 and not state.exists()
    triplets = read_triplets(csv_path).triplets
    assert [(t.anchor, t.near, t.far) for t in triplets] == [
        (second["anchor"], second["candidates"][1], second["candidates"][0]),
        (second["anchor"], second["candidates"][1], second["candidates"][2]),
    ]
    with pytest.raises(ValueError, match="no question is pending"):
        answer(ws, csv_path, "ann", state, 1, [2])


def test_shards_never_share_an_anchor(tmp_path: Path, picture_workspace: Workspace) -> None:
    ws = str(picture_workspace.root)
    anchors = []
    for shard in ("0/2", "1/2"):
        state = tmp_path / f"{shard[0]}.json"
        asked = ask(ws, tmp_path / "t.csv", f"a{shard[0]}", state, tmp_path / "q.png", shard)
        anchors.append(json.loads(state.read_text())["anchor"])
        assert asked["anchor"] == anchors[-1]
    assert anchors[0] != anchors[1]


def test_training_rows_leave_out_anchors_the_retrieval_benchmark_queries(tmp_path: Path) -> None:
    from tiefwatch.evaluation import is_holdout
    from tools.judged_set import training_rows

    names = [f"w{i}.jpg" for i in range(40)]
    held = [n for n in names if is_holdout(n, 0.2)]
    assert held, "the fixture needs at least one held-out watch"
    (tmp_path / "direct-A.csv").write_text(
        "anchor,near,far\n" + "".join(f"{a},{b},{c}\n" for a, b, c in zip(names, names[1:], names[2:], strict=False))
    )
    kinds = ["round", "square"]
    write_attributes(
        tmp_path / "attributes.csv",
        [[n, kinds[i % 2], "silver", ["white", "black"][i // 2 % 2], "leather", "black"] for i, n in enumerate(names)],
    )
    every = training_rows(tmp_path, per_anchor=3, min_gap=1, seed=0)
    kept = training_rows(tmp_path, per_anchor=3, min_gap=1, seed=0, holdout=0.2)
    assert any(row[0] in held for row in every)
    assert kept == [row for row in every if row[0] not in held]
    assert {row[3] for row in kept} == {"direct", "attributes"}


def test_a_blind_second_opinion_is_scored_against_the_first_annotators_call(tmp_path: Path) -> None:
    import csv

    from tiefwatch.images import save_image

    catalog = tmp_path / "catalog"
    for number in range(6):
        save_image(catalog / f"w{number}.jpg", np.full((40, 40, 3), 40 * number, np.uint8))
    judged = [("w0.jpg", "w1.jpg", "w2.jpg"), ("w3.jpg", "w4.jpg", "w5.jpg"), ("w0.jpg", "w2.jpg", "w5.jpg")]
    sheets = render_recheck_sheets(judged, catalog, tmp_path / "recheck", per_sheet=2, seed=1)
    assert [path.name for path in sheets] == ["recheck_00.png", "recheck_01.png"] and all(p.exists() for p in sheets)
    with open(tmp_path / "recheck" / RECHECK_KEY, newline="") as handle:
        key = list(csv.DictReader(handle))
    assert sorted((k["anchor"], k["near"], k["far"]) for k in key) == sorted(judged)  # each once, blind order
    templates = [(tmp_path / "recheck" / f"recheck_{n:02d}.csv").read_text().split() for n in range(2)]
    assert templates == [["number,choice", "1,", "2,"], ["number,choice", "3,"]]

    # The second annotator agrees on #1, picks the other candidate on #2 and cannot call #3.
    near_is = {k["number"]: k["near_is"] for k in key}
    other = {"1": "2", "2": "1"}
    (tmp_path / "recheck" / "recheck_00.filled.csv").write_text(
        f"number,choice\n1,{near_is['1']}\n2,{other[near_is['2']]}\n"
    )
    (tmp_path / "recheck" / "recheck_01.filled.csv").write_text("number,choice\n3,0\n")
    verdicts = {(a, n, f): v for a, n, f, v in recheck_verdicts(tmp_path / "recheck")}
    by_number = {k["number"]: verdicts[(k["anchor"], k["near"], k["far"])] for k in key}
    assert by_number == {"1": "agree", "2": "disagree", "3": "toss-up"}
    summary = agreement_summary(list(recheck_verdicts(tmp_path / "recheck")))
    assert summary["agreement"] == 0.5 and summary["toss-up"] == 1 and summary["unanswered"] == 0

    (tmp_path / "recheck" / "recheck_01.filled.csv").write_text("number,choice\n3,yes\n")
    with pytest.raises(ValueError, match=r"recheck_01.filled.csv:2: choice 'yes'"):
        recheck_verdicts(tmp_path / "recheck")
