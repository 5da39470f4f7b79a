"""Inference engines."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

if TYPE_CHECKING:
    import torch


def test_an_engine_on_another_device_never_moves_the_shared_backbone() -> None:
    """The cached backbone serves the embedder and the crop trunk: a GPU engine must take a copy (found by the
    GPU check, where a CUDA embedder pulled the crop trunk's weights off the CPU). 'meta' stands in for CUDA."""
    import torch

    from ranking.backbone import shared_backbone
    from ranking.engines import TorchEngine

    backbone = shared_backbone()
    engine = TorchEngine(backbone, torch.device("meta"))
    assert next(engine.module.parameters()).device.type == "meta"
    assert next(shared_backbone().parameters()).device.type == "cpu"


def test_thread_count_follows_tiefwatch_threads_where_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ray actor given one core of a node sets TIEFWATCH_THREADS=1: ONNX Runtime must not size its pool by the
    node's cores (tiefwatch.distributed)."""
    from ranking.engines import cpu_threads

    monkeypatch.delenv("TIEFWATCH_THREADS", raising=False)
    cores = cpu_threads()
    assert cores >= 1
    monkeypatch.setenv("TIEFWATCH_THREADS", "1")
    assert cpu_threads() == 1
    monkeypatch.setenv("TIEFWATCH_THREADS", "7")
    assert cpu_threads() == 7
    for unusable in ("0", "", "two"):
        monkeypatch.setenv("TIEFWATCH_THREADS", unusable)
        assert cpu_threads() == cores


def _space_to_depth_net() -> torch.nn.Module:
    """A convolution, a reshape that carries the batch (as the crop trunk's space-to-depth), a convolution."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.first = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.second = torch.nn.Conv2d(16, 5, 1)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            maps = self.first(images)
            n, c, h, w = maps.shape
            maps = maps.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, c * 4, h // 2, w // 2)
            return torch.relu(self.second(maps))

    return Net().eval()


def _fixed_size_resize_net() -> torch.nn.Module:
    """Upsampling to a fixed size (the crop head's): exported as a Resize whose sizes name a batch of one."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 2, 3, stride=2, padding=1)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            small = self.conv(images)
            return torch.nn.functional.interpolate(small, size=(images.shape[-2], images.shape[-1]), mode="nearest")

    return Net().eval()


def _batch_mixing_net() -> torch.nn.Module:
    """Adds a picture of its own to the batch: two pictures at once are not two runs of one."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 2, 3, padding=1)
            self.extra = torch.nn.Parameter(torch.randn(1, 2, 16, 16))

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.conv(images), self.extra], dim=0)

    return Net().eval()


@pytest.mark.parametrize(
    ("factory", "batch_free"),
    [(_space_to_depth_net, True), (_fixed_size_resize_net, True), (_batch_mixing_net, False)],
)
def test_onnx_graphs_take_a_batch_where_that_computes_the_same_and_one_picture_otherwise(
    tmp_path, factory, batch_free: bool
) -> None:
    """A query's crops and a catalogue batch go through in one run where the graph allows (a reshape that carries
    the batch is rewritten to copy it, an upsampling to fixed sizes to scale by the same factors); a graph that
    mixes pictures is run a picture at a time. Either way the engine returns, for any number of pictures, what
    torch computes for each picture alone."""
    import torch

    from ranking.engines import RUN_BATCH, OnnxEngine

    module = factory()
    engine = OnnxEngine(lambda: module, 16, tmp_path, key="test")
    assert engine.run_batch == (RUN_BATCH if batch_free else 1)
    pictures = np.random.default_rng(1).normal(size=(RUN_BATCH + 3, 3, 16, 16)).astype(np.float32)
    with torch.inference_mode():
        expected = np.concatenate([module(torch.from_numpy(pictures[i : i + 1])).numpy() for i in range(len(pictures))])
    (got,) = engine(pictures)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert not list(tmp_path.glob(".export-*"))  # the export's scratch files are gone


def test_the_optimised_graph_is_kept_once_per_machine_and_a_damaged_copy_is_rebuilt(tmp_path) -> None:
    """A fresh process opens the graph ONNX Runtime already optimised on this machine instead of optimising it
    again; what it computes is the same, and a damaged optimised copy (a full disk, an old runtime's leftovers)
    is optimised again rather than failing the search."""
    from ranking.engines import OnnxEngine, onnx_cache_path, optimised_cache_path

    module = _space_to_depth_net()
    pictures = np.random.default_rng(2).normal(size=(2, 3, 16, 16)).astype(np.float32)
    (first,) = OnnxEngine(lambda: module, 16, tmp_path, key="test")(pictures)
    optimised = optimised_cache_path(onnx_cache_path(tmp_path, "test", 16))
    assert optimised.is_file() and optimised.stat().st_size > 0
    stamp = optimised.stat().st_mtime_ns

    def never_exported() -> None:
        raise AssertionError("the cached graph must be reused")

    (again,) = OnnxEngine(never_exported, 16, tmp_path, key="test")(pictures)
    np.testing.assert_array_equal(again, first)
    assert optimised.stat().st_mtime_ns == stamp  # opened, not rewritten

    optimised.write_bytes(b"not a graph")
    (rebuilt,) = OnnxEngine(never_exported, 16, tmp_path, key="test")(pictures)
    np.testing.assert_allclose(rebuilt, first, rtol=1e-5, atol=1e-6)
    assert optimised.read_bytes() != b"not a graph"
    assert not list(tmp_path.glob("*.tmp"))


def test_leftovers_of_killed_cache_writers_are_removed_and_nothing_else(tmp_path) -> None:
    """A process killed while exporting or writing a cache entry leaves its temp behind; the next engine opened on
    the folder removes those once they are old, and leaves young ones (a live writer's) and every other file."""
    import os
    import time

    from ranking.engines import STALE_TEMP_SECONDS, remove_stale_cache_temps

    old = time.time() - STALE_TEMP_SECONDS - 60
    dead_file, dead_optimised = tmp_path / "tmpa1b2.tmp", tmp_path / "tmpc3d4.optimised.tmp"
    dead_export = tmp_path / ".export-e5f6"
    dead_export.mkdir()
    (dead_export / "static.onnx").write_bytes(b"half")
    live = tmp_path / "tmpg7h8.tmp"
    others = [tmp_path / "0123abcd.onnx", tmp_path / ".catalog.npz.x1y2.tmp", tmp_path / "similarity-1.npz"]
    for path in [dead_file, dead_optimised, live, *others]:
        path.write_bytes(b"x")
    for path in [dead_file, dead_optimised, dead_export, *others]:
        os.utime(path, (old, old))

    removed = remove_stale_cache_temps(tmp_path)
    assert sorted(removed) == sorted([dead_file, dead_optimised, dead_export])
    assert not dead_export.exists() and live.exists() and all(path.exists() for path in others)
    assert remove_stale_cache_temps(tmp_path / "missing") == []


def test_the_torch_release_is_read_without_importing_torch_or_scanning_package_metadata() -> None:
    """The ONNX cache key names the torch release; a fresh search process reads it from torch's own files."""
    code = (
        "import sys\n"
        "from ranking.engines import torch_release\n"
        "print(torch_release(), 'torch' in sys.modules, 'importlib.metadata' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    release, torch_imported, metadata_imported = done.stdout.split()
    assert release == importlib.metadata.version("torch").split("+")[0]
    assert (torch_imported, metadata_imported) == ("False", "False")
