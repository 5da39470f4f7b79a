"""Indexing rate, local against Ray, on the first N photos of a catalogue: runs interleaved (local, Ray, local,
Ray...) in fresh workspaces so a shared machine's load falls on both alike, with the load average beside each.

Example (writes the ``speed`` section of docs/benchmarks.md)::

    python tools/bench_index.py --catalog ../shared/data/watch-catalog-dev --photos 200 --views 4,0 \
        --doc docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tiefwatch.images import list_images
from tiefwatch.index import CatalogIndex, index_catalog
from tiefwatch.workspace import Workspace


def sample_catalogue(catalog: Path, photos: int, folder: Path) -> Path:
    """The first ``photos`` images (by path) as symlinks in ``folder``: nothing is copied."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in list_images(catalog)[:photos]:
        (folder / path.name).symlink_to(path.resolve())
    return folder


def run(catalog: Path, root: Path, views: int, ray: bool, cache: Path | None) -> dict:
    """One index run in a fresh workspace (the ONNX graphs copied in, so no run pays for an export)."""
    workspace = Workspace(root)
    shutil.rmtree(root, ignore_errors=True)
    if cache is not None:
        shutil.copytree(cache, workspace.cache_dir)
    config = workspace.load_config(overrides=[f"index.views={views}"])
    started = time.perf_counter()
    summary = index_catalog(catalog, workspace, config, ray_address="" if ray else None)
    wall = time.perf_counter() - started
    return {"views": views, "mode": "Ray" if ray else "local", "wall": wall, "rate": summary.total / wall,
            "load": os.getloadavg()[0], "index": workspace.index_path}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--views", default="4,0", help="index.views values, comma-separated")
    parser.add_argument("--repeats", type=int, default=2, help="local/Ray pairs per views value")
    parser.add_argument("--note", default="", help="printed under the table (e.g. what a profile showed)")
    parser.add_argument("--doc", type=Path)
    args = parser.parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    # the note is printed under the table, not in the command
    shown = [a for i, a in enumerate(given) if a != "--note" and (i == 0 or given[i - 1] != "--note")]
    command = "python tools/bench_index.py " + shlex.join(shown)
    rows: list[dict] = []
    equal: list[str] = []
    with tempfile.TemporaryDirectory() as temp:
        catalog = sample_catalogue(args.catalog, args.photos, Path(temp) / "catalog")
        warm = Workspace(Path(temp) / "warm")
        index_catalog(catalog, warm, warm.load_config(overrides=["index.views=0"]))  # exports the ONNX graphs
        for views in (int(v) for v in args.views.split(",")):
            for _ in range(args.repeats):
                for ray in (False, True):
                    rows.append(run(catalog, Path(temp) / ("ray" if ray else "local"), views, ray, warm.cache_dir))
                    print(rows[-1])
            local, remote = (Workspace(Path(temp) / name).index_path for name in ("local", "ray"))
            local, remote = CatalogIndex.load(local), CatalogIndex.load(remote)
            same = [e.path for e in local.entries] == [e.path for e in remote.entries]
            equal.append(
                f"index.views={views}: same rows {same}, same signature {local.signature == remote.signature}, "
                f"largest vector difference {float(np.abs(local.vectors - remote.vectors).max()):.1e}"
            )
    text = render(command, args.photos, rows, equal, args.note)
    if args.doc:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from benchdoc import write_section

        write_section(args.doc, "speed", text)
    print(text)
    return 0


def render(command: str, photos: int, rows: list[dict], equal: list[str], note: str = "") -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchdoc import machine_line

    table = [f"| {r['views']} | {r['mode']} | {r['wall']:.1f} | {r['rate']:.1f} | {r['load']:.1f} |" for r in rows]
    return "\n".join(
        [
            "## Indexing rate: local and on Ray",
            "",
            f"{machine_line()}. {photos} dev catalogue photos indexed from scratch in a fresh workspace each run, "
            "runs interleaved; photos/s is photos over the whole `index_catalog` call (a Ray run includes starting "
            "and stopping a local Ray of the machine's cores).",
            "",
            "```",
            command,
            "```",
            "",
            "| index.views | embedding | seconds | photos/s | load average (1 min) |",
            "|---|---|---|---|---|",
            *table,
            "",
            "The Ray index against the local one: " + "; ".join(equal) + ".",
            *(["", note] if note else []),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
