"""The triplet CSV: judgements "``near`` is more like ``anchor`` than ``far`` is", shared by labelling and training.

Format: UTF-8 CSV, header ``anchor,near,far,annotator,created`` (the first three columns are required, the last two
optional on read, columns in any order, unknown columns ignored), one triplet per line, paths relative to the
catalogue root or absolute. ``read_triplets`` validates a file and names the row of every problem;
``TripletWriter`` appends from several threads and processes at once without losing, duplicating or tearing rows.
"""

from __future__ import annotations

import csv
import fcntl
import io
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from tiefwatch.storage import write_atomic

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("anchor", "near", "far")
COLUMNS = (*REQUIRED_COLUMNS, "annotator", "created")

TripletKey = tuple[str, str, str]


@dataclass(frozen=True)
class Triplet:
    """One judgement: ``near`` looks more like ``anchor`` than ``far`` does."""

    anchor: str
    near: str
    far: str
    annotator: str = ""
    created: str = ""

    @property
    def key(self) -> TripletKey:
        """What makes two rows the same judgement; who made it and when do not."""
        return (self.anchor, self.near, self.far)

    def value(self, column: str) -> str:
        return getattr(self, column) if column in COLUMNS else ""


class TripletFormatError(ValueError):
    """A triplet file that cannot be used as written; ``row`` is the file's row number (the header is row 1)."""

    def __init__(self, path: str | Path, row: int, message: str) -> None:
        self.path = str(path)
        self.row = row
        self.message = message
        super().__init__(f"{path}, row {row}: {message}" if row else f"{path}: {message}")


@dataclass
class TripletSet:
    """The distinct triplets of a file, in file order, and what reading it found."""

    triplets: list[Triplet] = field(default_factory=list)
    duplicates: int = 0  # rows whose (anchor, near, far) appeared earlier in the file; skipped
    rows_read: int = 0  # data rows, header and blank lines not counted
    problems: list[TripletFormatError] = field(default_factory=list)  # only filled with errors="collect"

    def __len__(self) -> int:
        return len(self.triplets)

    def __iter__(self) -> Iterator[Triplet]:
        return iter(self.triplets)

    def keys(self) -> set[TripletKey]:
        return {triplet.key for triplet in self.triplets}


# ---------------------------------------------------------------------------- reading
def read_triplets(
    path: str | Path,
    catalog_root: Path | None = None,
    errors: Literal["raise", "collect"] = "raise",
) -> TripletSet:
    """Read and validate a triplet file.

    ``errors="raise"`` raises ``TripletFormatError`` at the first bad row; ``errors="collect"`` skips bad rows and
    returns every problem in ``TripletSet.problems`` so a command can print them all at once. With
    ``catalog_root`` each relative path must name an existing file under it (absolute paths must exist).
    """
    if errors not in ("raise", "collect"):
        raise ValueError(f"errors must be 'raise' or 'collect', not {errors!r}")
    path = Path(path)
    result = TripletSet()

    def problem(row: int, message: str) -> None:
        error = TripletFormatError(path, row, message)
        if errors == "raise":
            raise error
        result.problems.append(error)

    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # a BOM is what spreadsheets write
    except UnicodeDecodeError as error:
        problem(data[: error.start].count(b"\n") + 1, "not UTF-8 text")
        return result

    exists_cache: dict[str, bool] = {}

    def file_exists(value: str) -> bool:
        if value not in exists_cache:
            candidate = Path(value)
            full = candidate if candidate.is_absolute() else (catalog_root or Path()) / candidate
            exists_cache[value] = full.is_file()
        return exists_cache[value]

    reader = csv.reader(io.StringIO(text, newline=""))
    columns: list[str] | None = None
    seen: set[TripletKey] = set()
    last_line = 0
    try:
        for fields in reader:
            row, last_line = last_line + 1, reader.line_num
            if not fields or all(not value.strip() for value in fields):
                continue
            if columns is None:
                columns, message = parse_header(fields)
                if message:
                    problem(row, message)
                    return result
                continue
            result.rows_read += 1
            if len(fields) != len(columns):
                problem(row, f"malformed row: {len(fields)} fields where the header has {len(columns)}")
                continue
            values = dict(zip(columns, (value.strip() for value in fields), strict=True))
            message = triplet_problem(values)
            if message is None and catalog_root is not None:
                missing = [c for c in REQUIRED_COLUMNS if not file_exists(values[c])]
                if missing:
                    message = "; ".join(f"{c} file {values[c]!r} not found under {catalog_root}" for c in missing)
            if message:
                problem(row, message)
                continue
            triplet = Triplet(*(values.get(column, "") for column in COLUMNS))
            if triplet.key in seen:
                result.duplicates += 1
                continue
            seen.add(triplet.key)
            result.triplets.append(triplet)
    except csv.Error as error:
        problem(last_line + 1, f"malformed row: {error}")
    return result


def parse_header(fields: list[str]) -> tuple[list[str], str | None]:
    """Normalised column names and, if they cannot describe triplets, why not."""
    columns = [name.strip().lower() for name in fields]
    if not set(REQUIRED_COLUMNS) & set(columns):
        return columns, f"missing header: the first row must name the columns {','.join(COLUMNS)}"
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        return columns, f"header lacks column(s) {', '.join(missing)}"
    doubled = sorted({name for name in columns if name and columns.count(name) > 1})
    if doubled:
        return columns, f"header names column(s) {', '.join(doubled)} twice"
    return columns, None


def triplet_problem(values: dict[str, str]) -> str | None:
    """Why a row cannot be a triplet, or None if it can (files are not checked here)."""
    empty = [name for name in REQUIRED_COLUMNS if not values.get(name)]
    if empty:
        return f"empty field(s): {', '.join(empty)}"
    anchor, near, far = (values[name] for name in REQUIRED_COLUMNS)
    if anchor == near:
        return f"anchor and near are the same image ({anchor!r})"
    if anchor == far:
        return f"anchor and far are the same image ({anchor!r})"
    if near == far:
        return f"near and far are the same image ({near!r})"
    if any(ch in values.get(name, "") for name in COLUMNS for ch in "\r\n"):
        return "a field contains a line break"
    return None


def format_row(triplet: Triplet, columns: list[str]) -> bytes:
    """One complete CSV line (quoted where needed) ending in a newline."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([triplet.value(column) for column in columns])
    return buffer.getvalue().encode("utf-8")


def _parse_line(line: bytes) -> list[str] | None:
    try:
        rows = list(csv.reader(io.StringIO(line.decode("utf-8-sig"), newline="")))
    except (UnicodeDecodeError, csv.Error):
        return None
    return rows[0] if len(rows) == 1 else None


def _triplet_from_fields(fields: list[str] | None, columns: list[str]) -> Triplet | None:
    if fields is None or len(fields) != len(columns):
        return None
    values = dict(zip(columns, (value.strip() for value in fields), strict=True))
    if triplet_problem(values):
        return None
    return Triplet(*(values.get(column, "") for column in COLUMNS))


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------- writing
class TripletWriter:
    """Appends triplets to one CSV from any number of threads and processes, safely.

    Every change happens under an exclusive ``flock`` on ``<csv>.lock`` (a side file, because undo replaces the CSV
    by rename). Under the lock the writer first repairs a torn last line left by a killed writer, catches up on rows
    other processes appended since it last looked (so duplicates across processes are refused), then appends one
    whole line with a single ``os.write`` on an ``O_APPEND`` descriptor and ``fsync``s it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.torn_path = self.path.with_name(self.path.name + ".torn")  # fragments of torn lines, kept for people
        self._mutex = threading.Lock()  # flock is per open file; this orders threads sharing this writer's state
        self._columns: list[str] | None = None
        self._offset = 0  # bytes of the file already parsed; always just after a newline
        self._identity: tuple[int, int] | None = None  # (device, inode): a rename by undo means re-read everything
        self._triplets: dict[TripletKey, Triplet] = {}

    # -------------------------------------------------------------- public
    def append(self, triplet: Triplet) -> bool:
        """Append ``triplet`` durably; False (and nothing written) if the file already holds its key."""
        values = {name: triplet.value(name) for name in COLUMNS}
        message = triplet_problem(values)
        if message:
            raise ValueError(f"not a valid triplet: {message}")
        if not triplet.created:
            triplet = Triplet(triplet.anchor, triplet.near, triplet.far, triplet.annotator, now_iso())
        with self._locked(exclusive=True):
            self._repair_torn_tail()
            self._catch_up()
            self._ensure_full_header()
            if triplet.key in self._triplets:
                return False
            header = b"" if self._columns else format_row_header()
            columns = self._columns or list(COLUMNS)
            line = header + format_row(triplet, columns)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                written = os.write(fd, line)
                if written != len(line):  # only on a full disk; the next writer repairs the torn line
                    raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
                os.fsync(fd)
            finally:
                os.close(fd)
            self._columns = columns
            self._offset += len(line)
            self._identity = self._identity or _identity(self.path)
            self._triplets[triplet.key] = triplet
            return True

    def remove_last(self, annotator: str) -> Triplet | None:
        """Undo: remove ``annotator``'s most recent row (only that one) by an atomic rewrite; None if they have none."""
        with self._locked(exclusive=True):
            self._repair_torn_tail()
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                return None
            lines = data.splitlines(keepends=True)
            if not lines:
                return None
            columns, message = parse_header(_parse_line(lines[0]) or [])
            if message or "annotator" not in columns:
                return None
            for number in range(len(lines) - 1, 0, -1):
                fields = _parse_line(lines[number])
                triplet = _triplet_from_fields(fields, columns)
                if triplet is not None and triplet.annotator == annotator:
                    break
            else:
                return None
            self._rewrite(b"".join(lines[:number] + lines[number + 1 :]))
            self._catch_up()
            return triplet

    def sync(self) -> None:
        """Catch up on rows other writers appended (shared lock: concurrent readers do not wait on each other)."""
        with self._locked(exclusive=False):
            self._catch_up()

    @property
    def triplets(self) -> list[Triplet]:
        """The distinct triplets in the file as of the last append, undo or ``sync``, in file order."""
        with self._mutex:
            return list(self._triplets.values())

    def __contains__(self, key: object) -> bool:
        return key in self._triplets

    def __len__(self) -> int:
        return len(self._triplets)

    # -------------------------------------------------------------- internals
    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        with self._mutex:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                yield
            finally:
                os.close(fd)  # closing the only descriptor releases the flock

    def _reset(self) -> None:
        self._columns, self._offset, self._identity = None, 0, None
        self._triplets = {}

    def _catch_up(self) -> None:
        """Parse the complete lines appended since ``_offset``; start over if the file was replaced or shrank."""
        try:
            with open(self.path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                identity = (stat.st_dev, stat.st_ino)
                if identity != self._identity or stat.st_size < self._offset:
                    self._reset()
                    self._identity = identity
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            self._reset()
            return
        complete = data[: data.rfind(b"\n") + 1]  # a torn tail is left for the next exclusive writer to repair
        for line in complete.splitlines():
            fields = _parse_line(line)
            if self._columns is None:
                if not fields or not any(value.strip() for value in fields):
                    continue
                columns, message = parse_header(fields)
                if message:
                    raise TripletFormatError(self.path, 1, f"{message}; refusing to append to it")
                self._columns = columns
                continue
            triplet = _triplet_from_fields(fields, self._columns)
            if triplet is not None:
                self._triplets.setdefault(triplet.key, triplet)
        self._offset += len(complete)

    def _repair_torn_tail(self) -> None:
        """A last line without a newline was cut short by a killed writer (or a hand edit): finish or drop it.

        A tail with every column and a valid triplet is terminated (a hand-written file's last row); anything else
        is moved to ``<csv>.torn`` and cut off, so it is never merged into the next row.
        """
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            size = os.fstat(fd).st_size
            if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
                return
            start = _last_newline(fd, size) + 1
            tail = os.pread(fd, size - start, start)
            fields = _parse_line(tail)
            if start == 0:
                keep = fields is not None and parse_header(fields)[1] is None
            else:
                first_line = os.pread(fd, min(start, 64 * 1024), 0).split(b"\n", 1)[0]
                columns, message = parse_header(_parse_line(first_line) or [])
                keep = message is None and _triplet_from_fields(fields, columns) is not None
            if keep:
                os.lseek(fd, 0, os.SEEK_END)
                os.write(fd, b"\n")
            else:
                log.warning("%s: dropped a torn last line (kept in %s): %r", self.path, self.torn_path, tail)
                with open(self.torn_path, "ab") as torn:
                    torn.write(tail + b"\n")
                os.ftruncate(fd, start)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _ensure_full_header(self) -> None:
        """A hand-made file without ``annotator``/``created`` columns is rewritten with them, so undo works."""
        if self._columns is None or all(name in self._columns for name in COLUMNS):
            return
        columns = self._columns + [name for name in COLUMNS if name not in self._columns]
        extra = len(columns) - len(self._columns)
        lines = self.path.read_bytes().splitlines()
        out = [format_row_from_fields(columns)]
        for line in lines[1:]:
            fields = _parse_line(line)
            out.append(line + b"\n" if fields is None else format_row_from_fields(fields + [""] * extra))
        self._rewrite(b"".join(out))
        self._catch_up()

    def _rewrite(self, data: bytes) -> None:
        """Replace the file atomically (readers see the old or the new one), keeping its permissions."""
        mode = self.path.stat().st_mode & 0o777 if self.path.exists() else 0o644

        write_atomic(self.path, lambda handle: handle.write(data), mode=mode)
        self._reset()


def format_row_from_fields(fields: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue().encode("utf-8")


def format_row_header() -> bytes:
    return format_row_from_fields(list(COLUMNS))


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino)


def _last_newline(fd: int, size: int, chunk: int = 64 * 1024) -> int:
    """Offset of the last ``\\n`` before ``size``, or -1: scans backwards so huge files are not read whole."""
    end = size
    while end > 0:
        start = max(0, end - chunk)
        found = os.pread(fd, end - start, start).rfind(b"\n")
        if found >= 0:
            return start + found
        end = start
    return -1
