"""Losses for similarity learning on frozen backbone vectors.

``triplet_hinge`` is Wang et al.'s deep-ranking hinge written with similarities instead of distances: the
near item must be more similar to the anchor than the far item by at least ``margin``. ``info_nce`` trains the
photo -> catalogue projection: each photo must pick its own catalogue item out of the other items in the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def triplet_hinge(sim_near: torch.Tensor, sim_far: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean of ``relu(margin - sim_near + sim_far)``: zero once every near beats its far by the margin."""
    return F.relu(margin - sim_near + sim_far).mean()


def info_nce(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    temperature: float = 0.05,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of each anchor row against its own positive row, the batch's other positives as negatives.

    Rows are compared by cosine. ``groups`` (B,) names the item each positive is; two anchors of the same item
    in one batch would otherwise push each other's positive away, so same-group columns are left out of the
    denominator.
    """
    if anchor.shape != positive.shape:
        raise ValueError(f"anchor {tuple(anchor.shape)} and positive {tuple(positive.shape)} must match")
    logits = F.normalize(anchor, dim=-1) @ F.normalize(positive, dim=-1).T / temperature
    if groups is not None:
        same_item = groups[:, None] == groups[None, :]
        same_item.fill_diagonal_(False)
        logits = logits.masked_fill(same_item, float("-inf"))
    targets = torch.arange(len(anchor), device=anchor.device)
    return F.cross_entropy(logits, targets)
