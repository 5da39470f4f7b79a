"""The search path of an indexed workspace runs without torch: ONNX graphs, crop header and the similarity model's
numpy form are cached by ``index``, so a fresh process skips the seconds torch and timm take to import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ranking.backbone import NVIDIA_MARKERS
from tiefwatch.index import index_catalog
from tiefwatch.workspace import Workspace

BLOCK_TORCH = "import sys\nfor name in ('torch', 'timm', 'torchvision'):\n    sys.modules[name] = None\n"


def test_search_after_index_never_imports_torch(tmp_path: Path, catalog_dir: Path) -> None:
    """With the default device (``auto``): finding out there is no GPU must not need torch either."""
    pytest.importorskip("onnxruntime")
    if any(Path(marker).exists() for marker in NVIDIA_MARKERS):
        pytest.skip("an NVIDIA driver is present: device auto asks torch, rightly")
    workspace = Workspace(tmp_path / "ws")
    config = workspace.load_config(overrides=["backbone.image_size=96", "embed.engine=auto"])
    index_catalog(catalog_dir, workspace, config)
    assert list(workspace.cache_dir.glob("*.onnx")), "index should leave the ONNX graphs in the workspace cache"
    query = catalog_dir / "w3.png"
    code = BLOCK_TORCH + (
        "from tiefwatch.cli import main\n"
        f"sys.exit(main(['--workspace', {str(workspace.root)!r}, 'search', {str(query)!r}, '--format', 'json']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results[0]["results"][0]["path"].endswith("w3.png")
    assert results[0]["box"] is not None  # the crop model ran, from its cached graph


def test_without_a_cached_graph_the_torch_free_process_says_why(tmp_path: Path, catalog_dir: Path) -> None:
    """Guards the test above: blocking torch really does break a search that would need it."""
    pytest.importorskip("onnxruntime")
    workspace = Workspace(tmp_path / "ws")
    config = workspace.load_config(overrides=["backbone.image_size=96", "embed.engine=onnx", "embed.device=cpu"])
    index_catalog(catalog_dir, workspace, config)
    for graph in workspace.cache_dir.glob("*.onnx"):
        graph.unlink()
    code = BLOCK_TORCH + (
        "from tiefwatch.cli import main\n"
        f"sys.exit(main(['--workspace', {str(workspace.root)!r}, 'search', {str(catalog_dir / 'w3.png')!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    # the backbone (timm) or the crop model (torch) is the first to need the export, whichever opens first
    assert done.returncode != 0 and ("import of torch halted" in done.stderr or "import of timm halted" in done.stderr)


def test_a_searcher_exports_both_missing_graphs_while_opening_them_side_by_side(
    tmp_path: Path, catalog_dir: Path
) -> None:
    """A workspace copied without its cache: the crop model (opened in a loading thread) and the backbone both
    have to be exported again, one after the other, and the search answers as it did."""
    pytest.importorskip("onnxruntime")
    from tiefwatch.search import Searcher

    workspace = Workspace(tmp_path / "ws")
    config = workspace.load_config(overrides=["backbone.image_size=96", "embed.engine=onnx", "embed.device=cpu"])
    index_catalog(catalog_dir, workspace, config)
    before = Searcher(workspace, config).search_paths([catalog_dir / "w3.png"], k=3)[0]
    graphs = sorted(path.name for path in workspace.cache_dir.glob("*.onnx"))
    for graph in workspace.cache_dir.glob("*.onnx"):
        graph.unlink()
    after = Searcher(workspace, config).search_paths([catalog_dir / "w3.png"], k=3)[0]
    assert sorted(path.name for path in workspace.cache_dir.glob("*.onnx")) == graphs
    assert [hit.path for hit in after.results] == [hit.path for hit in before.results]
    assert after.results[0].path.endswith("w3.png") and after.box == before.box
