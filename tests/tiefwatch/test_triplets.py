"""The triplet CSV: validation names the row, duplicates are counted, the writer dedupes, repairs and undoes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tiefwatch.triplets import Triplet, TripletFormatError, TripletWriter, read_triplets

HEADER = "anchor,near,far,annotator,created\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def rows_of(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


# ---------------------------------------------------------------------------- reading
def test_reads_minimal_header_and_counts_duplicates(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "far,anchor,near\nc.png,a.png,b.png\n\nc.png,a.png,b.png\nb.png,a.png,c.png\n")
    result = read_triplets(path)
    assert [t.key for t in result] == [("a.png", "b.png", "c.png"), ("a.png", "c.png", "b.png")]
    assert result.duplicates == 1
    assert result.rows_read == 3  # blank lines are not rows
    assert result.triplets[0].annotator == ""


@pytest.mark.parametrize(
    ("text", "row", "fragment"),
    [
        ("a.png,b.png,c.png\n", 1, "missing header"),
        ("anchor,near\na,b\n", 1, "lacks column(s) far"),
        ("anchor,near,far,near\n", 1, "twice"),
        (HEADER + "a,b,c,x,t\na,b\n", 3, "malformed row: 2 fields where the header has 5"),
        (HEADER + "a,b,c,x,t\na,,c,x,t\n", 3, "empty field(s): near"),
        (HEADER + "a,a,c,x,t\n", 2, "anchor and near are the same"),
        (HEADER + "a,b,a,x,t\n", 2, "anchor and far are the same"),
        (HEADER + "\n\na,b,b,x,t\n", 4, "near and far are the same"),
        (HEADER + 'a,"b\nc",d,x,t\n', 2, "line break"),
    ],
)
def test_errors_name_the_row(tmp_path: Path, text: str, row: int, fragment: str) -> None:
    path = write(tmp_path / "t.csv", text)
    with pytest.raises(TripletFormatError) as raised:
        read_triplets(path)
    assert raised.value.row == row
    assert fragment in str(raised.value)
    assert f"row {row}:" in str(raised.value)


def test_missing_files_under_catalog_root(tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    (root / "sub").mkdir(parents=True)
    for name in ("a.png", "b.png", "sub/c.png"):
        (root / name).write_bytes(b"x")
    absolute = root / "a.png"
    path = write(tmp_path / "t.csv", f"anchor,near,far\n{absolute},b.png,sub/c.png\na.png,b.png,gone.png\n")
    with pytest.raises(TripletFormatError, match=r"row 3: far file 'gone.png' not found"):
        read_triplets(path, catalog_root=root)
    assert len(read_triplets(path)) == 2  # without a root, files are not checked


def test_collect_mode_returns_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", HEADER + "a,b,c,x,t\na,a,c,x,t\nonly-one\na,b,c,y,t\nd,e,f,x,t\n")
    result = read_triplets(path, errors="collect")
    assert [p.row for p in result.problems] == [3, 4]
    assert [t.key for t in result] == [("a", "b", "c"), ("d", "e", "f")]
    assert result.duplicates == 1
    assert result.rows_read == 5


def test_not_utf8_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(HEADER.encode() + b"a,b,c,x,t\na,\xff,c,x,t\n")
    with pytest.raises(TripletFormatError, match="row 3: not UTF-8"):
        read_triplets(path)


def test_empty_file_has_no_triplets(tmp_path: Path) -> None:
    assert len(read_triplets(write(tmp_path / "t.csv", ""))) == 0


# ---------------------------------------------------------------------------- writing
def test_writer_creates_header_dedupes_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "t.csv"
    writer = TripletWriter(path)
    assert writer.append(Triplet("a.png", "b.png", "c.png", "alice"))
    assert not writer.append(Triplet("a.png", "b.png", "c.png", "bob"))  # same judgement, other person
    assert writer.append(Triplet("a.png", "c.png", "b.png", "bob"))  # the other orientation is another judgement
    assert writer.append(Triplet("x, with comma.png", 'q"uote.png', "c.png", "bob"))
    rows = rows_of(path)
    assert rows[0] == ["anchor", "near", "far", "annotator", "created"]
    assert len(rows) == 4
    assert rows[3][:2] == ["x, with comma.png", 'q"uote.png']
    assert rows[1][4].endswith("+00:00")  # created is filled in, in UTC
    assert [t.key for t in read_triplets(path)] == [t.key for t in writer.triplets]


def test_writer_sees_rows_other_writers_appended(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    first, second = TripletWriter(path), TripletWriter(path)
    assert first.append(Triplet("a", "b", "c", "alice"))
    assert not second.append(Triplet("a", "b", "c", "bob"))
    assert second.append(Triplet("a", "b", "d", "bob"))
    assert not first.append(Triplet("a", "b", "d", "alice"))
    assert len(rows_of(path)) == 3


def test_writer_refuses_invalid_triplets_and_foreign_files(tmp_path: Path) -> None:
    writer = TripletWriter(tmp_path / "t.csv")
    for bad in (Triplet("a", "a", "b"), Triplet("a", "b", "b"), Triplet("", "b", "c"), Triplet("a\nz", "b", "c")):
        with pytest.raises(ValueError):
            writer.append(bad)
    assert not (tmp_path / "t.csv").exists()
    foreign = write(tmp_path / "other.csv", "name,price\nwatch,100\n")
    with pytest.raises(TripletFormatError, match="missing header"):
        TripletWriter(foreign).append(Triplet("a", "b", "c"))
    assert foreign.read_text() == "name,price\nwatch,100\n"


def test_torn_line_from_a_killed_writer_is_dropped_not_merged(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", HEADER + "a,b,c,alice,2024-01-01T00:00:00+00:00\nd,e,f")  # cut inside a row
    writer = TripletWriter(path)
    assert writer.append(Triplet("g", "h", "i", "bob"))
    text = path.read_text()
    assert text.endswith("\n") and text.count("\n") == 3
    assert [t.key for t in read_triplets(path)] == [("a", "b", "c"), ("g", "h", "i")]
    assert writer.torn_path.read_text() == "d,e,f\n"  # kept for a person to look at, out of the data


def test_complete_unterminated_last_row_is_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "anchor,near,far\na,b,c")  # a hand-written file without a final newline
    writer = TripletWriter(path)
    assert writer.append(Triplet("d", "e", "f", "bob"))
    rows = rows_of(path)
    assert rows[0] == ["anchor", "near", "far", "annotator", "created"]  # upgraded so undo can find bob's rows
    assert [r[:3] for r in rows[1:]] == [["a", "b", "c"], ["d", "e", "f"]]
    assert not writer.torn_path.exists()


def test_torn_header_only_file_is_restarted(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "anchor,ne")
    assert TripletWriter(path).append(Triplet("a", "b", "c", "x"))
    assert [t.key for t in read_triplets(path)] == [("a", "b", "c")]


def test_undo_removes_only_that_annotators_last_row(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.touch(mode=0o640)
    path.chmod(0o640)
    writer = TripletWriter(path)
    for triplet in (
        Triplet("a", "b", "c", "alice"),
        Triplet("a", "b", "d", "bob"),
        Triplet("a", "c", "d", "alice"),
        Triplet("x", "y", "z", "bob"),
    ):
        writer.append(triplet)
    other = TripletWriter(path)
    other.sync()
    removed = writer.remove_last("alice")
    assert removed is not None and removed.key == ("a", "c", "d")
    assert [t.key for t in read_triplets(path)] == [("a", "b", "c"), ("a", "b", "d"), ("x", "y", "z")]
    assert path.stat().st_mode & 0o777 == 0o640
    assert other.append(Triplet("a", "c", "d", "carol"))  # the other writer noticed the rewrite
    assert writer.remove_last("alice").key == ("a", "b", "c")  # type: ignore[union-attr]
    assert writer.remove_last("alice") is None
    assert writer.remove_last("nobody") is None
    assert [t.annotator for t in read_triplets(path)] == ["bob", "bob", "carol"]
