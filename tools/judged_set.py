"""Build the human-judged set on a real catalogue: pick the watches, render what annotators look at, take their
answers, and derive attribute triplets.

The catalogue is split in two halves by file name (stable on every machine), so a model trained on one half can be
judged on watches - and on a whole catalogue - it has never seen. Annotators work in two ways:

* ``attribute-sheets``: numbered grids of watches; the annotator writes five attributes per watch into a CSV
  (vocabulary in ``ATTRIBUTE_VALUES``); ``derive`` turns those into clear triplets.
* ``ask`` / ``answer``: the labelling tool's own questions (``tiefwatch label`` chooses an anchor and the eight
  neighbours the current model is least sure about), drawn as one picture for annotators who work from an image
  rather than the browser; ``answer`` writes through the same locked CSV writer as the page.
* ``recheck-sheets`` / ``recheck``: a second annotator re-judges judged triplets blind (candidates in random
  order); how often the two agree is the ceiling a model's triplet accuracy on them is read against.

Examples::

    python tools/judged_set.py sample ../shared/data/watch-catalog-dev --per-half 200 --out benchmarks/judged
    python tools/judged_set.py attribute-sheets benchmarks/judged/watches.csv ../shared/data/watch-catalog-dev \\
        --out /tmp/sheets
    python tools/judged_set.py ask -w /tmp/wsA --triplets benchmarks/judged/direct-A.csv --annotator ann1 \\
        --state /tmp/ann1.json --image /tmp/ann1.png
    python tools/judged_set.py answer -w /tmp/wsA --triplets benchmarks/judged/direct-A.csv --annotator ann1 \\
        --state /tmp/ann1.json --near 3 --far 1 5 7
    python tools/judged_set.py derive benchmarks/judged/attributes.csv --out benchmarks/judged/derived.csv
    python tools/judged_set.py recheck-sheets benchmarks/judged/direct-B.csv ../shared/data/watch-catalog-dev \\
        --out /tmp/recheck
    python tools/judged_set.py recheck /tmp/recheck --out benchmarks/judged/recheck-B.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from tiefwatch.evaluation import is_holdout
from tiefwatch.images import list_images, save_image
from tiefwatch.sheet import _safe_load, grid, labelled, thumbnail
from tiefwatch.storage import write_text_atomic

HALF_SALT = "tiefwatch-judged-half"
ATTRIBUTES = ("shape", "case_colour", "dial_colour", "strap_kind", "strap_colour")
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "shape": ("round", "square", "rectangular", "tonneau", "oval", "other"),
    "case_colour": ("silver", "gold", "rose", "black", "two-tone", "blue", "other"),
    "dial_colour": ("white", "silver", "black", "blue", "gold", "rose", "grey", "brown", "green", "skeleton", "other"),
    "strap_kind": ("bracelet", "mesh", "leather", "rubber", "fabric", "other"),
    "strap_colour": ("silver", "gold", "rose", "two-tone", "black", "brown", "blue", "green", "white", "red", "other"),
}
SHEET_TILE = 200


def half_of(name: str) -> str:
    """'A' (training half) or 'B' (the half a model trained on A has never seen), stable by file name."""
    return "B" if is_holdout(name, 0.5, HALF_SALT) else "A"


# --------------------------------------------------------------------------------------------- sampling
def sample_watches(catalog: Path, per_half: int, seed: int = 0) -> list[tuple[str, str]]:
    """``per_half`` watches from each half, in a seeded random order: (file name, half)."""
    names = sorted(path.name for path in list_images(catalog))
    rng = np.random.default_rng(seed)
    chosen: list[tuple[str, str]] = []
    for half in ("A", "B"):
        members = [name for name in names if half_of(name) == half]
        if len(members) < per_half:
            raise ValueError(f"half {half} holds {len(members)} photos, fewer than --per-half {per_half}")
        picked = rng.choice(len(members), size=per_half, replace=False)
        chosen += [(members[i], half) for i in picked]
    return chosen


def read_watches(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [(row["file"], row["half"]) for row in csv.DictReader(handle)]


# --------------------------------------------------------------------------------------------- attributes
def render_attribute_sheets(
    watches: Sequence[str], catalog: Path, out: Path, per_sheet: int = 20, columns: int = 5
) -> list[Path]:
    """Numbered grids of ``per_sheet`` watches, each with a text file listing number and file name, and a CSV
    template the annotator fills in."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for sheet_no, start in enumerate(range(0, len(watches), per_sheet)):
        names = list(watches[start : start + per_sheet])
        tiles = [
            labelled(thumbnail(_safe_load(str(catalog / name)), SHEET_TILE), f"#{i + 1}  {name}")
            for i, name in enumerate(names)
        ]
        rows = [tiles[i : i + columns] for i in range(0, len(tiles), columns)]
        image_path = out / f"attr_{sheet_no:02d}.png"
        save_image(image_path, grid(rows))
        template = ["number,file," + ",".join(ATTRIBUTES)] + [
            f"{i + 1},{name}," + "," * 4 for i, name in enumerate(names)
        ]
        write_text_atomic(out / f"attr_{sheet_no:02d}.csv", "\n".join(template) + "\n")
        written.append(image_path)
    return written


def read_attributes(path: Path) -> dict[str, dict[str, str]]:
    """file -> attributes, checked against the vocabulary; a bad value names its row."""
    table: dict[str, dict[str, str]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row_no, row in enumerate(csv.DictReader(handle), start=2):
            values = {name: (row.get(name) or "").strip().lower() for name in ATTRIBUTES}
            for name, value in values.items():
                if value not in ATTRIBUTE_VALUES[name]:
                    raise ValueError(f"{path}:{row_no}: {name}={value!r} is not one of {ATTRIBUTE_VALUES[name]}")
            table[row["file"].strip()] = values
    return table


def write_attributes_csv(attributes: dict[str, dict[str, str]], names: list[str], path: Path) -> Path:
    """The labels of ``names`` in the form ``tiefwatch train-triplets --attributes`` reads (file + attributes)."""
    lines = [",".join(["file", *ATTRIBUTES])]
    lines += [",".join([name, *(attributes[name][k] for k in ATTRIBUTES)]) for name in sorted(names)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def shared_count(a: dict[str, str], b: dict[str, str]) -> int:
    return sum(a[name] == b[name] for name in ATTRIBUTES)


def derive_triplets(
    attributes: dict[str, dict[str, str]], per_anchor: int, min_gap: int = 2, seed: int = 0
) -> list[tuple[str, str, str]]:
    """Clear triplets within each half: near shares at least ``min_gap`` more attributes with the anchor than far.

    Each half draws from its own seeded generator, so labelling more watches of one half leaves the other's
    triplets (half B's are the benchmark's test set) as they were."""
    triplets: list[tuple[str, str, str]] = []
    for half in ("A", "B"):
        rng = np.random.default_rng([seed, ord(half)])
        names = sorted(name for name in attributes if half_of(name) == half)
        for anchor in names:
            others = [name for name in names if name != anchor]
            shared = np.array([shared_count(attributes[anchor], attributes[name]) for name in others])
            made: set[tuple[str, str, str]] = set()
            for _ in range(per_anchor * 30):
                if len(made) >= per_anchor:
                    break
                i, j = rng.choice(len(others), size=2, replace=False)
                if shared[i] - shared[j] >= min_gap:
                    made.add((anchor, others[i], others[j]))
                elif shared[j] - shared[i] >= min_gap:
                    made.add((anchor, others[j], others[i]))
            triplets += sorted(made)
    return triplets


def training_rows(
    judged: Path, per_anchor: int, min_gap: int, seed: int, holdout: float = 0.0
) -> list[tuple[str, str, str, str]]:
    """Every directly judged triplet, then the derived ones: what the packaged similarity model learns from.

    Triplets anchored on a watch of the stable ``holdout`` fraction are left out: training shoots photo-like views
    of each anchor, and the retrieval benchmark's queries are photos of exactly those held-out watches."""
    from tiefwatch.triplets import read_triplets

    rows = [
        (t.anchor, t.near, t.far, t.annotator or "direct")
        for path in sorted(judged.glob("direct-*.csv"))
        for t in read_triplets(path).triplets
    ]
    derived = derive_triplets(read_attributes(judged / "attributes.csv"), per_anchor, min_gap, seed)
    rows += [(*t, "attributes") for t in derived]
    return [row for row in rows if not (holdout and is_holdout(row[0], holdout))]


# --------------------------------------------------------------------------------------------- labelling questions
def question_image(catalog: Path, anchor: str, candidates: Sequence[str]) -> np.ndarray:
    """The anchor large on the left, the candidates numbered 1..n in two rows on the right."""
    side = 220
    anchor_tile = labelled(thumbnail(_safe_load(str(catalog / anchor)), side * 2), f"ANCHOR {anchor}", (180, 0, 0))
    tiles = [
        labelled(thumbnail(_safe_load(str(catalog / c)), side), f"#{i + 1}  {c}") for i, c in enumerate(candidates)
    ]
    half = (len(tiles) + 1) // 2
    right = grid([tiles[:half], tiles[half:]] if len(tiles) > 1 else [tiles])
    height = max(anchor_tile.shape[0], right.shape[0])

    def pad(image: np.ndarray) -> np.ndarray:
        return cv2.copyMakeBorder(image, 0, height - image.shape[0], 0, 0, cv2.BORDER_CONSTANT, value=(235, 235, 235))

    return np.hstack([pad(anchor_tile), np.full((height, 12, 3), 235, np.uint8), pad(right)])


def _label_app(workspace: str, triplets: Path):  # imported late: the labelling app loads the index and models
    from tiefwatch.label import LabelApp
    from tiefwatch.workspace import Workspace

    ws = Workspace(workspace)
    return LabelApp(ws, ws.load_config(), triplets)


def ask(workspace: str, triplets: Path, annotator: str, state: Path, image: Path, shard: str = "0/1") -> dict:
    """The next question; ``shard`` 'i/n' keeps to anchors whose row is i modulo n, so n annotators asking from
    separate processes never get the same anchor."""
    app = _label_app(workspace, triplets)
    part, parts = (int(v) for v in shard.split("/"))
    if parts > 1:
        app.restrict_anchors({row for row in range(len(app.index)) if row % parts == part})
    for skipped in _skipped(state):  # the app keeps skips in memory; each ask is a new process
        app.skip(annotator, skipped)
    question = app.next_question(annotator)
    if question.get("done") or "anchor" not in question:
        write_text_atomic(state, json.dumps({"done": True}))
        return {"done": True, "message": question.get("message", "")}
    anchor = question["anchor"]["path"]
    candidates = [c["path"] for c in question["candidates"]]
    save_image(image, question_image(Path(app.index.root), anchor, candidates))
    payload = {"anchor": anchor, "candidates": candidates, "asked": question["asked"], "counts": question["counts"]}
    write_text_atomic(state, json.dumps(payload, indent=1))
    return payload


def _skips_path(state: Path) -> Path:
    return state.with_name(state.stem + ".skipped.json")


def _skipped(state: Path) -> list[str]:
    path = _skips_path(state)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def answer(workspace: str, triplets: Path, annotator: str, state: Path, near: int | None, far: Sequence[int]) -> dict:
    """Record 'near is more like the anchor than each of far'; near None means the question was skipped."""
    pending = json.loads(state.read_text(encoding="utf-8")) if state.exists() else {}
    if pending.get("done") or "anchor" not in pending:
        raise ValueError("no question is pending: run ask first")
    app = _label_app(workspace, triplets)
    if near is None:
        write_text_atomic(_skips_path(state), json.dumps([*_skipped(state), pending["anchor"]]))
        state.unlink()
        return {"skipped": pending["anchor"], "written": 0}
    candidates = pending["candidates"]
    for number in (near, *far):
        if not 1 <= number <= len(candidates):
            raise ValueError(f"candidate #{number} is not on the sheet (1..{len(candidates)})")
    if near in far:
        raise ValueError(f"#{near} cannot be both near and far")
    written = 0
    for number in far:
        result = app.submit(annotator, pending["anchor"], candidates[near - 1], candidates[number - 1])
        written += int(bool(result["written"]))
    state.unlink()
    return {"anchor": pending["anchor"], "written": written, "total": app.label_state().total}


# --------------------------------------------------------------------------------------------- second opinions
RECHECK_KEY = "recheck-key.csv"
RECHECK_VERDICTS = ("agree", "disagree", "toss-up", "unanswered")


def render_recheck_sheets(
    triplets: Sequence[tuple[str, str, str]], catalog: Path, out: Path, per_sheet: int = 10, seed: int = 9
) -> list[Path]:
    """Blind sheets for a second annotator: each numbered row shows a judged triplet's anchor and its two
    candidates in random order, labelled 1 and 2. How often two people call a triplet the same way is the ceiling
    any model's triplet accuracy on it can be read against. Which candidate the first annotator called near goes to
    ``out/recheck-key.csv``, a file the annotator must not see; each sheet gets a ``number,choice`` template."""
    rng = random.Random(seed)
    order = list(triplets)
    rng.shuffle(order)
    out.mkdir(parents=True, exist_ok=True)
    key, written = [], []
    for sheet_no, start in enumerate(range(0, len(order), per_sheet)):
        rows, template = [], ["number,choice"]
        for number, (anchor, near, far) in enumerate(order[start : start + per_sheet], start=start + 1):
            swap = rng.random() < 0.5
            one, two = (far, near) if swap else (near, far)
            key.append((str(number), anchor, near, far, "2" if swap else "1"))
            tiles = [(anchor, f"#{number}  anchor", (180, 0, 0)), (one, "1", (0, 0, 200)), (two, "2", (0, 0, 200))]
            rows.append([labelled(thumbnail(_safe_load(str(catalog / n)), SHEET_TILE), t, c) for n, t, c in tiles])
            template.append(f"{number},")
        image_path = out / f"recheck_{sheet_no:02d}.png"
        save_image(image_path, grid(rows))
        write_text_atomic(out / f"recheck_{sheet_no:02d}.csv", "\n".join(template) + "\n")
        written.append(image_path)
    write_csv(out / RECHECK_KEY, ("number", "anchor", "near", "far", "near_is"), key)
    return written


def recheck_verdicts(folder: Path) -> list[tuple[str, str, str, str]]:
    """(anchor, near, far, verdict) per keyed triplet, from the second annotator's ``recheck_NN.filled.csv``
    files: ``agree`` where they chose the first annotator's near, ``disagree`` the far, ``toss-up`` where they
    answered 0 (could not call it), ``unanswered`` where no filled sheet has the number."""
    choices: dict[str, str] = {}
    for path in sorted(folder.glob("recheck_*.filled.csv")):
        with open(path, newline="", encoding="utf-8") as handle:
            for row_no, row in enumerate(csv.DictReader(handle), start=2):
                choice = (row.get("choice") or "").strip()
                if choice not in ("0", "1", "2"):
                    raise ValueError(f"{path}:{row_no}: choice {choice!r} is not 1, 2 or 0")
                choices[row["number"].strip()] = choice
    verdicts = []
    with open(folder / RECHECK_KEY, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            choice = choices.get(row["number"])
            if choice is None:
                verdict = "unanswered"
            elif choice == "0":
                verdict = "toss-up"
            else:
                verdict = "agree" if choice == row["near_is"] else "disagree"
            verdicts.append((row["anchor"], row["near"], row["far"], verdict))
    return verdicts


def agreement_summary(verdicts: Sequence[tuple[str, str, str, str]]) -> dict[str, float | int]:
    counts = {name: sum(v[3] == name for v in verdicts) for name in RECHECK_VERDICTS}
    called = counts["agree"] + counts["disagree"]
    return {**counts, "triplets": len(verdicts), "agreement": round(counts["agree"] / called, 4) if called else 0.0}


def read_recheck(path: Path) -> dict[tuple[str, str, str], str]:
    """A committed ``recheck-*.csv`` (``anchor,near,far,second``): each rechecked triplet's verdict."""
    with open(path, newline="", encoding="utf-8") as handle:
        return {(r["anchor"], r["near"], r["far"]): r["second"] for r in csv.DictReader(handle)}


# --------------------------------------------------------------------------------------------- CLI
def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    lines = [",".join(header)] + [",".join(row) for row in rows]
    write_text_atomic(path, "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("sample", help="choose the watches to label, half by half")
    p.add_argument("catalog", type=Path)
    p.add_argument("--per-half", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="folder; writes watches.csv")
    p = verbs.add_parser("attribute-sheets", help="numbered grids and CSV templates for attribute labelling")
    p.add_argument("watches", type=Path)
    p.add_argument("catalog", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--per-sheet", type=int, default=20)
    p = verbs.add_parser("derive", help="clear triplets from labelled attributes")
    p.add_argument("attributes", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--per-anchor", type=int, default=6)
    p.add_argument("--min-gap", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p = verbs.add_parser("training-csv", help="all judged triplets plus derived ones, one CSV for train-triplets")
    p.add_argument("judged", type=Path, help="folder with attributes.csv and direct-*.csv")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--per-anchor", type=int, default=40)
    p.add_argument("--min-gap", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--holdout", type=float, default=0.0, help="drop triplets anchored on this stable held-out share")
    p.add_argument(
        "--attributes-out", type=Path,
        help="also write the labels (held-out share left out) for train-triplets --attributes",
    )  # fmt: skip
    p = verbs.add_parser("recheck-sheets", help="blind sheets for a second opinion on judged triplets")
    p.add_argument("triplets", type=Path, help="a direct-*.csv")
    p.add_argument("catalog", type=Path)
    p.add_argument("--out", type=Path, required=True, help="folder for the sheets, templates and the key")
    p.add_argument("--per-sheet", type=int, default=10)
    p.add_argument("--seed", type=int, default=9)
    p = verbs.add_parser("recheck", help="the second annotator's filled sheets against the key")
    p.add_argument("folder", type=Path, help="the recheck-sheets folder, with recheck_NN.filled.csv files")
    p.add_argument("--out", type=Path, help="write anchor,near,far,second here")
    for name in ("ask", "answer"):
        p = verbs.add_parser(
            name,
            help="the labelling tool's next question as a picture"
            if name == "ask"
            else "record the answer to the pending question",
        )
        p.add_argument("--workspace", "-w", required=True)
        p.add_argument("--triplets", type=Path, required=True)
        p.add_argument("--annotator", required=True)
        p.add_argument("--state", type=Path, required=True, help="JSON file holding the pending question")
        if name == "ask":
            p.add_argument("--image", type=Path, required=True)
            p.add_argument("--shard", default="0/1", help="i/n: only anchors whose index row is i modulo n")
        else:
            p.add_argument("--near", type=int, help="number of the most alike candidate; leave out to skip")
            p.add_argument("--far", type=int, nargs="*", default=[], help="candidates clearly less alike than near")
    args = parser.parse_args(argv)
    try:
        if args.verb == "sample":
            chosen = sample_watches(args.catalog, args.per_half, args.seed)
            args.out.mkdir(parents=True, exist_ok=True)
            write_csv(args.out / "watches.csv", ("file", "half"), chosen)
            print(f"{len(chosen)} watches -> {args.out / 'watches.csv'}")
        elif args.verb == "attribute-sheets":
            names = [name for name, _ in read_watches(args.watches)]
            for path in render_attribute_sheets(names, args.catalog, args.out, args.per_sheet):
                print(path)
        elif args.verb == "derive":
            triplets = derive_triplets(read_attributes(args.attributes), args.per_anchor, args.min_gap, args.seed)
            write_csv(args.out, ("anchor", "near", "far", "annotator"), [(*t, "attributes") for t in triplets])
            print(f"{len(triplets)} triplets -> {args.out}")
        elif args.verb == "training-csv":
            rows = training_rows(args.judged, args.per_anchor, args.min_gap, args.seed, args.holdout)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            write_csv(args.out, ("anchor", "near", "far", "annotator"), rows)
            print(f"{len(rows)} triplets -> {args.out}")
            if args.attributes_out:
                labels = read_attributes(args.judged / "attributes.csv")
                kept = [name for name in labels if not (args.holdout and is_holdout(name, args.holdout))]
                write_attributes_csv(labels, kept, args.attributes_out)
                print(f"{len(kept)} labelled watches -> {args.attributes_out}")
        elif args.verb == "recheck-sheets":
            from tiefwatch.triplets import read_triplets

            judged = [(t.anchor, t.near, t.far) for t in read_triplets(args.triplets).triplets]
            for path in render_recheck_sheets(judged, args.catalog, args.out, args.per_sheet, args.seed):
                print(path)
            print(f"key (keep it from the annotator): {args.out / RECHECK_KEY}")
        elif args.verb == "recheck":
            verdicts = recheck_verdicts(args.folder)
            if args.out:
                write_csv(args.out, ("anchor", "near", "far", "second"), verdicts)
            print(json.dumps(agreement_summary(verdicts)))
        elif args.verb == "ask":
            print(json.dumps(ask(args.workspace, args.triplets, args.annotator, args.state, args.image, args.shard)))
        else:
            print(json.dumps(answer(args.workspace, args.triplets, args.annotator, args.state, args.near, args.far)))
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"judged_set: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
