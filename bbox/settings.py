"""Crop-training settings, kept free of torch so the application's config can embed them cheaply."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class BoxTrainSettings:
    """``tiefwatch train-bbox``: synthesised scenes, frozen backbone, a small dense head."""

    samples: int = 6000
    epochs: int = 16
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    negative_fraction: float = 0.05  # scenes without a watch: teach low confidence
    catalog_fraction: float = 0.15  # the catalogue photo itself: catalogue images are cropped too
    seed: int = 0
