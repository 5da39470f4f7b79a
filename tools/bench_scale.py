"""How FAISS cost grows with the catalogue: build time, memory per item, query latency and recall@10 of exact
search, for each index type, from 1 k to 1 M vectors.

The vectors are real: the embeddings of an indexed catalogue (the dev catalogue's 3,000 watches), grown to the
wanted size by mixing each real vector with one of its real neighbours and a little noise, so neighbourhoods are as
crowded and as anisotropic as real ones rather than a Gaussian ball. Queries are further such mixtures that are not
in the index (a photo of a stocked watch is near its entry, never equal to it).

Example (writes the ``scale`` section of docs/benchmarks.md and docs/images/scale.png)::

    python tools/bench_scale.py --index WS/index/catalog.npz --sizes 1000 10000 100000 1000000 \\
        --doc docs/benchmarks.md --plot docs/images/scale.png
"""

from __future__ import annotations

import argparse
import gc
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from tiefwatch import vector_index
from tiefwatch.config import IndexConfig
from tiefwatch.progress import stderr_console

K = 10


@dataclass
class ScaleRow:
    size: int
    kind: str
    build_s: float
    index_bytes_per_item: float
    vector_bytes_per_item: float
    query_ms_median: float
    query_ms_p95: float
    recall_at_10: float
    depth: int
    refine: int

    def cells(self) -> list[str]:
        return [
            f"{self.size:,}",
            self.kind,
            f"{self.build_s:.1f}",
            f"{self.index_bytes_per_item:,.0f}",
            f"{self.vector_bytes_per_item:,.0f}",
            f"{self.query_ms_median:.2f}",
            f"{self.query_ms_p95:.2f}",
            f"{self.recall_at_10:.3f}",
            f"{self.depth} / {self.refine * K}" if self.depth else "-",
        ]


def load_base(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        vectors = np.asarray(data["vectors"], np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def grow(base: np.ndarray, size: int, seed: int, neighbours: int = 10, noise: float = 0.25) -> np.ndarray:
    """``size`` unit vectors: the real ones first, then mixtures of a real vector, one of its ``neighbours``
    nearest real vectors and isotropic noise of norm ``noise``."""
    rng = np.random.default_rng(seed)
    near = np.argsort(-(base @ base.T), axis=1)[:, 1 : neighbours + 1]
    out = np.empty((size, base.shape[1]), np.float32)
    take = min(size, len(base))
    out[:take] = base[:take]
    block = 100_000
    for start in range(take, size, block):
        count = min(block, size - start)
        source = rng.integers(0, len(base), count)
        partner = near[source, rng.integers(0, neighbours, count)]
        mix = rng.uniform(0.0, 0.5, (count, 1)).astype(np.float32)
        part = (1 - mix) * base[source] + mix * base[partner]
        jitter = rng.normal(size=part.shape).astype(np.float32)
        part += noise * jitter / np.linalg.norm(jitter, axis=1, keepdims=True)
        out[start : start + count] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return out


def time_queries(index: faiss.Index, vectors: np.ndarray, queries: np.ndarray, refine: int) -> tuple[np.ndarray, list]:
    """One query at a time, as a user's search runs; returns rows and per-query milliseconds."""
    rows, times = [], []
    for query in queries:
        started = time.perf_counter()
        _, found = vector_index.search(index, vectors, query[None, :], K, refine)
        times.append((time.perf_counter() - started) * 1000)
        rows.append(found[0])
    return np.stack(rows), times


def measure(kind: str, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, config: IndexConfig) -> ScaleRow:
    config = IndexConfig(**{**asdict(config), "type": kind})
    started = time.perf_counter()
    index, tuning = vector_index.build_tuned(vectors, config)
    build = time.perf_counter() - started
    index_bytes = len(vector_index.serialize(index))
    depth = vector_index.get_depth(index)
    # Flat holds the vectors itself; the approximate kinds re-score from the vectors the catalogue keeps anyway.
    vector_bytes = 0 if kind == "flat" else vectors.shape[1] * 4
    rows, times = time_queries(index, vectors, queries, tuning.refine)
    del index
    gc.collect()
    return ScaleRow(
        size=len(vectors),
        kind=kind,
        build_s=build,
        index_bytes_per_item=index_bytes / len(vectors),
        vector_bytes_per_item=vector_bytes,
        query_ms_median=float(np.median(times)),
        query_ms_p95=float(np.percentile(times, 95)),
        recall_at_10=vector_index.recall_at(rows, truth),
        depth=depth,
        refine=tuning.refine,
    )


def update_check(vectors: np.ndarray, config: IndexConfig, changed: int = 1000) -> dict[str, float]:
    """At the large setting: remove ``changed`` items and add as many new ones to a trained ivf index, and
    check the removed are never returned and the added are found (each queried with itself)."""
    config = IndexConfig(**{**asdict(config), "type": "ivf"})
    index, tuning = vector_index.build_tuned(vectors, config)
    rng = np.random.default_rng(7)
    removed = np.sort(rng.choice(len(vectors), changed, replace=False))
    started = time.perf_counter()
    index.remove_ids(faiss.IDSelectorBatch(removed.astype(np.int64)))
    remove_s = time.perf_counter() - started
    fresh = grow(vectors[:3000], 3000 + changed, seed=99)[3000:]
    all_vectors = np.vstack([vectors, fresh])
    started = time.perf_counter()
    index.add_with_ids(fresh, np.arange(len(vectors), len(vectors) + changed, dtype=np.int64))
    add_s = time.perf_counter() - started
    _, found = vector_index.search(index, all_vectors, vectors[removed], K, tuning.refine)
    leaked = int(np.isin(found, removed).sum())
    _, found_new = vector_index.search(index, all_vectors, fresh, 1, tuning.refine)
    self_hit = float(np.mean(found_new[:, 0] == np.arange(len(vectors), len(vectors) + changed)))
    started = time.perf_counter()
    vector_index.refill(index, all_vectors, config)
    refill_s = time.perf_counter() - started
    return {
        "size": len(vectors),
        "changed": changed,
        "remove_s": remove_s,
        "add_s": add_s,
        "removed_returned": leaked,
        "added_found_at_1": self_hit,
        "refill_without_training_s": refill_s,
    }


def plot(rows: list[ScaleRow], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind in dict.fromkeys(row.kind for row in rows):
        mine = [row for row in rows if row.kind == kind]
        sizes = [row.size for row in mine]
        left.plot(sizes, [row.query_ms_median for row in mine], "o-", label=kind)
        right.plot(sizes, [row.index_bytes_per_item + row.vector_bytes_per_item for row in mine], "o-", label=kind)
    left.set(xscale="log", yscale="log", xlabel="catalogue size (vectors)", ylabel="query latency, median (ms)")
    left.axhline(5, color="grey", ls=":", lw=1)
    right.set(xscale="log", xlabel="catalogue size (vectors)", ylabel="bytes per item (index + vectors kept)")
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.suptitle("FAISS cost against catalogue size (2 CPU cores, 1280-d Lite2 vectors)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def markdown(rows: list[ScaleRow], update: dict | None, command: str, plot_path: Path | None) -> str:
    from benchdoc import machine_line

    head = [
        "vectors",
        "index",
        "build s",
        "index B/item",
        "vectors B/item",
        "query ms (median)",
        "p95",
        "recall@10",
        "depth / re-scored",
    ]
    lines = [
        "## Scale: FAISS from 1 k to 1 M vectors",
        "",
        f"{machine_line()}; one query at a time, {faiss.omp_get_max_threads()} FAISS threads.",
        "",
        "```",
        command,
        "```",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(row.cells()) + " |" for row in rows),
        "",
        "recall@10 is against exact (flat) search of the same vectors. `depth / re-scored` is the nprobe (ivf) or "
        "efSearch (hnsw) and the number of candidates re-scored exactly that the build-time tuning chose for its "
        "recall target (cheapest measured setting that reaches it). The approximate kinds re-score their "
        "candidates exactly against the float vectors the catalogue keeps anyway (for re-ranking), listed in "
        "their own column; flat holds them inside the index.",
    ]
    if update:
        lines += [
            "",
            f"Update at {update['size']:,}: removing {update['changed']} items took {update['remove_s']:.2f} s and "
            f"adding {update['changed']} took {update['add_s']:.2f} s; removed items returned afterwards: "
            f"{update['removed_returned']}; added items found first when queried with themselves: "
            f"{update['added_found_at_1']:.3f}. Re-filling the trained index with all vectors (what `tiefwatch "
            f"index` does on an update, no re-training) took {update['refill_without_training_s']:.1f} s.",
        ]
    if plot_path:
        lines += ["", f"![latency and memory against catalogue size](images/{plot_path.name})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True, help="a tiefwatch index (.npz) whose vectors seed the set")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--kinds", nargs="+", default=["flat", "hnsw", "ivf"])
    parser.add_argument("--hnsw-max", type=int, default=100_000, help="largest size HNSW is built at (build time)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="e.g. ivf_codes=PQ32")
    parser.add_argument("--doc", type=Path, help="write the `scale` section of this markdown file")
    parser.add_argument("--plot", type=Path, help="write the latency/memory plot here")
    parser.add_argument("--json", type=Path, help="write the raw rows here")
    args = parser.parse_args(argv)

    config = IndexConfig()
    for item in args.overrides:
        key, value = item.split("=", 1)
        setattr(config, key, type(getattr(config, key))(value))
    base = load_base(args.index)
    rows: list[ScaleRow] = []
    update = None
    for size in sorted(args.sizes):
        vectors = grow(base, size, seed=0)
        queries = vector_index.tuning_queries(grow(base, size + args.queries, seed=1)[size:], args.queries, seed=5)
        truth = vector_index.exact_top(vectors, queries, K)
        for kind in args.kinds:
            if kind == "hnsw" and size > args.hnsw_max:
                continue
            if kind == "ivf" and size < 10_000:
                continue  # fewer than ~40 points per list: nothing to gain over flat
            row = measure(kind, vectors, queries, truth, config)
            rows.append(row)
            stderr_console().print(" | ".join(row.cells()))
        if size == max(args.sizes) and "ivf" in args.kinds and size >= 10_000:
            update = update_check(vectors, config)
            stderr_console().print(update)
        del vectors
        gc.collect()
    command = "python tools/bench_scale.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    if args.json:
        args.json.write_text(json.dumps({"rows": [asdict(r) for r in rows], "update": update}, indent=1))
    if args.plot:
        plot(rows, args.plot)
    text = markdown(rows, update, command, args.plot)
    if args.doc:
        from benchdoc import write_section

        write_section(args.doc, "scale", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
