"""Similarity-training settings, kept free of torch so the application's config can embed them cheaply."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TripletTrainSettings:
    """``tiefwatch train-triplets``: a projection of cached backbone vectors trained with the deep-ranking hinge."""

    epochs: int = 40
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    margins: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2])  # tried on held-out triplets
    tune_epochs: int = 4  # brief run per candidate margin
    patience: int = 8  # epochs without a better held-out result before stopping
    output_dim: int = 256
    val_fraction: float = 0.2  # anchors held out (the caller splits; ``split_by_anchor``)
    seed: int = 0


@dataclass
class ProjectionTrainSettings:
    """``tiefwatch train``: the photo->catalogue projection trained with InfoNCE."""

    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.05
    output_dim: int = 256
    seed: int = 0
