"""Crop-training settings, kept free of torch so the application's config can embed them cheaply."""

from __future__ import annotations

from dataclasses import dataclass, field

# Training renders 12 MP conditions at this long side at most: the networks see a few hundred pixels.
TRAINING_SCENE_SIDE = 1024

# What the crop model and the training views see (bbox.conditions names each): every condition, the standard
# envelope still the largest part.
TRAINING_MIX: dict[str, float] = {
    "standard": 0.3,
    "close-up": 0.14,
    "far": 0.14,
    "tilt": 0.1,
    "glare": 0.08,
    "lamp": 0.08,
    "wrist": 0.1,
    "phone": 0.06,
}


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
    # Photo conditions the scenes are drawn from, by weight (bbox.conditions): the crop must find a watch that fills
    # or overflows the frame, a small one across the room, one on a wrist or under a lamp. {} = the standard scene.
    conditions: dict[str, float] = field(default_factory=lambda: dict(TRAINING_MIX))
    scene_long_side_cap: int = TRAINING_SCENE_SIDE
