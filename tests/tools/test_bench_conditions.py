"""The scaffolding both condition benchmarks share: which conditions run, and their arguments."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tools.bench_conditions import ROWS, benchmark_arguments, chosen_conditions
from tools.independent_scenes import CONDITIONS


def _args(tmp_path: Path, names: list[str], *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    benchmark_arguments(parser, queries=300, names=names, section="independent")
    return parser.parse_args(["--catalog", str(tmp_path), *argv])


def test_every_condition_runs_unless_some_are_named(tmp_path: Path) -> None:
    assert chosen_conditions(_args(tmp_path, list(CONDITIONS)), list(CONDITIONS)) == list(CONDITIONS)
    chosen = _args(tmp_path, list(ROWS), "--conditions", "far, cut")
    assert chosen_conditions(chosen, list(ROWS)) == ["far", "cut"]
    args = _args(tmp_path, list(CONDITIONS))
    assert args.sheets.parts[-2:] == ("images", "independent") and args.section == "independent"


@pytest.mark.parametrize("problem", ["unknown", "missing catalogue"])
def test_a_wrong_name_or_catalogue_is_refused_with_a_reason(tmp_path: Path, problem: str, capsys) -> None:
    if problem == "unknown":
        args = _args(tmp_path, list(CONDITIONS), "--conditions", "standard,lamp")
        expected = "unknown condition(s): lamp; known: standard, close-up, far, harsh"
    else:
        args = _args(tmp_path / "nowhere", list(CONDITIONS))
        expected = "catalogue not found"
    assert chosen_conditions(args, list(CONDITIONS)) is None
    assert expected in capsys.readouterr().err
