from __future__ import annotations

from pathlib import Path

import pytest

from tiefwatch.storage import write_atomic, write_text_atomic


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "index.npz"
    write_text_atomic(target, "old")

    def crash(handle) -> None:
        handle.write(b"half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, crash)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["index.npz"]
