#!/usr/bin/env python
"""Photo-condition benchmark: recall@1/5/10 and crop IoU, one row per way people photograph a watch.

Each condition (``bbox.conditions``: standard, close-up, far, tilt, glare, lamp, wrist, phone, tiny) shoots its own
queries of the dev watches held out of every training run (``tiefwatch.evaluation.is_holdout``) and searches them
in memory through the whole pipeline, beside the whole photo through the backbone alone (no crop) and the true box
embedded the index's way. One row more, ``cut``, cuts the standard row's photos to the watch's exact box (a photo
that is all watch): the same watches with and without their surroundings. A contact sheet per row shows the first
queries with their true box (green), the box the pipeline cut (red) and its first results (the right watch framed
green). Writes its section of docs/benchmarks.md with the command.

    python tools/bench_conditions.py --catalog ../shared/data/watch-catalog-dev --queries 300
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bbox.box import BoundingBox  # noqa: E402
from bbox.conditions import CONDITIONS, DESCRIPTIONS, condition_params, cut_to_watch  # noqa: E402
from bbox.scenery import builtin_backgrounds  # noqa: E402
from bbox.synth import PhotoSimulator, Scene  # noqa: E402
from tiefwatch.evaluation import is_holdout, rank_of, recall_at  # noqa: E402
from tiefwatch.images import list_images, load_image, save_image  # noqa: E402
from tiefwatch.index import CatalogIndex, index_catalog  # noqa: E402
from tiefwatch.progress import progress_bar  # noqa: E402
from tiefwatch.search import QueryResult, Searcher  # noqa: E402
from tiefwatch.sheet import draw_box, grid, labelled, thumbnail  # noqa: E402
from tiefwatch.workspace import Workspace  # noqa: E402
from tools.benchdoc import machine_line, write_section  # noqa: E402

KS = (1, 5, 10)
CHUNK = 16  # queries simulated, searched and dropped together: 12 MP frames do not all fit in memory
SHEET_QUERIES = 8
TRUE_COLOUR, CUT_COLOUR = (40, 200, 40), (255, 40, 40)
# Not a simulator condition: the standard row's photos, each cut to its watch's exact box (a photo that is all watch,
# as a user sends after cropping one), so the two rows compare the same watches and scenes with and without context.
CUT = "cut"
ROWS = (*CONDITIONS, CUT)
ROW_DESCRIPTIONS = {**DESCRIPTIONS, CUT: "the standard row's photos cut to the watch's exact box: all watch"}


def shot_as(name: str) -> str:
    """The simulator condition a benchmark row's photos are shot in."""
    return "standard" if name == CUT else name


def framed(name: str, scene: Scene) -> Scene:
    """A row's query photo from its shot: the ``cut`` row cuts the scene to its watch, the others keep it."""
    return cut_to_watch(scene) if name == CUT else scene


def condition_seed(seed: int, name: str) -> int:
    """The standard condition keeps ``seed`` itself, so its queries are ``make bench``'s; the others their own."""
    name = shot_as(name)
    return seed if name == "standard" else seed + 1 + list(CONDITIONS).index(name)


def ranks_by_vectors(catalogue: np.ndarray, queries: np.ndarray, truth_rows: list[int], depth: int = 10) -> list:
    top = np.argsort(-(queries @ catalogue.T), axis=1)[:, :depth]
    return [int(np.where(row == t)[0][0]) + 1 if t in row else None for row, t in zip(top, truth_rows, strict=True)]


def run_condition(
    name: str,
    searcher: Searcher,
    holdout: list[Path],
    row_of: dict[Path, int],
    count: int,
    seed: int,
    backgrounds: list[np.ndarray],
    shoot: Callable[[np.ndarray, np.random.Generator], Scene] | None = None,
    description: str | None = None,
) -> tuple[dict, list[tuple[np.ndarray, BoundingBox, Path, QueryResult]]]:
    """Shoot ``count`` queries of distinct held-out watches in this condition and score the three ways.

    ``shoot`` replaces the product's simulator (another simulator's condition ``name``, drawn from ``seed``
    itself); ``description`` is then the row's."""
    if shoot is None:
        seed = condition_seed(seed, name)
        simulator = PhotoSimulator(backgrounds, condition_params(shot_as(name)), seed=seed)

        def shoot(catalog: np.ndarray, rng: np.random.Generator) -> Scene:
            return framed(name, simulator(catalog, rng))

    rng = np.random.default_rng(seed)
    picks = rng.choice(len(holdout), size=min(count, len(holdout)), replace=False)
    embedder = searcher.pipeline.embedder
    pad = searcher.config.crop.pad
    ranks: dict[str, list] = {"whole": [], "true_box": [], "pipeline": []}
    ious, whole_photo, seconds, kept = [], 0, 0.0, []
    with progress_bar(f"{name}", total=len(picks)) as advance:
        for start in range(0, len(picks), CHUNK):
            paths = [holdout[int(p)] for p in picks[start : start + CHUNK]]
            scenes = [shoot(load_image(path), rng) for path in paths]
            images = [scene.image for scene in scenes]
            truth = [row_of[path.resolve()] for path in paths]
            ranks["whole"] += ranks_by_vectors(searcher.index.vectors, embedder.embed(images), truth)
            true_crops = [
                s.box.to_square(pad=pad, w=s.image.shape[1], h=s.image.shape[0]).crop(s.image) for s in scenes
            ]
            ranks["true_box"] += ranks_by_vectors(searcher.index.vectors, embedder.embed(true_crops), truth)
            started = time.perf_counter()
            results = searcher.search_images(images, [str(p) for p in paths], k=10)
            seconds += time.perf_counter() - started
            for scene, path, result in zip(scenes, paths, results, strict=True):
                ranks["pipeline"].append(rank_of(path, [hit.path for hit in result.results]))
                if result.box is None:
                    whole_photo += 1
                    h, w = scene.image.shape[:2]
                    ious.append(BoundingBox(0, 0, w, h).iou(scene.box))
                else:
                    ious.append(BoundingBox.from_list(result.box).iou(scene.box))
                if len(kept) < SHEET_QUERIES:
                    kept.append((scene.image, scene.box, path, result))
            advance(len(paths))
    iou = np.array(ious)
    row = {
        "condition": name,
        "description": description or ROW_DESCRIPTIONS[name],
        "queries": len(picks),
        **{f"{way}_R@{k}": round(recall_at(r, k), 3) for way, r in ranks.items() for k in KS},
        "mean_iou": round(float(iou.mean()), 3),
        "iou_at_50": round(float((iou >= 0.5).mean()), 3),
        "whole_photo": whole_photo,
        "ms_per_query": round(seconds / max(len(picks), 1) * 1000, 1),
    }
    return row, kept


def write_sheet(name: str, kept: list, out: Path) -> Path:
    """One row per query: the photo with its true (green) and cut (red) boxes, then the first five results."""
    rows = []
    for image, true_box, truth, result in kept:
        shown = draw_box(image, true_box.as_list(), TRUE_COLOUR)
        if result.box is not None:
            shown = draw_box(shown, result.box, CUT_COLOUR)
        confidence = result.framing.confidence if result.framing is not None else None
        label = f"{name} {confidence:.2f}" if confidence is not None else f"{name} whole photo"
        row = [labelled(thumbnail(shown), label)]
        for hit in result.results[:5]:
            tile = thumbnail(load_image(hit.path))
            right = Path(hit.path).resolve() == truth.resolve()
            if right:
                tile = draw_box(tile, [0, 0, tile.shape[1], tile.shape[0]], TRUE_COLOUR)
            row.append(labelled(tile, f"#{hit.rank} {hit.score:.3f}" + (" right" if right else "")))
        rows.append(row)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(out, grid(rows), quality=80)
    return out


def render(f: dict) -> str:
    lines = [
        "## Photo conditions: the pipeline across the ways people photograph a watch",
        "",
        "```",
        f["command"],
        "```",
        "",
        *([f["note"], ""] if f.get("note") else []),
        f"{machine_line()}. Catalogue: {f['catalogue']} real photos, indexed in this run's workspace; "
        f"{f['queries']} queries a condition, each of a distinct watch of the {f['holdout']} held out of every "
        "training run, searched in memory. *Whole photo*: the photo through the backbone alone, no crop. "
        "*True box*: the pasted watch's exact box, cut and embedded the index's way. *Pipeline*: crop, embed, "
        "FAISS, re-rank, as `tiefwatch search` runs. IoU: the pipeline's box against the true box (a photo the "
        "pipeline left whole is scored as the whole frame).",
        "",
    ]
    return "\n".join(lines + table_lines(f["rows"])) + "\n"


def table_lines(rows: list[dict]) -> list[str]:
    """The figures of each row and its contact sheet, as both condition benchmarks print them."""
    lines = [
        "| condition | whole photo R@1 / R@10 | true box R@1 / R@10 | pipeline R@1 | R@5 | R@10 | crop mean IoU "
        "| IoU ≥ 0.5 | left whole | ms/query |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['condition']} ({r['description']}) | {r['whole_R@1']:.3f} / {r['whole_R@10']:.3f} "
            f"| {r['true_box_R@1']:.3f} / {r['true_box_R@10']:.3f} | {r['pipeline_R@1']:.3f} "
            f"| {r['pipeline_R@5']:.3f} | {r['pipeline_R@10']:.3f} | {r['mean_iou']:.3f} | {r['iou_at_50']:.1%} "
            f"| {r['whole_photo']} | {r['ms_per_query']} |"
        )
    lines += ["", "Contact sheets (true box green, the pipeline's box red, the right watch framed green):", ""]
    lines += [f"- {r['condition']}: ![{r['condition']}]({r['sheet']})" for r in rows]
    return lines
    return "\n".join(lines) + "\n"


def benchmark_arguments(parser: argparse.ArgumentParser, queries: int, names: list[str], section: str) -> None:
    """The arguments both condition benchmarks take; ``names``: the conditions, all run by default."""
    parser.add_argument("--catalog", type=Path, default=ROOT.parent / "shared/data/watch-catalog-dev")
    parser.add_argument("--queries", type=int, default=queries, help="queries a condition")
    parser.add_argument("--conditions", default=",".join(names), help=f"comma-separated: {', '.join(names)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workspace", type=Path, help="keep the index here (default: a temp folder)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks.md")
    parser.add_argument("--section", default=section, help="docs/benchmarks.md section to (re)write")
    parser.add_argument("--sheets", type=Path, default=ROOT / f"docs/images/{section}", help="contact sheet folder")
    parser.add_argument("--note", default="", help="how the workspace was prepared, printed under the command")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")


def chosen_conditions(args: argparse.Namespace, known: list[str]) -> list[str] | None:
    """The conditions asked for, or None (and why, on stderr) where the catalogue or a name is wrong."""
    if not args.catalog.is_dir():
        print(f"catalogue not found: {args.catalog}", file=sys.stderr)
        return None
    names = [n.strip() for n in args.conditions.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown condition(s): {', '.join(unknown)}; known: {', '.join(known)}", file=sys.stderr)
        return None
    return names


@dataclass
class Bench:
    """The dev catalogue indexed in the benchmark's workspace, and what each row needs of it."""

    searcher: Searcher
    catalogue: list[Path]
    holdout: list[Path]  # the watches held out of every training run: the only ones shot as queries
    row_of: dict[Path, int]  # resolved catalogue path -> its index row


def open_bench(args: argparse.Namespace) -> Bench:
    """Index the catalogue (in ``--workspace`` or a temp folder; an index already there is kept) and load it."""
    workspace = Workspace(args.workspace or Path(tempfile.mkdtemp(prefix=f"tiefwatch-{args.section}-")))
    config = workspace.load_config(overrides=list(args.set))
    catalogue = list_images(args.catalog)
    index_catalog(args.catalog, workspace, config, show_progress=True)
    index = CatalogIndex.load(workspace.index_path, config)
    return Bench(
        Searcher(workspace, config, index=index),
        catalogue,
        [p for p in catalogue if is_holdout(p.name)],
        {index.path_of(i).resolve(): i for i in range(len(index))},
    )


def finish_row(args: argparse.Namespace, row: dict, kept: list) -> dict:
    """Write a row's contact sheet beside its figures (the path as docs/benchmarks.md links it) and show the row."""
    sheet = write_sheet(row["condition"], kept, args.sheets / f"{row['condition']}.jpg")
    row["sheet"] = str(sheet.resolve().relative_to(args.out.resolve().parent)) if args.out else str(sheet)
    print(json.dumps(row), file=sys.stderr)
    return row


def publish(
    args: argparse.Namespace, tool: str, bench: Bench, rows: list[dict], render: Callable[[dict], str], **extra: object
) -> None:
    """The figures, with the command that made them, as JSON (``--json``) and as their section of
    docs/benchmarks.md, and printed."""
    command = f"python tools/{tool} " + " ".join(shlex.quote(a) for a in args.argv)
    figures = {
        "command": command,
        "note": args.note,
        "catalogue": len(bench.catalogue),
        "holdout": len(bench.holdout),
        "queries": args.queries,
        "rows": rows,
        **extra,
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    write_section(args.out, args.section, render(figures))
    print(render(figures))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchmark_arguments(parser, queries=300, names=list(ROWS), section="conditions")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    names = chosen_conditions(args, list(ROWS))
    if names is None:
        return 2
    bench = open_bench(args)
    backgrounds = builtin_backgrounds()
    rows = []
    for name in names:
        row, kept = run_condition(
            name, bench.searcher, bench.holdout, bench.row_of, args.queries, args.seed, backgrounds
        )
        rows.append(finish_row(args, row, kept))
    publish(args, "bench_conditions.py", bench, rows, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
