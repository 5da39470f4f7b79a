"""Retrieval evaluation: stable splits, simulated photo queries with known answers, recall@k.

Shared by ``tools/bench_*.py`` and the tests so every figure in docs/benchmarks.md is computed one way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bbox.box import BoundingBox
from tiefwatch.images import load_image

if TYPE_CHECKING:
    from tiefwatch.config import Config
    from tiefwatch.index import CatalogIndex
    from tiefwatch.workspace import Workspace


def is_holdout(name: str, fraction: float = 0.2, salt: str = "tiefwatch-holdout") -> bool:
    """Stable by file name: the same watches are held out of training in every run and on every machine."""
    digest = hashlib.sha1(f"{salt}:{Path(name).name}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def rank_of(truth: str | Path, ranked: Sequence[str | Path]) -> int | None:
    """1-based rank of ``truth`` in ``ranked`` (compared as resolved paths), None when absent."""
    target = Path(truth).resolve()
    for position, item in enumerate(ranked, start=1):
        if Path(item).resolve() == target:
            return position
    return None


def recall_at(ranks: Sequence[int | None], k: int) -> float:
    """Share of queries whose true item is within the top ``k``."""
    if not ranks:
        return 0.0
    return float(np.mean([r is not None and r <= k for r in ranks]))


@dataclass
class QuerySample:
    """A simulated phone photo of a catalogue watch: the photo, the watch's true box, the catalogue file."""

    image: np.ndarray
    box: BoundingBox
    truth: Path


def simulate_queries(
    catalog_paths: Sequence[Path], count: int, seed: int = 0, backgrounds: Sequence[np.ndarray] | None = None
) -> list[QuerySample]:
    """``count`` photo-like queries of distinct catalogue watches, drawn reproducibly from ``seed``."""
    from bbox.synth import PhotoSimulator

    rng = np.random.default_rng(seed)
    simulator = PhotoSimulator(backgrounds=backgrounds, seed=seed)
    picks = rng.choice(len(catalog_paths), size=min(count, len(catalog_paths)), replace=False)
    samples = []
    for pick in picks:
        path = catalog_paths[int(pick)]
        scene = simulator(load_image(path), rng)
        samples.append(QuerySample(scene.image, scene.box, path))
    return samples


# ------------------------------------------------------------------------------ tiefwatch eval
@dataclass
class RetrievalRow:
    """One way of searching, scored on the query set."""

    name: str
    recall: dict[int, float]
    mean_ap: float  # one true watch per query: average precision is 1/rank, 0 when not within the depth
    found: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "recall": {str(k): round(v, 4) for k, v in self.recall.items()},
            "map": round(self.mean_ap, 4),
            "found": self.found,
        }


@dataclass
class EvalReport:
    queries: int = 0
    unreadable: int = 0
    depth: int = 0
    retrieval: list[RetrievalRow] = field(default_factory=list)
    triplets: dict[str, Any] | None = None
    query_csv: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "unreadable": self.unreadable,
            "depth": self.depth,
            "query_csv": self.query_csv,
            "retrieval": [row.as_dict() for row in self.retrieval],
            "triplets": self.triplets,
        }


def read_query_csv(path: Path, catalog_root: Path) -> list[tuple[Path, Path]]:
    """``query,truth`` rows (a header line, paths absolute or relative to the CSV's folder for queries and to the
    catalogue root for truths); a malformed row is an error naming its line."""
    import csv

    pairs = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"query", "truth"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: the header must name the columns query,truth")
        for line, row in enumerate(reader, start=2):
            query, truth = (row.get("query") or "").strip(), (row.get("truth") or "").strip()
            if not query or not truth:
                raise ValueError(f"{path}: line {line}: both query and truth are needed")
            query_path = Path(query) if Path(query).is_absolute() else path.parent / query
            truth_path = Path(truth) if Path(truth).is_absolute() else catalog_root / truth
            pairs.append((query_path, truth_path))
    if not pairs:
        raise ValueError(f"{path}: no queries")
    return pairs


def write_simulated_queries(catalog_paths: Sequence[Path], count: int, out_dir: Path, seed: int = 0) -> Path:
    """Photo-like queries of ``count`` catalogue watches as files, and the ``query,truth`` CSV naming them."""
    from tiefwatch.images import save_image
    from tiefwatch.storage import write_text_atomic

    lines = ["query,truth"]
    for number, sample in enumerate(simulate_queries(catalog_paths, count, seed=seed)):
        name = f"q{number:04d}_{sample.truth.stem}.jpg"
        save_image(out_dir / name, sample.image, quality=90)
        lines.append(f"{name},{sample.truth.resolve()}")
    csv_path = out_dir / "queries.csv"
    write_text_atomic(csv_path, "\n".join(lines) + "\n")
    return csv_path


def evaluate(
    workspace: Workspace | str | Path | None = None,
    queries: str | Path | None = None,
    triplets: str | Path | None = None,
    simulate: int = 0,
    ks: Sequence[int] = (1, 5, 10),
    config: Config | None = None,
    seed: int = 0,
    show_progress: bool = False,
) -> EvalReport:
    """Library form of ``tiefwatch eval``: recall@k and mAP of the whole pipeline on a query set with known answers
    (a ``query,truth`` CSV, or ``simulate`` photo-like queries of catalogue watches), beside the raw features
    (whole photo, FAISS order) and the pipeline without re-ranking; triplet accuracy of the similarity model on
    a held-out triplet CSV beside the raw backbone's."""
    from tiefwatch.index import CatalogIndex
    from tiefwatch.workspace import Workspace

    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    config = config or workspace.load_config()
    if queries is None and not simulate and triplets is None:
        raise ValueError("nothing to evaluate: give a query CSV, --simulate N or --triplets CSV")
    index = CatalogIndex.load(workspace.index_path, config)
    report = EvalReport()
    if simulate and queries is None:
        catalog = [index.path_of(i) for i in range(len(index))]
        queries = write_simulated_queries(catalog, simulate, workspace.root / "eval" / f"simulated-{seed}", seed)
    if queries is not None:
        _evaluate_queries(report, workspace, config, index, Path(queries), ks, show_progress)
    if triplets is not None:
        report.triplets = _evaluate_triplets(workspace, config, index, Path(triplets))
    return report


def _evaluate_queries(
    report: EvalReport,
    workspace: Workspace,
    config: Config,
    index: CatalogIndex,
    queries: Path,
    ks: Sequence[int],
    show_progress: bool,
) -> None:
    from tiefwatch.search import Searcher

    pairs = read_query_csv(queries, index.root)
    report.query_csv, report.queries = str(queries), len(pairs)
    depth = max(max(ks), config.rerank.top_k)
    report.depth = depth
    ways = [("raw features, whole photo (FAISS order)", False, False)]
    if config.crop.enabled:
        ways.append(("crop, FAISS order", True, False))
    ways.append((f"{'crop, ' if config.crop.enabled else ''}re-ranked: the pipeline", config.crop.enabled, True))
    for name, use_crop, use_rerank in ways:
        searcher = Searcher(workspace, config, use_crop=use_crop, use_rerank=use_rerank, index=index)
        if use_rerank and searcher.reranker is None:
            continue  # no similarity model: the row above is already the whole pipeline
        results = searcher.search_paths([query for query, _ in pairs], k=depth, show_progress=show_progress)
        report.unreadable = sum(result.error is not None for result in results)
        ranks = [
            rank_of(truth, [hit.path for hit in result.results])
            for (_, truth), result in zip(pairs, results, strict=True)
        ]
        report.retrieval.append(
            RetrievalRow(
                name,
                {k: recall_at(ranks, k) for k in ks},
                float(np.mean([1.0 / r if r else 0.0 for r in ranks])),
                sum(r is not None for r in ranks),
            )
        )


def _evaluate_triplets(workspace: Workspace, config: Config, index: CatalogIndex, path: Path) -> dict[str, Any]:
    from ranking.triplet_training import triplet_accuracy
    from tiefwatch.models import load_reranker
    from tiefwatch.pipeline import rerank_inputs
    from tiefwatch.train_ranking import triplet_rows

    rows, duplicates = triplet_rows(path, index)
    reranker = load_reranker(config, workspace, index.signature)
    out: dict[str, Any] = {
        "csv": str(path),
        "count": len(rows),
        "duplicates_ignored": duplicates,
        "raw": round(triplet_accuracy(index.vectors, rows), 4),
        "trained": None,
    }
    if reranker is not None:
        inputs = rerank_inputs(reranker, index.vectors, index.colours)
        out["trained"] = round(triplet_accuracy(reranker.embed(inputs), rows), 4)
        out["model"] = reranker.fingerprint
    return out
