from __future__ import annotations

from pathlib import Path

from tools.benchdoc import HEADER, write_section


def test_sections_are_replaced_in_place_and_others_kept(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    write_section(path, "retrieval", "## Retrieval\nold figure")
    write_section(path, "crop", "## Crop\nIoU 0.7")
    write_section(path, "retrieval", "## Retrieval\nnew figure")
    text = path.read_text()
    assert text.startswith(HEADER.splitlines()[0])
    assert "new figure" in text and "old figure" not in text and "IoU 0.7" in text
    assert text.index("<!-- retrieval:start -->") < text.index("<!-- crop:start -->")  # order kept
    assert text.count("<!-- retrieval:start -->") == 1
