from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tiefwatch.attribute_labels import read_attribute_labels


def fake_index(root: Path, names: list[str]) -> SimpleNamespace:
    """What the reader needs of a ``CatalogIndex``: its root and each entry's catalogue-relative path."""
    return SimpleNamespace(root=root.resolve(), entries=[SimpleNamespace(path=name) for name in names])


def test_labels_map_to_index_rows_case_blind_with_empty_cells_unknown(tmp_path: Path) -> None:
    index = fake_index(tmp_path, ["a.jpg", "sub/b.jpg", "c.jpg"])
    csv_path = tmp_path / "attributes.csv"
    csv_path.write_text(
        "\ufefffile,Shape,strap_colour,annotator,half\n"  # a spreadsheet's BOM, bookkeeping columns
        "c.jpg,Round,brown,ann1,A\n"
        f"{tmp_path / 'sub' / 'b.jpg'},square,,ann2,B\n"
        "\n"
        "c.jpg,square,black,ann3,A\n"  # the same photo again: the first row stands
    )
    labelled = read_attribute_labels(csv_path, index)
    assert labelled.rows.tolist() == [2, 1]
    assert labelled.labels == {"shape": ["round", "square"], "strap_colour": ["brown", None]}
    assert labelled.duplicates == 1
    assert labelled.rows.dtype == np.int64


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,shape\na.jpg,round\n", "row 1: the header must name a `file` column"),
        ("file,annotator\na.jpg,me\n", "row 1: no attribute columns"),
        ("file,shape,shape\na.jpg,round,round\n", "row 1: header names column"),
        ("file,shape\na.jpg,round\nb.jpg,round,extra\n", "row 3: 3 fields where the header has 2"),
        ("file,shape\na.jpg,round\nmissing.jpg,round\n", "row 3: missing.jpg is not in the index"),
        ("file,shape\n", "no labelled photos"),
    ],
)
def test_bad_attribute_files_are_refused_naming_the_row(tmp_path: Path, text: str, message: str) -> None:
    csv_path = tmp_path / "attributes.csv"
    csv_path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_attribute_labels(csv_path, fake_index(tmp_path, ["a.jpg", "b.jpg"]))


def test_a_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    csv_path = tmp_path / "attributes.csv"
    csv_path.write_bytes(b"file,shape\n\xff\xfe\x00a.jpg,round\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_attribute_labels(csv_path, fake_index(tmp_path, ["a.jpg"]))
