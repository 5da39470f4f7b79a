#!/usr/bin/env python
"""What each backbone run buys: recall of held-out condition queries in FAISS order, for each way of making the
query's vector and each way the catalogue was indexed.

A query pays for its crop scales (``search.extra_crop_scales``: two runs) and a catalogue photo for its views
(``index.views``: four runs). This shoots held-out watches in every photo condition (``bbox.conditions``), cuts each
photo as ``tiefwatch search`` does, and scores by exact cosine, before re-ranking:

- query *all crops*: the crop and its extra scales averaged, as searched; *one crop*: the crop alone;
- catalogue: the workspace's own index, and any ``--compare LABEL=WS`` (another workspace indexed from the same
  catalogue with other settings, e.g. ``--set index.views=0``); ``LABEL=WS1+WS2`` averages two indexes' vectors
  (four standard views and four condition views: eight views).

    python tools/bench_runs.py --workspace WS --compare 'no views=WS0' --queries 150
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bbox.conditions import CONDITIONS, condition_params  # noqa: E402
from bbox.scenery import builtin_backgrounds  # noqa: E402
from bbox.synth import PhotoSimulator  # noqa: E402
from tiefwatch.evaluation import is_holdout, recall_at  # noqa: E402
from tiefwatch.images import load_image  # noqa: E402
from tiefwatch.index import CatalogIndex  # noqa: E402
from tiefwatch.pipeline import Pipeline  # noqa: E402
from tiefwatch.progress import progress_bar  # noqa: E402
from tiefwatch.search import Searcher  # noqa: E402
from tiefwatch.workspace import Workspace  # noqa: E402
from tools.bench_conditions import condition_seed, ranks_by_vectors  # noqa: E402
from tools.benchdoc import machine_line, write_section  # noqa: E402

CHUNK = 8  # photos simulated and cut together (12 MP frames)
QUERY_WAYS = ("all crops", "one crop")


def catalogue_vectors(spec: str, paths: list[str]) -> np.ndarray:
    """The unit vectors of one or more indexed workspaces (``WS1+WS2``: their renormalised sum), rows in ``paths``'
    order; refuses an index of another catalogue."""
    total = None
    for folder in spec.split("+"):
        workspace = Workspace(Path(folder))
        index = CatalogIndex.load(workspace.index_path, workspace.load_config())
        if [str(index.path_of(i).resolve()) for i in range(len(index))] != paths:
            raise SystemExit(f"{folder}: indexes another catalogue (or another order) than --workspace")
        total = index.vectors.copy() if total is None else total + index.vectors
    assert total is not None
    return total / np.maximum(np.linalg.norm(total, axis=1, keepdims=True), 1e-12)


def query_vectors(pipeline: Pipeline, images: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Each photo's vector both ways, from its first framing (the crop network's box, or the whole photo)."""
    cut = pipeline.query_crops(images)
    vectors = pipeline.embedder.embed(cut.crops)
    averaged = cut.candidate_vectors(vectors)
    first = np.flatnonzero(np.r_[True, cut.photo_of[1:] != cut.photo_of[:-1]])  # each photo's own framing
    return {"all crops": averaged[first], "one crop": vectors[first]}  # a candidate's own crop comes first


def recall(queries: np.ndarray, catalogue: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Recall@k by exact cosine, ranked as the conditions benchmark ranks its whole-photo and true-box rows."""
    return recall_at(ranks_by_vectors(catalogue, queries, [int(t) for t in truth], depth=k), k)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True, help="an indexed workspace (the pipeline as built)")
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=WS[+WS]", help="other indexes")
    parser.add_argument("--queries", type=int, default=150, help="queries a condition")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks.md")
    parser.add_argument("--section", default="runs")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    command = "python tools/bench_runs.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    names = [n.strip() for n in args.conditions.split(",") if n.strip()]

    workspace = Workspace(args.workspace)
    searcher = Searcher(workspace, workspace.load_config())
    paths = [str(searcher.index.path_of(i).resolve()) for i in range(len(searcher.index))]
    catalogues = {"as built": searcher.index.vectors}
    for spec in args.compare:
        label, _, folders = spec.partition("=")
        catalogues[label] = catalogue_vectors(folders, paths)
    holdout = np.flatnonzero([is_holdout(Path(p).name) for p in paths])
    if not len(holdout):
        raise SystemExit("no catalogue photo is held out of training (tiefwatch.evaluation.is_holdout): nothing to ask")
    backgrounds = builtin_backgrounds()

    rows: dict[tuple[str, str], list[tuple[float, float]]] = {
        (way, label): [] for way in QUERY_WAYS for label in catalogues
    }
    for name in names:
        seed = condition_seed(args.seed, name)
        rng = np.random.default_rng(seed)
        simulator = PhotoSimulator(backgrounds, condition_params(name), seed=seed)
        picks = rng.choice(holdout, size=min(args.queries, len(holdout)), replace=False)
        made: dict[str, list[np.ndarray]] = {way: [] for way in QUERY_WAYS}
        with progress_bar(name, total=len(picks)) as advance:
            for start in range(0, len(picks), CHUNK):
                chunk = picks[start : start + CHUNK]
                images = [simulator(load_image(paths[int(row)]), rng).image for row in chunk]
                for way, vectors in query_vectors(searcher.pipeline, images).items():
                    made[way].append(vectors)
                advance(len(chunk))
        for way in QUERY_WAYS:
            queries = np.concatenate(made[way])
            for label, catalogue in catalogues.items():
                rows[way, label].append((recall(queries, catalogue, picks, 1), recall(queries, catalogue, picks, 10)))
        print(json.dumps({"condition": name, "queries": len(picks)}), file=sys.stderr)

    figures = {
        "command": command,
        "conditions": names,
        "queries": args.queries,
        "rows": [{"query": way, "catalogue": label, "recall": values} for (way, label), values in rows.items()],
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    lines = [
        "## What each backbone run buys: query crop scales and catalogue views",
        "",
        "```",
        command,
        "```",
        "",
        f"{machine_line()}. {args.queries} queries a condition of the watches held out of every training run, cut "
        "as `tiefwatch search` cuts them; recall in FAISS order (before re-ranking), by exact cosine against every "
        "catalogue vector. *All crops*: the crop and its extra scales averaged (`search.extra_crop_scales`, two runs "
        "a query); *one crop*: the crop alone. R@1 / R@10:",
        "",
        "| query | catalogue | " + " | ".join(names) + " | mean |",
        "|---|---|" + "---|" * (len(names) + 1),
    ]
    for (way, label), values in rows.items():
        r = np.array(values)
        cells = " | ".join(f"{a:.3f} / {b:.3f}" for a, b in values)
        lines.append(f"| {way} | {label} | {cells} | **{r[:, 0].mean():.3f}** / {r[:, 1].mean():.3f} |")
    write_section(args.out, args.section, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
