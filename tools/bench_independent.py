#!/usr/bin/env python
"""The pipeline on photos from a simulator it never trained on: recall@1/5/10 and crop IoU a condition.

``tools/bench_conditions.py`` shoots its queries with ``bbox.synth``, the simulator every model here learned from;
this benchmark shoots them with ``tools/independent_scenes.py``, written apart from it (other cut-out, geometry,
scenes, light and camera) and never used in training, in the four conditions of ``../shared/MEASURED.md``'s hidden
benchmark: standard, close-up, far and harsh. Same held-out watches, same scoring, same contact sheets. Writes its
section of docs/benchmarks.md with the command.

    python tools/bench_independent.py --catalog ../shared/data/watch-catalog-dev --queries 200
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tiefwatch.evaluation import is_holdout  # noqa: E402
from tiefwatch.images import list_images  # noqa: E402
from tiefwatch.index import CatalogIndex, index_catalog  # noqa: E402
from tiefwatch.search import Searcher  # noqa: E402
from tiefwatch.workspace import Workspace  # noqa: E402
from tools.bench_conditions import run_condition, write_sheet  # noqa: E402
from tools.benchdoc import machine_line, write_section  # noqa: E402
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
        "| condition | whole photo R@1 / R@10 | true box R@1 / R@10 | pipeline R@1 | R@5 | R@10 | crop mean IoU "
        "| IoU ≥ 0.5 | left whole | ms/query |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in f["rows"]:
        lines.append(
            f"| {r['condition']} ({r['description']}) | {r['whole_R@1']:.3f} / {r['whole_R@10']:.3f} "
            f"| {r['true_box_R@1']:.3f} / {r['true_box_R@10']:.3f} | {r['pipeline_R@1']:.3f} "
            f"| {r['pipeline_R@5']:.3f} | {r['pipeline_R@10']:.3f} | {r['mean_iou']:.3f} | {r['iou_at_50']:.1%} "
            f"| {r['whole_photo']} | {r['ms_per_query']} |"
        )
    lines += ["", "Contact sheets (true box green, the pipeline's box red, the right watch framed green):", ""]
    lines += [f"- {r['condition']}: ![{r['condition']}]({r['sheet']})" for r in f["rows"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=ROOT.parent / "shared/data/watch-catalog-dev")
    parser.add_argument("--queries", type=int, default=200, help="queries a condition")
    parser.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated condition names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workspace", type=Path, help="keep the index here (default: a temp folder)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks.md")
    parser.add_argument("--section", default="independent", help="docs/benchmarks.md section to (re)write")
    parser.add_argument("--sheets", type=Path, default=ROOT / "docs/images/independent", help="contact sheets")
    parser.add_argument("--note", default="", help="how the workspace was prepared, printed under the command")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if not args.catalog.is_dir():
        print(f"catalogue not found: {args.catalog}", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.conditions.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown:
        print(f"unknown condition(s): {', '.join(unknown)}; known: {', '.join(CONDITIONS)}", file=sys.stderr)
        return 2
    command = "python tools/bench_independent.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))

    workspace = Workspace(args.workspace or Path(tempfile.mkdtemp(prefix="tiefwatch-independent-")))
    config = workspace.load_config(overrides=list(args.set))
    catalogue = list_images(args.catalog)
    holdout = [p for p in catalogue if is_holdout(p.name)]
    index_catalog(args.catalog, workspace, config, show_progress=True)
    index = CatalogIndex.load(workspace.index_path, config)
    row_of = {index.path_of(i).resolve(): i for i in range(len(index))}
    searcher = Searcher(workspace, config, index=index)
    photos = unseen_photos()

    rows = []
    for offset, name in enumerate(CONDITIONS):
        if name not in names:
            continue
        simulator = IndependentSimulator(CONDITIONS[name], photos)
        row, kept = run_condition(
            name,
            searcher,
            holdout,
            row_of,
            args.queries,
            args.seed + SEED_OFFSET + offset,
            [],
            shoot=simulator,
            description=DESCRIPTIONS[name],
        )
        sheet = write_sheet(name, kept, args.sheets / f"{name}.jpg")
        row["sheet"] = str(sheet.resolve().relative_to(args.out.resolve().parent)) if args.out else str(sheet)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    figures = {
        "command": command,
        "note": args.note,
        "catalogue": len(catalogue),
        "holdout": len(holdout),
        "queries": args.queries,
        "unseen_photos": len(photos),
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    write_section(args.out, args.section, render(figures))
    print(render(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
