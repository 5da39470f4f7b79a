"""One query, as a user meets it: a fresh `tiefwatch search` process, and a warm searcher answering one photo at a
time, with the time split by stage (decode, crop, embed, FAISS, re-rank).

Example (writes the ``latency`` section of docs/benchmarks.md)::

    python tools/bench_latency.py --workspace WS --queries WS/bench_queries --doc docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tiefwatch.images import list_images, load_image
from tiefwatch.search import Searcher
from tiefwatch.workspace import Workspace


def fresh_process_seconds(workspace: Path, query: Path, runs: int) -> list[float]:
    """Wall time of a whole `tiefwatch search` process: interpreter, imports, models, index, one query.

    As on a user's machine, Python's bytecode cache is used (written by a first, untimed run): an environment
    that sets PYTHONDONTWRITEBYTECODE would otherwise compile the package's modules in every run (80 ms here)."""
    command = [sys.executable, "-m", "tiefwatch.cli", "--workspace", str(workspace), "-q", "search", str(query)]
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    times = []
    for run in range(runs + 1):
        started = time.perf_counter()
        subprocess.run([*command, "--format", "json"], check=True, capture_output=True, env=env)
        if run:
            times.append(time.perf_counter() - started)
    return times


def warm_stages(searcher: Searcher, paths: list[Path]) -> dict[str, list[float]]:
    """Milliseconds per stage for each query, one query at a time on a loaded searcher."""
    stages: dict[str, list[float]] = {name: [] for name in ("decode", "crop", "embed", "faiss", "rerank", "total")}
    k, depth = 10, searcher.config.rerank.top_k
    for path in paths:
        t0 = time.perf_counter()
        image = load_image(path)
        t1 = time.perf_counter()
        cut = searcher.pipeline.query_crops([image])
        t2 = time.perf_counter()
        vector = cut.candidate_vectors(searcher.pipeline.embedder.embed(cut.crops))
        t3 = time.perf_counter()
        pick = 0
        if len(vector) > 1:  # several heat peaks: the one closest to the catalogue (Searcher.describe_queries)
            pick = int(np.argmax(searcher.index.search(vector, 1)[0][:, 0]))
        vector = vector[[pick]]
        _, rows = searcher.index.search(vector, max(k, depth))
        t4 = time.perf_counter()
        if searcher.reranker is not None:
            searcher.rerank_scores(vector[0], cut.colours[pick], rows[0][rows[0] >= 0])
        t5 = time.perf_counter()
        for name, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0), strict=True):
            stages[name].append(seconds * 1000)
    return stages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, required=True, help="an indexed workspace")
    parser.add_argument("--queries", type=Path, required=True, help="folder of query photos")
    parser.add_argument("--count", type=int, default=50, help="warm queries timed")
    parser.add_argument("--fresh-runs", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--note", default="", help="how the workspace was prepared, printed under the command")
    parser.add_argument("--doc", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    command = "python tools/bench_latency.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    paths = list_images(args.queries)[: args.count]
    workspace = Workspace(args.workspace)
    searcher = Searcher(workspace, workspace.load_config(overrides=args.set))
    warm_stages(searcher, paths[:3])  # first calls build sessions and caches
    stages = warm_stages(searcher, paths)
    fresh = fresh_process_seconds(args.workspace, paths[0], args.fresh_runs)
    figures = {
        "command": command,
        "note": args.note,
        "queries": len(paths),
        "engine": searcher.pipeline.embedder.engine_name,
        "catalogue": len(searcher.index),
        "reranker": searcher.reranker is not None,
        "median_ms": {name: float(np.median(values)) for name, values in stages.items()},
        "p90_total_ms": float(np.percentile(stages["total"], 90)),
        "fresh_process_s": fresh,
    }
    text = render(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    if args.doc:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from benchdoc import write_section

        write_section(args.doc, "latency", text)
    print(text)
    return 0


def render(f: dict) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchdoc import machine_line

    m = f["median_ms"]
    stages = " | ".join(f"{m[name]:.1f}" for name in ("decode", "crop", "embed", "faiss", "rerank", "total"))
    return "\n".join(
        [
            "## Latency: one query, warm and from a fresh process",
            "",
            f"{machine_line()}; engine {f['engine']}, catalogue of {f['catalogue']:,} photos, "
            f"re-ranker {'on' if f['reranker'] else 'off'}.",
            "",
            "```",
            f["command"],
            "```",
            "",
            *([f.get("note", ""), ""] if f.get("note") else []),
            f"Warm searcher, {f['queries']} photo-like queries one at a time, median milliseconds per stage:",
            "",
            "| decode | crop | embed | FAISS | re-rank top-100 | total |",
            "|---|---|---|---|---|---|",
            f"| {stages} |",
            "",
            f"90th percentile of the total: {f['p90_total_ms']:.1f} ms. A fresh `tiefwatch search` process answering "
            f"one photo (interpreter, imports, models, index and the query): "
            + ", ".join(f"{s:.2f} s" for s in f["fresh_process_s"])
            + ".",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
