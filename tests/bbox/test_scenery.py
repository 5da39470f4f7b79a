"""Backgrounds of simulated photos: bundled sample photos, user folders, procedural clutter."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bbox.scenery import builtin_backgrounds, load_backgrounds, procedural_clutter

# ------------------------------------------------------------------ backgrounds


def test_builtin_backgrounds_are_rgb_cached_and_read_only() -> None:
    pytest.importorskip("skimage", reason="scikit-image not installed: no bundled sample photos")
    photos = builtin_backgrounds()
    assert len(photos) >= 5
    for photo in photos:
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
        assert min(photo.shape[:2]) >= 256
        assert not photo.flags.writeable
    again = builtin_backgrounds()
    assert again is not photos and all(a is b for a, b in zip(photos, again, strict=True))


def test_load_backgrounds_reads_folders_recursively_and_skips_junk(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    (tmp_path / "sub").mkdir()
    cv2.imwrite(str(tmp_path / "a.png"), procedural_clutter(64, 80, rng))
    cv2.imwrite(str(tmp_path / "sub" / "b.JPG"), procedural_clutter(70, 50, rng))
    cv2.imwrite(str(tmp_path / "tiny.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignore me")
    photos = load_backgrounds([tmp_path], include_builtin=False)
    assert [p.shape for p in photos] == [(64, 80, 3), (70, 50, 3)]
    assert load_backgrounds([], include_builtin=False) == []


def test_load_backgrounds_converts_to_rgb(tmp_path: Path) -> None:
    red = np.zeros((40, 40, 3), np.uint8)
    red[..., 0] = 255  # RGB red
    cv2.imwrite(str(tmp_path / "red.png"), cv2.cvtColor(red, cv2.COLOR_RGB2BGR))
    (photo,) = load_backgrounds([tmp_path], include_builtin=False)
    assert tuple(photo[0, 0]) == (255, 0, 0)


def test_procedural_clutter_is_cluttered_and_deterministic() -> None:
    a = procedural_clutter(120, 160, np.random.default_rng(3))
    b = procedural_clutter(120, 160, np.random.default_rng(3))
    c = procedural_clutter(120, 160, np.random.default_rng(4))
    assert a.shape == (120, 160, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.reshape(-1, 3).std(axis=0).mean() > 8  # not a flat colour
