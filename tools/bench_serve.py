"""Load test of ``tiefwatch serve``: concurrent clients posting photos to ``/api/search``; writes the ``serve``
section of docs/benchmarks.md.

Each ``--workspace LABEL=DIR`` is served by a fresh ``tiefwatch serve`` process (``--workers N``), warmed up with a
few requests, then ``--clients`` threads each send ``--requests`` searches over their own keep-alive connection.
Reported: errors (any answer but 200, or a failed connection), throughput, latency percentiles as a client sees
them, and the server's peak memory (resident set of all its processes, sampled every 0.2 s).

Query photos: ``--queries DIR`` if given, else ``DIR/photos`` (what ``tiefwatch demo`` writes), else photo-like
shots simulated from the indexed catalogue (cluttered background, tilt, dim light, JPEG).

    python tools/bench_serve.py --workspace demo=.tiefwatch/demo --clients 8 --requests 50
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.benchdoc import machine_line, write_section  # noqa: E402

BOUNDARY = "tiefwatch-bench"


@dataclass
class Run:
    label: str
    workspace: Path
    catalogue: int = 0
    health: dict = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    single: list[float] = field(default_factory=list)  # one client alone, one request at a time: the baseline
    errors: list[str] = field(default_factory=list)
    load: tuple[float, float] = (0.0, 0.0)  # the machine's 1-minute load average before and after
    seconds: float = 0.0
    peak_rss: int = 0
    startup_seconds: float = 0.0
    queries: int = 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def multipart(name: str, data: bytes) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def query_photos(workspace: Path, queries: Path | None, count: int, seed: int) -> list[tuple[str, bytes]]:
    """(name, JPEG bytes) for each query photo."""
    from tiefwatch.images import list_images

    folder = queries or (workspace / "photos")
    if folder.is_dir() and list_images(folder):
        return [(path.name, path.read_bytes()) for path in list_images(folder)[:count]]
    from PIL import Image

    from bbox.synth import PhotoSimulator
    from tiefwatch.images import load_image
    from tiefwatch.index import CatalogIndex

    index = CatalogIndex.load(workspace / "index" / "catalog.npz")
    rng = np.random.default_rng(seed)
    simulator = PhotoSimulator(seed=seed)
    photos = []
    for row in rng.choice(len(index), size=min(count, len(index)), replace=False):
        scene = simulator(load_image(index.path_of(int(row))), rng)
        buffer = io.BytesIO()
        Image.fromarray(scene.image).save(buffer, "JPEG", quality=85)
        photos.append((f"shot_of_{Path(index.entries[int(row)].path).stem}.jpg", buffer.getvalue()))
    return photos


def process_tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants (uvicorn's workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def request(connection: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes]:
    connection.request("POST", "/api/search", body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    response = connection.getresponse()
    return response.status, response.read()


def measure(run: Run, args: argparse.Namespace) -> None:
    photos = query_photos(run.workspace, args.queries, args.photos, args.seed)
    run.queries = len(photos)
    bodies = [multipart(name, data) for name, data in photos]
    port = free_port()
    command = [
        sys.executable, "-m", "tiefwatch.cli", "-w", str(run.workspace), "-q", "serve", "--port", str(port),
        "--workers", str(args.workers),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, process_tree_rss(server.pid))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        deadline = time.time() + 600
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"tiefwatch serve exited: {server.stderr.read() if server.stderr else ''}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/api/health")
                response = connection.getresponse()
                if response.status == 200:
                    run.health = json.loads(response.read())
                    break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
        run.startup_seconds = time.perf_counter() - started
        run.catalogue = run.health["catalogue"]
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for body in bodies[: max(2, args.workers * 2)]:  # first runs of the engines, in every worker
            request(warm, body)
        run.load = (os.getloadavg()[0], 0.0)
        for number in range(args.baseline):
            begin = time.perf_counter()
            status, data = request(warm, bodies[number % len(bodies)])
            run.single.append(time.perf_counter() - begin)
            if status != 200:
                run.errors.append(f"{status}: {data[:200]!r}")
        warm.close()
        lock = threading.Lock()

        def client(number: int) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            for attempt in range(args.requests):
                body = bodies[(number * args.requests + attempt) % len(bodies)]
                begin = time.perf_counter()
                try:
                    status, data = request(connection, body)
                    problem = None if status == 200 else f"{status}: {data[:200]!r}"
                except (OSError, http.client.HTTPException) as error:
                    problem = f"{error.__class__.__name__}: {error}"
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                elapsed = time.perf_counter() - begin
                with lock:
                    run.latencies.append(elapsed)
                    if problem:
                        run.errors.append(problem)
            connection.close()

        begin = time.perf_counter()
        threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        run.seconds = time.perf_counter() - begin
        run.load = (run.load[0], os.getloadavg()[0])
    finally:
        stop.set()
        sampler.join(2)
        run.peak_rss = peak
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def report(runs: list[Run], args: argparse.Namespace, command: str) -> str:
    lines = [
        "## Serving: concurrent clients on `tiefwatch serve`",
        "",
        f"`{command}`",
        "",
        f"{machine_line()}. {args.clients} clients at once, each sending {args.requests} searches (a JPEG photo "
        f"posted to `/api/search`, default options) over its own keep-alive connection, after "
        f"{max(2, args.workers * 2)} warm-up searches and, as the baseline, {args.baseline} searches by one client "
        f"alone; `tiefwatch serve --workers {args.workers}`. Latency is what a client waits, queueing included; "
        "memory is the resident set of all the server's processes, sampled every 0.2 s; 'ready after' is from "
        "starting the server to its first answer to `/api/health`.",
        "",
        "| workspace | catalogue | crop / re-rank | requests | errors | throughput | p50 | p90 | p99 | max | "
        "one client alone: p50 / throughput | peak memory | ready after | load average |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        ms = np.asarray(run.latencies) * 1000
        single = np.asarray(run.single) * 1000
        health = run.health
        lines.append(
            f"| {run.label} | {run.catalogue:,} | {'yes' if health.get('crop') else 'no'} / "
            f"{'yes' if health.get('rerank') else 'no'} | {len(ms)} | {len(run.errors)} | "
            f"{len(ms) / run.seconds:.1f}/s | {np.percentile(ms, 50):.0f} ms | {np.percentile(ms, 90):.0f} ms | "
            f"{np.percentile(ms, 99):.0f} ms | {ms.max():.0f} ms | {np.percentile(single, 50):.0f} ms / "
            f"{len(single) / single.sum() * 1000:.1f}/s | {run.peak_rss / 2**20:.0f} MiB | "
            f"{run.startup_seconds:.1f} s | {run.load[0]:.1f} → {run.load[1]:.1f} |"
        )
    lines.append("")
    for run in runs:
        source = args.queries or (run.workspace / "photos")
        origin = f"{run.queries} photos from {source}" if source.is_dir() else f"{run.queries} simulated shots"
        lines.append(f"- {run.label}: `{run.workspace}`, {origin}, cycled.")
        if run.errors:
            lines.append(f"  First error: `{run.errors[0]}`")
    if args.note:
        lines.append(f"\n{args.note}")
    lines.append(
        "\nThe load average is the machine's (1 minute) before the concurrent run and after it: on 2 cores, "
        "anything above 2 is other work sharing them. Concurrent clients queue for the same cores, so each waits "
        "for the searches ahead of it (p50 ≈ clients × one client's time ÷ the throughput gain). Where throughput "
        "with many clients beats one client's, part of it is decoding and transfer overlapping inference, and "
        "part, on a shared machine, that more request threads take a larger share of the cores: the ratio is "
        "the machine's as much as the server's."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", action="append", required=True, metavar="LABEL=DIR", help="repeatable")
    parser.add_argument("--queries", type=Path, help="folder of query photos (default: DIR/photos or simulated)")
    parser.add_argument("--photos", type=int, default=40, help="distinct query photos at most")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50, help="per client")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--baseline", type=int, default=20, help="searches by one client alone, first")
    parser.add_argument("--note", default="", help="a paragraph added to the section (what the workspaces are)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-doc", action="store_true", help="print the section only")
    args = parser.parse_args(argv)
    runs = []
    for item in args.workspace:
        label, _, folder = item.partition("=")
        run = Run(label, Path(folder or label))
        print(f"{label}: serving {run.workspace} ...", file=sys.stderr)
        measure(run, args)
        ms = np.asarray(run.latencies) * 1000
        print(
            f"{label}: {len(ms)} requests, {len(run.errors)} errors, p50 {np.percentile(ms, 50):.0f} ms, "
            f"p99 {np.percentile(ms, 99):.0f} ms, peak {run.peak_rss / 2**20:.0f} MiB",
            file=sys.stderr,
        )
        runs.append(run)
    command = "python tools/bench_serve.py " + " ".join(
        [f"--workspace {w}" for w in args.workspace]
        + [f"--clients {args.clients}", f"--requests {args.requests}", f"--workers {args.workers}"]
        + ([f"--note {args.note!r}"] if args.note else [])
    )
    body = report(runs, args, command)
    print(body)
    if not args.no_doc:
        write_section(args.doc, "serve", body)
    return 1 if any(run.errors for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
