"""``tiefwatch demo``: the whole pipeline on a built-in catalogue, with nothing to download.

Draws a catalogue of watches with known attributes, photographs a few of them on cluttered backgrounds,
indexes the catalogue and searches with the photos. Because every drawn watch knows its attributes, the
demo can say how many of them each result shares with the photographed watch — a person's notion of
"similar" that needs no annotator.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from tiefwatch.images import save_image
from tiefwatch.index import index_catalog
from tiefwatch.search import QueryResult, search
from tiefwatch.synthetic import WatchAttributes, make_catalog, shared_attributes
from tiefwatch.workspace import Workspace


@dataclass
class DemoReport:
    catalog_dir: Path
    sheet: Path
    recall_at_1: float
    recall_at_10: float
    mean_shared_top5: float
    results: list[QueryResult]

    def as_dict(self) -> dict[str, Any]:
        return {
            "catalog_dir": str(self.catalog_dir),
            "sheet": str(self.sheet),
            "recall_at_1": self.recall_at_1,
            "recall_at_10": self.recall_at_10,
            "mean_shared_attributes_top5": self.mean_shared_top5,
        }


def read_attributes(catalog_dir: Path) -> dict[str, WatchAttributes]:
    with (catalog_dir / "attributes.csv").open(newline="") as handle:
        return {row.pop("file"): WatchAttributes.from_dict(row) for row in csv.DictReader(handle)}


def make_queries(catalog: list[tuple[Path, WatchAttributes]], out_dir: Path, count: int, seed: int) -> list[Path]:
    """Photo-like shots of ``count`` catalogue watches (cluttered background, tilt, dim light, JPEG)."""
    from bbox.synth import PhotoSimulator
    from tiefwatch.images import load_image

    rng = np.random.default_rng(seed)
    simulator = PhotoSimulator(seed=seed)
    picks = rng.choice(len(catalog), size=min(count, len(catalog)), replace=False)
    paths = []
    truth = {}
    for number, pick in enumerate(sorted(int(p) for p in picks)):
        source = catalog[pick][0]
        scene = simulator(load_image(source), rng)
        path = out_dir / f"photo_{number:02d}_of_{source.stem}.jpg"
        save_image(path, scene.image, quality=85)
        truth[path.name] = {"catalog": source.name, "box": scene.box.as_list()}
        paths.append(path)
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=2))
    return paths


def run_demo(
    workspace: Workspace | str | Path | None = None,
    size: int = 240,
    queries: int = 6,
    seed: int = 0,
    show_progress: bool = True,
    console: Console | None = None,
) -> DemoReport:
    """Build the demo catalogue in ``<workspace>/demo`` (never touching the user's own index) and search it."""
    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    console = console or Console(stderr=False)
    demo = Workspace(workspace.root / "demo")
    catalog_dir = demo.root / "catalog"
    query_dir = demo.root / "photos"
    console.print(f"[bold]tiefwatch demo[/bold] — drawing {size} catalogue watches in {catalog_dir}")
    catalog = make_catalog(catalog_dir, size, seed=seed)
    query_paths = make_queries(catalog, query_dir, queries, seed=seed + 1)
    summary = index_catalog(catalog_dir, workspace=demo, show_progress=show_progress)
    console.print(f"indexed {summary.total} watches ({summary.added} new) in {summary.seconds:.1f}s")

    sheet = demo.root / "demo_sheet.jpg"
    results = search(query_paths, workspace=demo, k=10, sheet=sheet)
    attributes = read_attributes(catalog_dir)
    hits_at_1 = hits_at_10 = 0
    shared_top5: list[float] = []
    table = Table(title="Photos of catalogue watches -> most similar catalogue watches", title_justify="left")
    for column in ("photo", "true watch", "its rank", "top 5 (shared attributes of 8)"):
        table.add_column(column)
    for result in results:
        true_name = Path(result.query).stem.split("_of_")[1] + ".png"
        names = [Path(hit.path).name for hit in result.results]
        rank = names.index(true_name) + 1 if true_name in names else None
        hits_at_1 += rank == 1
        hits_at_10 += rank is not None
        truth = attributes[true_name]
        shared = [shared_attributes(truth, attributes[name]) for name in names[:5]]
        shared_top5.append(float(np.mean(shared)))
        top = ", ".join(f"{Path(n).stem.removeprefix('watch_')}({s})" for n, s in zip(names[:5], shared, strict=False))
        table.add_row(Path(result.query).name, true_name, str(rank or ">10"), top)
    console.print(table)
    count = max(1, len(results))
    report = DemoReport(
        catalog_dir, sheet, hits_at_1 / count, hits_at_10 / count, float(np.mean(shared_top5)), results
    )
    console.print(
        f"recall@1 {report.recall_at_1:.2f}, recall@10 {report.recall_at_10:.2f}, "
        f"top-5 results share {report.mean_shared_top5:.1f} of 8 attributes with the photographed watch"
    )
    console.print(f"contact sheet: {sheet}")
    return report
