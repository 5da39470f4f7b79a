"""Atomic file writes: readers see the old file or the new one, never half of either.

An interrupted ``tiefwatch index`` or training run must leave the previous index or model usable, so every
file the application owns is written to a temp file in the same folder, fsynced, then renamed over the target.

A writer killed with ``kill -9`` (or by the OOM killer, or a power cut) leaves its temp file behind. The next
writer of the same target removes such leftovers (``remove_stale_temps``): a temp is known to be dead because
its writer holds an ``flock`` on it from creation until after the rename, and the kernel drops that lock when
the process dies, however it dies. A live writer's temp is never touched, on this machine or another one
sharing the folder over a file system with working locks.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

# An unlocked temp that is still empty and younger than this is left alone: it may be one a live writer has just
# created and not yet locked (mkstemp and flock are two calls). Any other unlocked temp is a dead writer's.
STALE_AFTER_SECONDS = 2.0


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], Any], mode: int | None = None) -> None:
    """Call ``write(handle)`` on a temp file beside ``path``, then rename it over ``path``; leftovers of killed
    writers of the same target are removed first.

    ``mode`` defaults to what a plain ``open`` would give (0666 less the umask); mkstemp alone gives 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # held until after the rename: "a writer is alive"
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
            os.chmod(tmp, 0o666 & ~_umask() if mode is None else mode)
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


# Temp-looking names seen in each folder by this process's first write there. Dead writers' temps are almost always
# from before this process started, so one listing per folder serves every later write into it: writing n files
# into one folder (crops, a synthetic set) then lists it once, not n times. ``rescan`` lists it again.
_TEMPS_SEEN: dict[str, set[str]] = {}
_TEMPS_LOCK = threading.Lock()


def remove_stale_temps(path: str | Path, older_than: float = STALE_AFTER_SECONDS, rescan: bool = False) -> list[Path]:
    """Remove the temp files that killed writers of ``path`` left beside it; returns those removed.

    A temp is removed only when no process holds its lock (its writer is gone), unless it is empty and younger
    than ``older_than`` seconds (a live writer's, between creating and locking it). Safe to call while other
    processes write the same target. The folder is listed at this process's first call for it, or with
    ``rescan`` (``index`` rescans, so a long-lived process also clears what a writer killed meanwhile left)."""
    path = Path(path)
    folder, prefix = str(path.parent), _temp_prefix(path)
    with _TEMPS_LOCK:
        seen = _TEMPS_SEEN.get(folder)
        if seen is None or rescan:
            try:
                seen = {name for name in os.listdir(folder) if name.startswith(".") and name.endswith(".tmp")}
            except OSError:
                return []
            _TEMPS_SEEN[folder] = seen
        candidates = sorted(name for name in seen if name.startswith(prefix))
    removed: list[Path] = []
    now = time.time()
    for name in candidates:
        temp = path.parent / name
        if _remove_if_dead(temp, now, older_than):
            removed.append(temp)
        if not os.path.lexists(temp):
            with _TEMPS_LOCK:
                _TEMPS_SEEN.get(folder, set()).discard(name)
    if removed:
        log.info("removed %d temp file(s) left by interrupted writes of %s", len(removed), path.name)
    return removed


def _remove_if_dead(temp: Path, now: float, older_than: float) -> bool:
    """Unlink ``temp`` if its writer is gone: its lock is free (and it is not a live writer's empty new file)."""
    try:
        fd = os.open(temp, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False  # gone already (renamed by its writer, or removed by another cleaner), or not a plain file
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a live writer holds it
        info = os.fstat(fd)
        if info.st_size == 0 and now - info.st_mtime < older_than:
            return False
        current = os.stat(temp, follow_symlinks=False)
        if (current.st_dev, current.st_ino) != (info.st_dev, info.st_ino):
            return False  # the name now holds another file
        temp.unlink()
        return True
    except OSError as error:
        log.debug("stale temp %s not removed: %s", temp, error)
        return False
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    write_atomic(path, lambda handle: handle.write(data))


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def torch_save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` through a buffer so a killed process never leaves a truncated checkpoint."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
