#!/usr/bin/env python
"""The pipeline on photos from a simulator it never trained on: recall@1/5/10 and crop IoU a condition.

``tools/bench_conditions.py`` shoots its queries with ``bbox.synth``, the simulator every model here learned from;
this benchmark shoots them with ``tools/independent_scenes.py``, written apart from it (other cut-out, geometry,
scenes, light and camera) and never used in training, in the four conditions of ``../shared/MEASURED.md``'s hidden
benchmark: standard, close-up, far and harsh. Same held-out watches, same scoring, same contact sheets. Writes its
section of docs/benchmarks.md with the command.

    python tools/bench_independent.py --catalog ../shared/data/watch-catalog-dev --queries 300
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.bench_conditions import (  # noqa: E402
    benchmark_arguments,
    chosen_conditions,
    finish_row,
    open_bench,
    publish,
    run_condition,
    table_lines,
)
from tools.benchdoc import machine_line  # noqa: E402
from tools.independent_scenes import CONDITIONS, DESCRIPTIONS, IndependentSimulator, unseen_photos  # noqa: E402

SEED_OFFSET = 7_000  # queries of their own, not the conditions benchmark's


def render(f: dict) -> str:
    lines = [
        "## Photos from a simulator the product never trained on",
        "",
        "```",
        f["command"],
        "```",
        "",
        *([f["note"], ""] if f.get("note") else []),
        f"{machine_line()}. Catalogue: {f['catalogue']} real photos; {f['queries']} queries a condition, each of a "
        f"distinct watch of the {f['holdout']} held out of every training run, shot by `tools/independent_scenes.py` "
        f"(its own cut-out, 3-D rotation, wood / fabric / desk / bokeh scenes and {f['unseen_photos']} sample photos "
        "no training run uses, black-body light, disc or shake blur, PIL JPEG) and searched in memory as "
        "`tiefwatch search` runs. Columns as in the photo-condition benchmark.",
        "",
    ]
    return "\n".join(lines + table_lines(f["rows"])) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchmark_arguments(parser, queries=300, names=list(CONDITIONS), section="independent")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    names = chosen_conditions(args, list(CONDITIONS))
    if names is None:
        return 2
    bench = open_bench(args)
    photos = unseen_photos()
    rows = []
    for offset, name in enumerate(CONDITIONS):  # each condition's queries drawn from its own seed
        if name in names:
            simulator = IndependentSimulator(CONDITIONS[name], photos)
            seed = args.seed + SEED_OFFSET + offset
            row, kept = run_condition(
                name, bench.searcher, bench.holdout, bench.row_of, args.queries, seed, [], simulator, DESCRIPTIONS[name]
            )
            rows.append(finish_row(args, row, kept))
    publish(args, "bench_independent.py", bench, rows, render, unseen_photos=len(photos))
    return 0


if __name__ == "__main__":
    sys.exit(main())
