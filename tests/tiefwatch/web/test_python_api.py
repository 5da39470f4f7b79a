"""The Python API: ``tiefwatch.search`` callable any number of times (in a fresh process, whatever was imported
first), and ``tiefwatch.Searcher`` loaded once for many photos and arrays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tiefwatch
from tiefwatch.config import Config
from tiefwatch.images import load_image
from tiefwatch.workspace import Workspace

ROOT = Path(__file__).resolve().parents[3]


def test_search_is_callable_twice_in_a_fresh_process(served_workspace: tuple[Workspace, Config, Path]) -> None:
    workspace, _, catalog = served_workspace
    script = f"""
import json, tiefwatch
first = tiefwatch.search([{str(catalog / "w1.png")!r}], workspace={str(workspace.root)!r}, k=2, crop=False)
import tiefwatch.search as module  # the submodule, imported by name, binds the name tiefwatch.search: still callable
second = tiefwatch.search({str(catalog / "w2.png")!r}, workspace={str(workspace.root)!r}, k=1, crop=False)
print(json.dumps([r.results[0].path for r in (first + second)] + [module is tiefwatch.search]))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    *paths, same = json.loads(done.stdout.strip().splitlines()[-1])
    assert [Path(p).name for p in paths] == ["w1.png", "w2.png"] and same is True


def test_searcher_loads_once_and_answers_many(served_workspace: tuple[Workspace, Config, Path]) -> None:
    workspace, _, catalog = served_workspace
    assert "Searcher" in tiefwatch.__all__ and "search" in dir(tiefwatch)
    searcher = tiefwatch.Searcher(str(workspace.root))  # a folder is enough; its config is read
    assert len(searcher) == 6
    by_path = searcher.search_paths([catalog / "w0.png", catalog / "sub" / "w5.png"], k=3, show_progress=False)
    assert [Path(r.results[0].path).name for r in by_path] == ["w0.png", "w5.png"]
    again = searcher.search_paths([catalog / "w4.png"], k=3, show_progress=False)
    assert Path(again[0].results[0].path).name == "w4.png"
    arrays = [load_image(catalog / f"w{i}.png") for i in range(3)]
    by_array = searcher.search_images(arrays, k=1)
    assert [r.query for r in by_array] == ["image 0", "image 1", "image 2"]
    assert [Path(r.results[0].path).name for r in by_array] == ["w0.png", "w1.png", "w2.png"]
    whole = searcher.search_images(arrays[:1], ["mine"], k=2, crop=False, rerank=False)[0]
    assert whole.box is None and whole.query == "mine" and len(whole.results) == 2
    assert searcher.search_images([], k=3) == []
    with pytest.raises(ValueError, match="at least 1"):
        searcher.search_images(arrays[:1], k=0)
