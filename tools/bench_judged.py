"""Does learning from people's judgements carry to watches never seen? Train on the judged set's half A, measure
on half B (other watches, another catalogue), each figure beside the raw backbone's.

The judged set lives in ``benchmarks/judged/`` (see its README): triplets judged directly through the labelling
tool (``direct-A.csv``, ``direct-B.csv``) and five attributes per watch for 400 watches (``attributes.csv``), from
which clear triplets are derived. Training uses half A only, through ``tiefwatch train-triplets``; every figure is
on half B, with the anchor given as its catalogue photo and as a photo-like simulated query (cluttered background,
tilt, darker light), cropped by the crop model as a real query would be.

Example (writes the ``judged`` section of docs/benchmarks.md)::

    python tools/bench_judged.py --catalog ../shared/data/watch-catalog-dev --workspace /tmp/tw-judged
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from judged_set import (
    ATTRIBUTES,
    agreement_summary,
    derive_triplets,
    half_of,
    read_attributes,
    read_recheck,
    write_attributes_csv,
)

from ranking.rerank import SimilarityReranker
from ranking.triplet_training import triplet_accuracy
from tiefwatch.index import CatalogIndex, index_catalog
from tiefwatch.models import load_cropper
from tiefwatch.pipeline import Pipeline
from tiefwatch.train_ranking import simulated_view_vectors, train_invariance, train_triplets
from tiefwatch.triplets import read_triplets
from tiefwatch.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
JUDGED = ROOT / "benchmarks" / "judged"
TOP = 5
TEST_PER_ANCHOR = 20
ANCHOR_NAMES = {"catalogue anchor": "its catalogue photo", "photo anchor": "a simulated phone photo"}


def triplet_csv(path: Path, triplets: list[tuple[str, str, str]]) -> Path:
    lines = ["anchor,near,far"] + [",".join(t) for t in triplets]
    path.write_text("\n".join(lines) + "\n")
    return path


def judged_triplets(path: Path) -> list[tuple[str, str, str]]:
    return [(t.anchor, t.near, t.far) for t in read_triplets(path).triplets]


def accuracy(similarity: np.ndarray, rows: np.ndarray) -> float:
    return triplet_accuracy(similarity, rows) if len(rows) else float("nan")


def photo_anchor_accuracy(anchor_vecs: dict[int, np.ndarray], catalog: np.ndarray, rows: np.ndarray, project) -> float:
    """Triplet accuracy when the anchor is a simulated photo of the anchor watch instead of its catalogue photo."""
    if not len(rows):
        return float("nan")
    anchors = np.stack([anchor_vecs[int(r)] for r in rows[:, 0]])
    a, n, f = project(anchors), project(catalog[rows[:, 1]]), project(catalog[rows[:, 2]])
    near, far = (a * n).sum(1), (a * f).sum(1)
    return float(np.mean((near > far) + 0.5 * (near == far)))


def top_agreement(
    queries: np.ndarray, gallery: np.ndarray, names: list[str], attributes: dict[str, dict[str, str]], project
) -> float:
    """Mean number of attributes the top-5 share with the query watch, the watch itself left out of the gallery
    ("the shop doesn't stock it"). Row i of ``queries`` is a view of ``names[i]``; gallery row j is ``names[j]``."""
    scores = project(queries) @ project(gallery).T
    np.fill_diagonal(scores, -np.inf)
    top = np.argsort(-scores, axis=1)[:, :TOP]
    return float(np.mean([[_shared(attributes, names[i], names[j]) for j in row] for i, row in enumerate(top)]))


def _shared(attributes: dict[str, dict[str, str]], a: str, b: str) -> int:
    return sum(attributes[a][k] == attributes[b][k] for k in ATTRIBUTES)


def agreement_bounds(names: list[str], attributes: dict[str, dict[str, str]]) -> tuple[float, float]:
    """(random, best possible) top-5 agreement over the same gallery."""
    shared = np.array([[_shared(attributes, a, b) for b in names] for a in names], np.float64)
    np.fill_diagonal(shared, np.nan)
    random = float(np.nanmean(shared))
    np.fill_diagonal(shared, -1)
    best = float(np.mean(np.sort(shared, axis=1)[:, ::-1][:, :TOP]))
    return random, best


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, default=ROOT.parent / "shared/data/watch-catalog-dev")
    parser.add_argument("--workspace", type=Path, help="index of the whole catalogue kept here (default: temp)")
    parser.add_argument("--judged", type=Path, default=JUDGED)
    parser.add_argument("--per-anchor", type=int, default=40, help="attribute triplets derived per anchor watch")
    parser.add_argument(
        "--invariance-views",
        type=int,
        default=0,
        help="first `tiefwatch train` on half A with this many views, then fine-tune (measured no better: off)",
    )
    parser.add_argument("--min-gap", type=int, default=2, help="derived near shares this many more attributes")
    parser.add_argument("--views", type=int, default=2, help="train-triplets --views: photo-like anchors per anchor")
    parser.add_argument(
        "--no-attributes", action="store_true",
        help="triplets alone: no attribute heads from half A's labels (train-triplets --attributes)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--doc", type=Path, help="write the `judged` section of this markdown file")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not args.catalog.is_dir():
        print(f"catalogue not found: {args.catalog}", file=sys.stderr)
        return 2
    command = "python tools/bench_judged.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    workspace = Workspace(args.workspace or Path(tempfile.mkdtemp(prefix="tiefwatch-judged-")))
    config = workspace.load_config(overrides=[*args.set, "rerank.packaged=false"])
    index_catalog(args.catalog, workspace, config, show_progress=True)
    index = CatalogIndex.load(workspace.index_path, config)
    row_of = {entry.path: i for i, entry in enumerate(index.entries)}

    attributes = read_attributes(args.judged / "attributes.csv")
    direct = {half: judged_triplets(args.judged / f"direct-{half}.csv") for half in ("A", "B")}
    # Training may derive more or finer triplets; the test set is fixed: 20 clear calls per half-B watch.
    derived_by_half = {
        "A": [
            t
            for t in derive_triplets(attributes, args.per_anchor, args.min_gap, seed=args.seed)
            if half_of(t[0]) == "A"
        ],
        "B": [t for t in derive_triplets(attributes, TEST_PER_ANCHOR, 2, seed=args.seed) if half_of(t[0]) == "B"],
    }

    def rows(triplets: list[tuple[str, str, str]]) -> np.ndarray:
        return np.array([[row_of[p] for p in t] for t in triplets], np.int64).reshape(-1, 3)

    # ---- train on half A only, through the product's own verb
    out_dir = Path(tempfile.mkdtemp(prefix="tiefwatch-judged-train-"))
    train_csv = triplet_csv(out_dir / "train-A.csv", direct["A"] + derived_by_half["A"])
    model_path = out_dir / "similarity-A.pt"
    invariance = None
    if args.invariance_views:
        # Photo->catalogue invariance first (half A only), then the judged triplets fine-tune it: the recipe of
        # the packaged model. The workspace model it needs is removed again afterwards.
        half_b = {entry.path for entry in index.entries if half_of(entry.path) == "B"}
        invariance = train_invariance(workspace, config, views=args.invariance_views, exclude=half_b).as_dict()
    attributes_csv = None
    if not args.no_attributes:
        attributes_csv = write_attributes_csv(
            attributes, [name for name in attributes if half_of(name) == "A"], out_dir / "attributes-A.csv"
        )
    try:
        summary = train_triplets(
            train_csv,
            workspace,
            config,
            out=model_path,
            verbose=True,
            views=args.views,
            fine_tune=bool(invariance),
            attributes=attributes_csv,
            exclude={Path(entry.path).name for entry in index.entries if half_of(entry.path) == "B"},
        )
    finally:
        if invariance:
            workspace.similarity_model_path.unlink(missing_ok=True)
    reranker = SimilarityReranker.load(model_path)

    # ---- photo-like anchors for every half-B watch a figure needs, cropped and embedded like a real query
    test_rows = np.unique(np.concatenate([rows(direct["B"])[:, 0], rows(derived_by_half["B"])[:, 0]]))
    gallery_names = sorted(name for name in attributes if half_of(name) == "B")
    needed = np.unique(np.concatenate([test_rows, [row_of[n] for n in gallery_names]]))
    pipeline = Pipeline.from_config(config, load_cropper(config, workspace), cache_dir=workspace.cache_dir)
    photo_vecs, owners, photo_colours = simulated_view_vectors(index, needed, 1, pipeline, seed=args.seed + 11)
    # Each row as the re-ranker takes it (the vector, with its colour descriptor after it where the model compares
    # colour); "raw" reads the backbone part alone.
    photo_of = {int(o): v for o, v in zip(owners, reranker.inputs(photo_vecs, photo_colours), strict=True)}
    catalog = reranker.inputs(index.vectors, index.colours)
    dim = index.vectors.shape[1]

    def raw(rows: np.ndarray) -> np.ndarray:
        return unit(np.asarray(rows)[:, :dim])

    learned = reranker.embed  # the re-ranking score's space (learned cosine blended with the raw one)
    figures: dict = {"command": command, "train": summary.as_dict(), "sets": {}, "agreement": {}}
    test_sets = [("judged directly", direct["B"]), ("from attributes (clear calls)", derived_by_half["B"])]
    recheck_path = args.judged / "recheck-B.csv"
    if recheck_path.exists():  # a second annotator's blind verdicts on the directly judged ones (judged_set recheck)
        verdicts = read_recheck(recheck_path)
        agreed = [t for t in direct["B"] if verdicts.get(t) == "agree"]
        test_sets.insert(1, ("judged directly, a second annotator agreeing", agreed))
        figures["recheck"] = agreement_summary([(*t, v) for t, v in verdicts.items()])
    for name, triplets in test_sets:
        test = rows(triplets)
        figures["sets"][name] = {
            "triplets": len(test),
            "anchors": len(np.unique(test[:, 0])),
            "catalogue anchor": {"raw": accuracy(raw(catalog), test), "trained": accuracy(learned(catalog), test)},
            "photo anchor": {
                "raw": photo_anchor_accuracy(photo_of, catalog, test, raw),
                "trained": photo_anchor_accuracy(photo_of, catalog, test, learned),
            },
        }
    gallery = catalog[[row_of[n] for n in gallery_names]]
    photos = np.stack([photo_of[row_of[n]] for n in gallery_names])
    random, best = agreement_bounds(gallery_names, attributes)
    for anchor_name, queries in (("catalogue anchor", gallery), ("photo anchor", photos)):
        raw_score = top_agreement(queries, gallery, gallery_names, attributes, raw)
        trained = top_agreement(queries, gallery, gallery_names, attributes, learned)
        learned_only = top_agreement(queries, gallery, gallery_names, attributes, reranker.project)
        cosines = top_agreement(queries, gallery, gallery_names, attributes, reranker.embed_cosines)
        figures["agreement"][anchor_name] = {
            "raw": raw_score,
            "trained": trained,
            "closer_to_best": (trained - raw_score) / max(best - raw_score, 1e-9),
            "learned_only": learned_only,  # diagnostic: the learned cosine without the raw share of the score
            "without_attributes": cosines,  # diagnostic: the score without the attribute heads' share
        }
    figures["agreement"]["random"], figures["agreement"]["best"] = random, best
    figures["gallery"] = len(gallery_names)
    figures["views"] = args.views
    figures["backbone_weights"] = config.backbone.weights
    figures["invariance"] = invariance
    figures["train_sizes"] = {"direct A": len(direct["A"]), "derived A": len(derived_by_half["A"])}
    figures["attribute_weight"] = reranker.attribute_weight if reranker.attributes is not None else None
    figures["colour_weight"] = config.train_triplets.colour_weight if reranker.colour is not None else 0.0

    text = render(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=float))
    if args.doc:
        from benchdoc import write_section

        write_section(args.doc, "judged", text)
    print(text)
    return 0


def _backbone_note(weights: str) -> str:
    """ "Raw backbone" means the configured one; say which, and what the photo-tuned tail saw."""
    if weights == "photo":
        return (
            ' Backbone: the packaged photo-tuned Lite2 (`backbone.weights: photo`), so "raw backbone" is it without'
            " the similarity model; its last stages were tuned, without any judgement or attribute, on photo-like"
            " views of the dev watches outside the retrieval benchmark's held-out fifth (both halves' watches among"
            " them)."
        )
    return f" Backbone weights: {weights}."


def render(f: dict) -> str:
    from benchdoc import machine_line

    t = f["train"]
    lines = [
        "## Human-judged similarity: trained on half A of the dev catalogue, measured on half B",
        "",
        f"{machine_line()}.",
        "",
        "```",
        f["command"],
        "```",
        "",
        (
            f"First `tiefwatch train --views {f['invariance']['views']}` on half A's {f['invariance']['items']} "
            "watches (photo->catalogue invariance), then "
            if f.get("invariance")
            else ""
        )
        + f"Training (half A only, `tiefwatch train-triplets`): {f['train_sizes']['direct A']} judged + "
        f"{f['train_sizes']['derived A']} attribute triplets, each anchor also as {f['views']} photo-like shots; "
        f"margin {t['margin']}, {len(t['epochs'])} epochs, "
        f"{t['seconds']:.0f} s. Half B's watches never appear in training, as anchor or as candidate."
        + _colour_note(f.get("colour_weight", 0.0))
        + _attribute_note(t.get("attributes"))
        + _backbone_note(f.get("backbone_weights", "imagenet")),
        "",
        "| half-B triplets | count (anchors) | anchor given as | raw backbone | trained |",
        "|---|---|---|---|---|",
    ]
    for name, s in f["sets"].items():
        for anchor in ("catalogue anchor", "photo anchor"):
            lines.append(
                f"| {name} | {s['triplets']} ({s['anchors']}) | {ANCHOR_NAMES[anchor]} | "
                f"{s[anchor]['raw']:.3f} | **{s[anchor]['trained']:.3f}** |"
            )
    a = f["agreement"]
    lines += [
        "",
        "The directly judged triplets were asked where the raw features were least sure (the labelling tool's "
        "uncertain stretch), so the raw backbone is near chance on them by construction; the attribute triplets "
        "are clear calls (the near watch shares at least two more attributes with the anchor).",
    ]
    if f.get("recheck"):
        r = f["recheck"]
        lines += [
            "",
            f"A second annotator re-judged half B's {r['triplets']} directly judged triplets blind (the two "
            f"candidates in random order; `tools/judged_set.py recheck-sheets`, benchmarks/judged/recheck-B.csv): "
            f"the same call on {r['agree']}, the other candidate on {r['disagree']} ({r['agreement']:.1%} "
            f"agreement where both called it), {r['toss-up']} toss-ups. That agreement is about the ceiling a "
            "model's accuracy on these triplets can be read against; the row of triplets both called the same way "
            "is the part people agree on.",
        ]
    lines += [
        "",
        f"Top-{TOP} attribute agreement on half B's {f['gallery']} labelled watches (how many of shape, case colour,"
        " dial colour, strap kind and strap colour the top five share with the query watch, the watch itself "
        f"removed from the gallery): random {a['random']:.2f}, best possible {a['best']:.2f}.",
        "",
        "| query | raw backbone | trained | share of the gap to best closed | trained, without the attribute heads |",
        "|---|---|---|---|---|",
    ]
    for anchor in ("catalogue anchor", "photo anchor"):
        s = a[anchor]
        without = s["without_attributes"]
        lines.append(
            f"| {ANCHOR_NAMES[anchor]} | {s['raw']:.2f} | **{s['trained']:.2f}** | {s['closer_to_best']:.0%} | "
            f"{without:.2f} ({(without - s['raw']) / max(a['best'] - s['raw'], 1e-9):.0%}) |"
        )
    return "\n".join(lines)


def _colour_note(weight: float) -> str:
    if not weight:
        return " The model reads the backbone vectors alone."
    return (
        " The model reads each crop's colour descriptor beside its backbone vector (`ranking.colour`, each number"
        f" standardised and weighted {weight:g}); the raw backbone figures do not."
    )


def _attribute_note(attributes: dict | None) -> str:
    if not attributes:
        return " No attribute heads (`--no-attributes`)."
    shots = attributes.get("labelled_shots", 0)
    shot_note = f" and the {shots} photo-like shots taken of them" if shots else ""
    return (
        f" Attribute heads (`train-triplets --attributes`) from half A's {attributes['labelled']} labelled watches"
        f"{shot_note};"
        f" their share of the score, {attributes['weight']:g} (C {attributes['c']:g}), was chosen by"
        f" {attributes['folds']}-fold cross-validated top-5 agreement among those watches alone"
        + _identity_note(attributes)
        + "."
    )


def _identity_note(attributes: dict) -> str:
    """How the exact-watch check (train-triplets' IdentityCheck) bounded the share, when it ran."""
    first, page = attributes.get("identity_recall_at_1"), attributes.get("identity_recall_at_10")
    if not first or not page:
        return " (the exact-watch check off)"
    shares = ", ".join(f"{w} {r:.3f} / {page[w]:.3f}" for w, r in first.items())
    return (
        f", among the shares that keep the exact watch first and in the first ten: recall@1 / @10 of"
        f" {attributes['identity_views']} photo-like shots of other half-A watches, re-ranked, at share {shares};"
        f" a share more than {attributes['identity_tolerance']:g} below share 0 in either is left out"
    )


if __name__ == "__main__":
    sys.exit(main())
