"""The attribute CSV: what annotators say a watch *is* (shape, case colour, strap...), for ``train-triplets
--attributes``.

Format: UTF-8 CSV with a header. Column ``file`` names a catalogue photo (relative to the catalogue root, or
absolute inside it); every other column is an attribute, except ``annotator``, ``created`` and ``half``, which
are bookkeeping. Values are compared case-blind; an empty cell means nobody said. A photo listed twice keeps its
first row, and the later ones are counted as duplicates. ``benchmarks/judged/attributes.csv`` is an example.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tiefwatch.index import CatalogIndex

BOOKKEEPING = ("annotator", "created", "half")


@dataclass
class AttributeLabels:
    """Labelled index rows and, per attribute, each row's value (None where the cell was empty)."""

    rows: np.ndarray
    labels: dict[str, list[str | None]]
    duplicates: int = 0

    def without(self, rows: np.ndarray) -> AttributeLabels:
        """These labels less those of the given index rows (a held-out part of the catalogue)."""
        keep = ~np.isin(self.rows, rows)
        kept = np.flatnonzero(keep)
        return AttributeLabels(
            self.rows[keep], {name: [column[i] for i in kept] for name, column in self.labels.items()}, self.duplicates
        )


def index_row(path: str, row_of: dict[str, int], root: Path) -> int | None:
    """The index row of a photo named relative to the catalogue root or absolutely inside it, else None."""
    candidate = Path(path)
    relative = candidate.as_posix()
    if candidate.is_absolute():
        resolved = candidate.resolve()
        relative = resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else ""
    return row_of.get(relative)


def read_attribute_labels(path: str | Path, index: CatalogIndex) -> AttributeLabels:
    """Read and check an attribute CSV against the index; every problem names its row (the header is row 1)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text") from error
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    columns = [name.strip().lower() for name in header or []]
    if "file" not in columns:
        raise ValueError(f"{path}, row 1: the header must name a `file` column and one column per attribute")
    attributes = [c for c in columns if c and c != "file" and c not in BOOKKEEPING]
    if not attributes:
        raise ValueError(f"{path}, row 1: no attribute columns beside `file`")
    doubled = sorted({c for c in columns if c and columns.count(c) > 1})
    if doubled:
        raise ValueError(f"{path}, row 1: header names column(s) {', '.join(doubled)} twice")
    row_of = {entry.path: i for i, entry in enumerate(index.entries)}
    rows: list[int] = []
    labels: dict[str, list[str | None]] = {name: [] for name in attributes}
    seen: set[int] = set()
    duplicates = 0
    try:
        for fields in reader:
            number = reader.line_num
            if not fields or all(not value.strip() for value in fields):
                continue
            if len(fields) != len(columns):
                raise ValueError(f"{path}, row {number}: {len(fields)} fields where the header has {len(columns)}")
            values = dict(zip(columns, (value.strip() for value in fields), strict=True))
            row = index_row(values["file"], row_of, index.root) if values["file"] else None
            if row is None:
                raise ValueError(
                    f"{path}, row {number}: {values['file'] or '(empty file)'!s} is not in the index; "
                    "run `tiefwatch index`"
                )
            if row in seen:
                duplicates += 1
                continue
            seen.add(row)
            rows.append(row)
            for name in attributes:
                labels[name].append(values[name].lower() or None)
    except csv.Error as error:
        raise ValueError(f"{path}, row {reader.line_num + 1}: malformed row: {error}") from error
    if not rows:
        raise ValueError(f"{path}: no labelled photos")
    return AttributeLabels(np.asarray(rows, np.int64), labels, duplicates)
