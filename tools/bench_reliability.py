"""Reliability of the image reader: the generated fuzz corpus (tests/fuzz_corpus.py) read file by file, with each
case's outcome counted (read, skipped with a reason, crashed, read wrongly, or lost), and what large photos cost to
read and to index.

Example (writes the ``reliability`` section of docs/benchmarks.md)::

    python tools/bench_reliability.py --doc docs/benchmarks.md --baseline-reader /tmp/images_before.py --index

``--baseline-reader`` is another version of ``tiefwatch/images.py`` (e.g. ``git show REV:tiefwatch/images.py``)
whose large-photo reads are measured beside the current one's, each in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fuzz_corpus import corpus, judge, large_jpeg, write_corpus, write_special_files  # noqa: E402
from tiefwatch.images import MAX_PIXELS, MAX_SIDE, display_path, load_image  # noqa: E402

RESULTS = ("read", "skipped", "crashed", "wrong", "lost")

# Peak memory is the process's VmHWM (high-water RSS of its own address space; ru_maxrss would carry the
# parent's over fork and exec).
READ_ONE = """
import importlib.util, json, sys, time
def peak_mb():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024
spec = importlib.util.spec_from_file_location("reader", sys.argv[1])
reader = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reader)
before = peak_mb()
started = time.perf_counter()
shape = reader.load_image(sys.argv[2]).shape
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak_mb": peak_mb(), "grown_mb": peak_mb() - before, "shape": shape}))
"""


# Runs a command and reports its peak RSS: the largest VmHWM seen while it runs (sampled every 20 ms; ru_maxrss
# would carry this process's own over fork and exec).
MEASURE_CHILD = """
import json, subprocess, sys, time
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
peak = 0
while child.poll() is None:
    try:
        with open(f"/proc/{child.pid}/status") as status:
            peak = max([peak] + [int(l.split()[1]) for l in status if l.startswith("VmHWM:")])
    except (OSError, ValueError):
        pass
    time.sleep(0.02)
out, err = child.communicate()
print(json.dumps({"rc": child.returncode, "out": out, "err": err[-500:], "peak": peak}))
"""


def run_corpus(folder: Path) -> dict:
    """Every case written as a file and read with ``load_image``; outcomes counted overall and per group."""
    cases = corpus(seed=0, large=True)
    by_name = write_corpus(folder / "corpus", cases)
    special = write_special_files(folder / "special")
    items = [(folder / "corpus" / name, case) for name, case in by_name.items()]
    items += [(folder / "special" / name, case) for name, case in special.items()]
    outcomes = []
    started = time.perf_counter()
    for path, case in items:
        outcomes.append(judge(case, lambda path=path: load_image(path), display_path(path)))
    seconds = time.perf_counter() - started
    groups: dict[str, Counter] = defaultdict(Counter)
    for outcome in outcomes:
        groups[outcome.group][outcome.result] += 1
    reasons = Counter(o.detail.split(":")[0].split(" (")[0] for o in outcomes if o.result == "skipped")
    return {
        "tried": len(outcomes),
        "results": {name: sum(o.result == name for o in outcomes) for name in RESULTS},
        "groups": {group: dict(counts) for group, counts in sorted(groups.items())},
        "reasons": dict(reasons.most_common()),
        "failures": [o.__dict__ for o in outcomes if o.result not in ("read", "skipped")],
        "seconds": round(seconds, 2),
    }


def read_costs(folder: Path, readers: dict[str, Path], sides: list[int], repeat: int) -> list[dict]:
    """Time and peak memory of reading one large JPEG, each reader in a fresh process, the median of ``repeat``
    runs (readers interleaved, so a busy spell on a shared machine falls on both)."""
    rows = []
    for side in sides:
        photo = folder / f"photo-{side}.jpg"
        photo.write_bytes(large_jpeg(side, side))
        runs: dict[str, list[dict]] = defaultdict(list)
        errors: dict[str, str] = {}
        for _ in range(repeat):
            for label, reader in readers.items():
                command = [sys.executable, "-c", READ_ONE, str(reader), str(photo)]
                done = subprocess.run(command, capture_output=True, text=True, timeout=600)
                if done.returncode == 0:
                    runs[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
                else:
                    errors[label] = (done.stderr.strip().splitlines() or ["?"])[-1]
        for label in readers:
            row: dict = {"side": side, "reader": label, "megabytes": round(photo.stat().st_size / 1e6, 1)}
            if label in errors:
                row["error"] = errors[label]
            else:
                row |= {key: float(np.median([r[key] for r in runs[label]])) for key in ("seconds", "peak_mb")}
                row |= {"grown_mb": float(np.median([r["grown_mb"] for r in runs[label]]))}
                row |= {"shape": runs[label][0]["shape"], "runs": len(runs[label])}
            rows.append(row)
            print(row, file=sys.stderr)
    return rows


def index_costs(folder: Path, sides: list[int]) -> list[dict]:
    """``tiefwatch index`` of a catalogue holding one large photo, in a fresh process: wall time and the
    process's peak memory (``ru_maxrss`` of the child)."""
    rows = []
    for side in [128, *sides]:  # 128 px: what the process costs with a photo the size of the dev catalogue's
        catalogue = folder / f"catalogue-{side}"
        catalogue.mkdir()
        (catalogue / f"photo-{side}.jpg").write_bytes(large_jpeg(side, side))
        command = [sys.executable, "-m", "tiefwatch.cli", "-w", str(folder / f"ws-{side}"), "-q"]
        command += ["--set", "embed.engine=torch", "index", str(catalogue), "--format", "json"]
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", MEASURE_CHILD, *command],
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        measured = json.loads(done.stdout)
        summary = json.loads(measured["out"]) if measured["rc"] == 0 else {}
        row = {"side": side, "seconds": round(time.perf_counter() - started, 1), "total": summary.get("total")}
        row["peak_mb"] = round(measured["peak"] / 1024) if measured["rc"] == 0 else f"exit {measured['rc']}"
        rows.append(row)
        print(row, file=sys.stderr)
    return rows


def render(figures: dict) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchdoc import machine_line

    c = figures["corpus"]
    r = c["results"]
    lines = [
        "## Reliability: every file a user has, read or refused cleanly",
        "",
        f"{machine_line()}; load average {figures['load'][0]:.1f} when it started and {figures['load'][1]:.1f} when "
        "it ended (the cores were shared: times are upper bounds, read the ratios).",
        "",
        "```",
        figures["command"],
        "```",
        "",
        "The fuzz corpus (tests/fuzz_corpus.py, made in code; tests/tiefwatch/test_fuzz_inputs.py runs it too): every "
        "truncation point of a small JPEG and PNG, random corruptions, random bytes behind each format's magic "
        "number, wrong extensions, decompression bombs and huge claimed sizes, 16-bit, float, CMYK, progressive, "
        "palette, alpha, EXIF orientations 1-8, HEIC/AVIF/WebP/TIFF/BMP, large photos, and the file system's own "
        "cases (looping and broken symlinks, a FIFO and a folder named like a photo, undecodable, multi-line, "
        "250-byte and unicode names). Each file is read with `load_image`; *read* means read as expected (checked "
        "against an 8-bit reference where a wrong decode could pass: tones, orientation, transparency), *skipped* "
        "a one-line `ImageReadError` naming the file once, *crashed* any other exception or message, *wrong* read "
        "but not as expected, *lost* refused though readable.",
        "",
        "| cases tried | read | skipped | crashed | read wrongly | lost | seconds |",
        "|---|---|---|---|---|---|---|",
        f"| {c['tried']:,} | {r['read']:,} | {r['skipped']:,} | {r['crashed']} | {r['wrong']} | {r['lost']} "
        f"| {c['seconds']} |",
        "",
        "| group | " + " | ".join(RESULTS) + " |",
        "|---|" + "---|" * len(RESULTS),
    ]
    for group, counts in c["groups"].items():
        lines.append(f"| {group} | " + " | ".join(str(counts.get(name, 0)) for name in RESULTS) + " |")
    reasons = ", ".join(f"{reason} {count:,}" for reason, count in c["reasons"].items())
    lines += ["", f"Reasons given for the skips: {reasons}.", ""]
    if c["failures"]:
        lines += ["Failures:", "", *[f"- {f['case']}: {f['result']}: {f['detail']}" for f in c["failures"]], ""]
    lines += [
        f"Large JPEGs are decoded reduced (libjpeg's 1/2-1/8 DCT scaling, to {MAX_SIDE * 2 // 3:,}-{MAX_SIDE:,} px "
        f"on the long side), other formats scaled to {MAX_SIDE:,} px; nothing over {MAX_PIXELS:,} pixels is decoded "
        "at once, and Pillow's header check refuses bombs before any pixel is. Reading one photo in a fresh process "
        "(median of the runs; peak RSS, VmHWM, includes the interpreter and imports):",
        "",
        "| photo | file MB | reader | runs | seconds | peak RSS MB | RSS grown by the read MB | array |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in figures["reads"]:
        if "error" in row:
            lines.append(f"| {row['side']:,}² | {row['megabytes']} | {row['reader']} | | error: {row['error']} | | | |")
            continue
        shape = "×".join(str(v) for v in row["shape"])
        lines.append(
            f"| {row['side']:,}² | {row['megabytes']} | {row['reader']} | {row['runs']} | {row['seconds']:.2f} "
            f"| {row['peak_mb']:.0f} "
            f"| {row['grown_mb']:.0f} | {shape} |"
        )
    if figures.get("index"):
        lines += [
            "",
            "`tiefwatch index` (engine torch, default settings otherwise) of a catalogue holding one such photo, a "
            "fresh process each; the 128² row is the process's own cost (imports, models) with a photo the size of "
            "the dev catalogue's. Issue 24 measured 118 s and 1.8 GB for the 4,000² one before, and no end within 10 "
            "minutes for the 12,000² one:",
            "",
            "| photo | seconds | peak RSS MB | indexed |",
            "|---|---|---|---|",
            *[f"| {r['side']:,}² | {r['seconds']} | {r['peak_mb']} | {r['total']} |" for r in figures["index"]],
        ]
    lines += ["", "Issue 24's table, each row re-run by a test:", "", *ISSUE_ROWS]
    if figures.get("note"):
        lines += ["", figures["note"]]
    return "\n".join(lines)


ISSUE_ROWS = [
    "| input | before | now | test |",
    "|---|---|---|---|",
    '| bomb PNG (30,000²) in a catalogue | traceback, nothing indexed | skipped: "too large: 30000×30000, limit '
    '178,956,970 pixels" | test_fuzz_inputs: test_index_takes_every_readable_file_and_names_every_other |',
    "| the bomb among `search` queries | exit 1, stdout empty | that query's `error`, the others answered | "
    "test_fuzz_inputs: test_search_answers_every_query_and_errors_name_the_file_once |",
    '| symlink to itself in a catalogue | `index` stops (ELOOP) | skipped: "symlink loop" | '
    "test_fuzz_inputs: test_index_cli_on_the_fuzz_catalogue_prints_a_summary_not_a_traceback |",
    "| 16-bit PNG | mean 254 (clipped white) | mean 194.6 (0..65535 scaled) | "
    "test_images: test_sixteen_bit_png_keeps_its_tones_instead_of_turning_white |",
    "| 4,000² / 12,000² JPEG | 118 s, 1.8 GB / over 10 min (issue's figures) | table above | "
    "test_fuzz_inputs: test_large_images_are_decoded_reduced_and_bombs_never_decoded |",
    "| `kill -9` during the index save | temp file left forever | removed by the next writer | "
    "test_index_crash (4 save seeds, 2 whole-run seeds) |",
    '| unreadable query | path printed twice | path once (`ImageReadError`: "PATH: reason") | '
    "test_images: test_every_failure_is_one_read_error_naming_the_path_once |",
    "| labelling server restarted | similarity model, then raw cosine | chosen at start, same on every start, "
    "`LabelApp.status()` says why | test_label_model |",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--doc", type=Path, help="write the reliability section of this markdown file")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--baseline-reader", type=Path, help="another images.py to measure large reads beside")
    parser.add_argument("--sides", type=int, nargs="+", default=[4000, 12000], help="large JPEG sides to read")
    parser.add_argument("--repeat", type=int, default=3, help="fresh-process reads per reader and photo (median)")
    parser.add_argument("--index", action="store_true", help="also time `tiefwatch index` of each large photo")
    parser.add_argument("--note", default="", help="a sentence printed under the figures")
    args = parser.parse_args(argv)
    command = "python tools/bench_reliability.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    readers = {"now": ROOT / "tiefwatch" / "images.py"}
    if args.baseline_reader:
        readers = {"before": args.baseline_reader, **readers}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        figures = {"command": command, "note": args.note, "load": [os.getloadavg()[0]]}
        figures["corpus"] = run_corpus(folder)
        print(json.dumps({k: v for k, v in figures["corpus"].items() if k != "groups"}, indent=1), file=sys.stderr)
        figures["reads"] = read_costs(folder, readers, args.sides, args.repeat)
        if args.index:
            figures["index"] = index_costs(folder, args.sides)
        figures["load"].append(os.getloadavg()[0])
    text = render(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    if args.doc:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from benchdoc import write_section

        write_section(args.doc, "reliability", text)
    print(text)
    crashed = figures["corpus"]["results"]
    return 1 if crashed["crashed"] or crashed["wrong"] or crashed["lost"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
