"""Inference engines."""

from __future__ import annotations

import pytest


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
