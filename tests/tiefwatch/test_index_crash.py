"""Crash safety as a test: ``kill -9`` at random moments of an index save and of a whole ``index`` run.

Whatever the moment, the previous index (or the new one, complete) loads; the temp file a killed writer leaves
is removed by the next run; and a re-run reaches the same index as an uninterrupted one.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import draw_watch
from tiefwatch.config import Config
from tiefwatch.images import save_image
from tiefwatch.index import CatalogIndex, Entry, index_catalog
from tiefwatch.storage import remove_stale_temps
from tiefwatch.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
FAST = ["backbone.image_size=96", "embed.batch_size=8", "embed.engine=torch", "index.views=0"]
ROWS = 40_000  # a save of 2 x 10 MB (vectors and the flat FAISS copy): tens of milliseconds to kill it within
DIM = 64

SAVER = """
import sys
from pathlib import Path
import numpy as np
from tiefwatch.config import Config
from tiefwatch.index import CatalogIndex, Entry
path, rows, dim = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
config = Config().merged(overrides=["index.type=flat"])
entries = [Entry(f"w{i}.png", i, i, "0" * 40) for i in range(rows)]
print("ready", flush=True)
for version in range(1, 100_000):
    CatalogIndex(Path("/catalog"), entries, np.full((rows, dim), version, np.float32), {}, config).save(path)
    print(version, flush=True)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _temps(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.tmp"))


def _save_version(path: Path, version: int) -> None:
    config = Config().merged(overrides=["index.type=flat"])
    entries = [Entry(f"w{i}.png", i, i, "0" * 40) for i in range(ROWS)]
    CatalogIndex(Path("/catalog"), entries, np.full((ROWS, DIM), version, np.float32), {}, config).save(path)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_save_killed_at_any_moment_leaves_a_loadable_index_and_no_temp_after_the_next(
    tmp_path: Path, seed: int
) -> None:
    """Even seeds kill after a random delay; odd ones the moment a temp file is half written."""
    rng = random.Random(seed)
    path = tmp_path / "index" / "catalog.npz"
    _save_version(path, 0)
    child = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(path), str(ROWS), str(DIM)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    if seed % 2 == 0:
        time.sleep(rng.uniform(0.05, 1.0))
    else:
        _stop_mid_write(child, path.parent, rng)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    finished = [int(line) for line in child.stdout.read().split()]
    loaded = CatalogIndex.load(path)  # never a half-written file
    version = int(loaded.vectors[0, 0])
    last = finished[-1] if finished else 0
    assert version in (last, last + 1) and np.all(loaded.vectors == version)
    if seed % 2:
        assert _written_temps(path.parent, 1), "the kill landed mid-write: its temp file is left"
    _save_version(path, 99)  # the next writer of the same index
    assert [t for t in _temps(path.parent) if t.stat().st_size > 0] == []  # a dead writer's temp is gone
    assert int(CatalogIndex.load(path).vectors[0, 0]) == 99


def _stop_mid_write(child: subprocess.Popen, folder: Path, rng: random.Random) -> None:
    """Stop the child (SIGSTOP) while a temp file of its save is on disk and partly written, so the SIGKILL that
    follows lands mid-write for certain; a stop that came just after a rename is undone and tried again."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _written_temps(folder, 1 << 20):
            time.sleep(rng.uniform(0, 0.003))
            child.send_signal(signal.SIGSTOP)
            os.waitpid(child.pid, os.WUNTRACED)  # returns once it is stopped (the process is not reaped)
            if _written_temps(folder, 1):
                return
            child.send_signal(signal.SIGCONT)
        time.sleep(0.001)
    raise AssertionError("no save was caught mid-write within a minute")


def _written_temps(folder: Path, at_least: int) -> list[Path]:
    out = []
    for temp in _temps(folder):
        try:
            if temp.stat().st_size >= at_least:
                out.append(temp)
        except FileNotFoundError:
            continue
    return out


def test_a_live_writers_temp_is_never_removed(tmp_path: Path) -> None:
    """Only dead writers' temps go: one whose lock is held, or one just created and still empty, stays."""
    import fcntl

    target = tmp_path / "catalog.npz"
    held = tmp_path / ".catalog.npz.live.tmp"
    held.write_bytes(b"half of a live write")
    with open(held, "rb") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        fresh = tmp_path / ".catalog.npz.fresh.tmp"
        fresh.touch()
        dead = tmp_path / ".catalog.npz.dead.tmp"
        dead.write_bytes(b"half of a killed write")
        assert remove_stale_temps(target) == [dead]
        assert held.exists() and fresh.exists()
    os.utime(fresh, (time.time() - 60, time.time() - 60))
    assert sorted(remove_stale_temps(target)) == sorted([held, fresh])  # lock released, and old enough


# ---------------------------------------------------------------------------------------------- a whole run
INDEXER = """
import sys
from pathlib import Path
import torch  # imported before "ready", so the kill lands in the indexing itself
from tiefwatch.config import Config
from tiefwatch.index import index_catalog
from tiefwatch.workspace import Workspace
import tiefwatch.models
config = Config().merged(overrides=sys.argv[3:])
print("ready", flush=True)
index_catalog(Path(sys.argv[1]), Workspace(sys.argv[2]), config)
print("done", flush=True)
"""


@pytest.fixture(scope="module")
def before_and_after(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, float]:
    """A catalogue indexed with four watches, four more added since, and the same update run uninterrupted
    (with how long it took)."""
    base = tmp_path_factory.mktemp("crash")
    catalogue, first, clean = base / "catalog", base / "ws-first", base / "ws-clean"
    config = Config().merged(overrides=FAST)
    for number in range(4):
        save_image(catalogue / f"w{number}.png", draw_watch(number))
    index_catalog(catalogue, Workspace(first), config)
    for number in range(4, 8):
        save_image(catalogue / f"w{number}.png", draw_watch(number))
    shutil.copytree(first, clean)
    started = time.perf_counter()
    index_catalog(catalogue, Workspace(clean), config)
    return catalogue, first, clean, time.perf_counter() - started


@pytest.mark.parametrize("seed", [0, 1])
def test_an_index_run_killed_at_a_random_moment_is_recovered_by_the_next_run(
    tmp_path: Path, before_and_after: tuple[Path, Path, Path, float], seed: int
) -> None:
    catalogue, first, clean, seconds = before_and_after
    workspace = Workspace(tmp_path / "ws")
    shutil.copytree(first, workspace.root)
    previous = {entry.path for entry in CatalogIndex.load(workspace.index_path).entries}
    child = subprocess.Popen(
        [sys.executable, "-c", INDEXER, str(catalogue), str(workspace.root), *FAST],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(),
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    time.sleep(random.Random(seed).uniform(0.2, 1.2) * seconds)
    child.send_signal(signal.SIGKILL)
    child.wait(10)

    config = Config().merged(overrides=FAST)
    survived = {entry.path for entry in CatalogIndex.load(workspace.index_path, config).entries}
    assert survived in (previous, {f"w{number}.png" for number in range(8)})  # the old index, or the new one whole
    index_catalog(catalogue, workspace, config)
    assert _temps(workspace.index_path.parent) == [] and list(workspace.root.glob(".*.tmp")) == []
    rerun = CatalogIndex.load(workspace.index_path, config)
    uninterrupted = CatalogIndex.load(Workspace(clean).index_path, config)
    assert [e.path for e in rerun.entries] == [e.path for e in uninterrupted.entries]
    assert np.allclose(rerun.vectors, uninterrupted.vectors, atol=1e-5)
    assert np.allclose(rerun.colours, uninterrupted.colours, atol=1e-5)
