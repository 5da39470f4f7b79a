#!/usr/bin/env python
"""Case colour under a lamp: does a gold watch photographed under tungsten light still bring back gold watches?

Each of the judged set's labelled watches (benchmarks/judged/attributes.csv: silver, gold, rose, two-tone, black
cases) is shot under tungsten light, under blue shade and in the standard envelope, and searched through the
whole pipeline with the room light's correction off and on (``search.correct_light``). A shot's case colour is
read off its results: the majority among the first five labelled catalogue watches other than itself. Writes a
confusion table per setting to its section of docs/benchmarks.md.

    python tools/bench_lamp_colour.py --catalog ../shared/data/watch-catalog-dev --workspace WS
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bbox.conditions import condition_params  # noqa: E402
from bbox.scenery import builtin_backgrounds  # noqa: E402
from bbox.synth import PhotoSimulator  # noqa: E402
from tiefwatch.images import load_image  # noqa: E402
from tiefwatch.index import CatalogIndex, index_catalog  # noqa: E402
from tiefwatch.progress import progress_bar  # noqa: E402
from tiefwatch.search import Searcher  # noqa: E402
from tiefwatch.workspace import Workspace  # noqa: E402
from tools.benchdoc import machine_line, write_section  # noqa: E402

COLOURS = ("silver", "gold", "rose", "two-tone", "black")
LIGHTS = {
    "daylight (standard)": condition_params("standard"),
    "tungsten lamp": replace(condition_params("lamp"), illuminants=("tungsten",)),
    "blue shade": replace(condition_params("lamp"), illuminants=("shade",)),
}
CHUNK = 16
VOTES = 5


def read_case_colours(path: Path) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["file"]: row["case_colour"] for row in csv.DictReader(handle) if row["case_colour"] in COLOURS}


def voted_colour(result_paths: list[str], own: str, colours: dict[str, str]) -> str | None:
    """The majority case colour of the first ``VOTES`` labelled results other than the watch itself (ties go
    to the colour ranked first)."""
    votes = [colours[Path(p).name] for p in result_paths if Path(p).name in colours and Path(p).name != own][:VOTES]
    if not votes:
        return None
    counts = Counter(votes)
    best = max(counts.values())
    return next(v for v in votes if counts[v] == best)


def run(searcher: Searcher, files: list[Path], colours: dict[str, str], params, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    simulator = PhotoSimulator(builtin_backgrounds(), params, seed=seed)
    confusion: dict[str, Counter] = {c: Counter() for c in COLOURS}
    with progress_bar("Shots", total=len(files)) as advance:
        for start in range(0, len(files), CHUNK):
            chunk = files[start : start + CHUNK]
            images = [simulator(load_image(path), rng).image for path in chunk]
            results = searcher.search_images(images, [p.name for p in chunk], k=searcher.config.rerank.top_k)
            for path, result in zip(chunk, results, strict=True):
                voted = voted_colour([h.path for h in result.results], path.name, colours)
                confusion[colours[path.name]][voted or "none"] += 1
            advance(len(chunk))
    total = sum(sum(c.values()) for c in confusion.values())
    right = sum(confusion[c][c] for c in COLOURS)
    return {"accuracy": round(right / max(total, 1), 3), "confusion": {c: dict(v) for c, v in confusion.items()}}


def render(f: dict) -> str:
    lines = [
        "## Case colour under a lamp: the room light judged around the watch",
        "",
        "```",
        f["command"],
        "```",
        "",
        f"{machine_line()}. {f['watches']} labelled watches of the judged set, each shot once per light (seed "
        f"{f['seed']}) and searched through the whole pipeline; a shot's case colour is the majority of the first "
        f"{VOTES} labelled results other than itself. Correction: `search.correct_light` (ranking.illuminant).",
        "",
        "| light | correction | case colour right | gold read as silver | silver read as gold | rose read as gold "
        "| black read as silver |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in f["rows"]:
        m = r["confusion"]

        def share(truth: str, read: str, m: dict = m) -> str:
            n = sum(m[truth].values())
            return f"{m[truth].get(read, 0) / max(n, 1):.0%} of {n}"

        lines.append(
            f"| {r['light']} | {r['correction']} | {r['accuracy']:.3f} | {share('gold', 'silver')} "
            f"| {share('silver', 'gold')} | {share('rose', 'gold')} | {share('black', 'silver')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=ROOT.parent / "shared/data/watch-catalog-dev")
    parser.add_argument("--attributes", type=Path, default=ROOT / "benchmarks/judged/attributes.csv")
    parser.add_argument("--workspace", type=Path, help="keep the index here (default: a temp folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks.md")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if not args.catalog.is_dir():
        print(f"catalogue not found: {args.catalog}", file=sys.stderr)
        return 2
    command = "python tools/bench_lamp_colour.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    workspace = Workspace(args.workspace or Path(tempfile.mkdtemp(prefix="tiefwatch-lamp-")))
    colours = read_case_colours(args.attributes)
    files = sorted(args.catalog / name for name in colours if (args.catalog / name).is_file())
    base = workspace.load_config(overrides=list(args.set))
    index_catalog(args.catalog, workspace, base, show_progress=True)
    index = CatalogIndex.load(workspace.index_path, base)
    rows = []
    for light, params in LIGHTS.items():
        for correct in (False, True):
            config = workspace.load_config(overrides=[*args.set, f"search.correct_light={str(correct).lower()}"])
            searcher = Searcher(workspace, config, index=index)
            figures = run(searcher, files, colours, params, args.seed)
            rows.append({"light": light, "correction": "on" if correct else "off", **figures})
            print(json.dumps(rows[-1]), file=sys.stderr)
    figures = {"command": command, "watches": len(files), "seed": args.seed, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    write_section(args.out, "lamp-colour", render(figures))
    print(render(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
