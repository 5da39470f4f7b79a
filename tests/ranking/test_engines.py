"""Inference engines."""

from __future__ import annotations


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
