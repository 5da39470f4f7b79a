#!/usr/bin/env python
"""Attribute triplets over drawn watches held out of training: does the similarity network learn a notion of
"similar" that carries to watches it never saw?

Draws ``--watches`` catalogue watches with known attributes (shape, case, dial, strap...), splits them in two
halves, trains ``tiefwatch train-triplets`` on simulated-annotator triplets among half A only and measures
triplet accuracy on triplets among half B only (anchor, near and far all unseen), beside the raw backbone's, for
each backbone weights in the same run. Writes its section of docs/benchmarks.md with the command.

    python tools/bench_synthetic.py --watches 600
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ranking.rerank import SimilarityReranker  # noqa: E402
from tiefwatch.index import CatalogIndex, index_catalog  # noqa: E402
from tiefwatch.synthetic import attribute_triplets, make_catalog  # noqa: E402
from tiefwatch.train_ranking import train_triplets  # noqa: E402
from tiefwatch.workspace import Workspace  # noqa: E402
from tools.benchdoc import machine_line, write_section  # noqa: E402


def accuracies(index: CatalogIndex, model: SimilarityReranker, triplets: list[tuple[str, str, str]]) -> tuple:
    """(raw cosine, trained, learned cosine alone) share of triplets whose near scores above its far, anchor being
    the catalogue photo; "trained" is the score a search re-ranks by (raw cosine blended in by ``raw_weight``)."""
    row_of = {Path(e.path).name: i for i, e in enumerate(index.entries)}
    ids = np.array([[row_of[name] for name in triplet] for triplet in triplets])
    rows = model.inputs(index.vectors, index.colours)  # with colour descriptors where the model compares them
    anchor, near, far = (rows[ids[:, i]] for i in range(3))
    dim = index.vectors.shape[1]

    def share(space) -> float:  # rows of ``space`` dot to the score being measured
        a, n, f = (space(v) for v in (anchor, near, far))
        return float(np.mean(np.sum(a * n, 1) > np.sum(a * f, 1)))

    return share(lambda v: v[:, :dim]), share(model.embed), share(model.project)


def measure(root: Path, size: int, args: argparse.Namespace) -> list[str]:
    """Table rows for one catalogue of ``size`` drawn watches, one per backbone weights."""
    catalog = make_catalog(root / "catalog", size, seed=args.seed)
    order = np.random.default_rng(args.seed).permutation(len(catalog))
    half_a = [(catalog[i][0].name, catalog[i][1]) for i in order[: len(order) // 2]]
    half_b = [(catalog[i][0].name, catalog[i][1]) for i in order[len(order) // 2 :]]
    train = attribute_triplets(half_a, args.triplets_per_watch * len(half_a), np.random.default_rng(args.seed + 1))
    test = attribute_triplets(half_b, args.test_triplets, np.random.default_rng(args.seed + 2))
    train_csv = root / "train-A.csv"
    train_csv.write_text("anchor,near,far\n" + "".join(f"{a},{n},{f}\n" for a, n, f in train))
    names_a = {name for name, _ in half_a}
    lines = (root / "catalog" / "attributes.csv").read_text().splitlines()
    attributes_csv = root / "attributes-A.csv"  # make_catalog's labels (file + one column each), half A only
    attributes_csv.write_text("\n".join([lines[0], *(x for x in lines[1:] if x.split(",")[0] in names_a)]) + "\n")
    rows = []
    for weights in args.weights.split(","):
        workspace = Workspace(root / f"ws-{weights}")
        config = workspace.load_config(overrides=[f"backbone.weights={weights}", "rerank.packaged=false"])
        index_catalog(root / "catalog", workspace, config, show_progress=True)
        index = CatalogIndex.load(workspace.index_path, config)
        started = time.perf_counter()
        summary = train_triplets(train_csv, workspace, config, verbose=False)
        seconds = time.perf_counter() - started
        raw, trained, learned = accuracies(index, SimilarityReranker.load(summary.model), test)
        with_heads = "-"
        if args.attributes:  # the same triplets plus half A's attribute labels (train-triplets --attributes)
            labelled = train_triplets(
                train_csv, workspace, config, verbose=False, out=workspace.models_dir / "with-attributes.pt",
                attributes=attributes_csv, exclude={name for name, _ in half_b},  # B is never shot either
            )  # fmt: skip
            heads = accuracies(index, SimilarityReranker.load(labelled.model), test)[1]
            with_heads = f"{heads:.3f} (weight {labelled.attributes['weight']:g})"
        rows.append(
            f"| {size} ({len(train)} / {len(test)}) | {weights} | {raw:.3f} | **{trained:.3f}** | {learned:.3f} "
            f"| {with_heads} | {summary.val_accuracy:.3f} | {seconds:.0f} s |"
        )
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watches", default="600", help="comma list of catalogue sizes (a learning curve)")
    parser.add_argument("--triplets-per-watch", type=int, default=26, help="training triplets per half-A watch")
    parser.add_argument("--test-triplets", type=int, default=3000)
    parser.add_argument("--weights", default="imagenet,photo", help="comma list of backbone.weights to compare")
    parser.add_argument(
        "--attributes", action="store_true",
        help="also train with half A's attribute labels as attribute heads (train-triplets --attributes)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--doc", type=Path, default=ROOT / "docs/benchmarks.md")
    args = parser.parse_args(argv)
    command = "python tools/bench_synthetic.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    root = args.workdir or Path(tempfile.mkdtemp(prefix="tiefwatch-synthetic-"))
    rows = []
    for size in (int(n) for n in args.watches.split(",")):
        rows += measure(root / f"n{size}", size, args)
    body = "\n".join(
        [
            "## Attribute triplets over drawn watches never seen in training",
            "",
            f"```\n{command}\n```",
            "",
            f"{machine_line()}. Drawn watches with known attributes, split in two halves. "
            "`tiefwatch train-triplets` learns from simulated-annotator triplets among half A (near shares at "
            "least two more attributes with the anchor than far); the test triplets are among half B only: "
            "anchor, near and far never seen in training. Anchor: the catalogue photo; scores as a search "
            "re-ranks (the blend of raw and learned cosine). With attribute heads: the same triplets plus half "
            "A's attribute labels (`train-triplets --attributes`, the file `make_catalog` writes, half A's rows).",
            "",
            "| watches (train / test triplets) | backbone.weights | raw backbone | trained | learned cosine alone "
            "| trained with attribute heads | held-out anchors within half A | training |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    write_section(args.doc, "synthetic", body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
