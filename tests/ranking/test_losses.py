from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ranking.losses import info_nce, triplet_hinge


def test_triplet_hinge_is_the_mean_margin_violation() -> None:
    sim_near = torch.tensor([0.9, 0.5, 0.3])
    sim_far = torch.tensor([0.2, 0.45, 0.6])
    # relu(0.1 - 0.9 + 0.2) = 0, relu(0.1 - 0.5 + 0.45) = 0.05, relu(0.1 - 0.3 + 0.6) = 0.4
    assert float(triplet_hinge(sim_near, sim_far, margin=0.1)) == pytest.approx((0.0 + 0.05 + 0.4) / 3)
    assert float(triplet_hinge(sim_near, sim_far, margin=0.0)) == pytest.approx(0.3 / 3)


def test_triplet_hinge_leaves_satisfied_triplets_alone() -> None:
    sim_near = torch.tensor([0.9, 0.3], requires_grad=True)
    sim_far = torch.tensor([0.2, 0.6], requires_grad=True)
    triplet_hinge(sim_near, sim_far, margin=0.1).backward()
    assert sim_near.grad.tolist() == pytest.approx([0.0, -0.5])
    assert sim_far.grad.tolist() == pytest.approx([0.0, 0.5])


def test_info_nce_matches_cross_entropy_over_cosines() -> None:
    torch.manual_seed(0)
    anchor, positive = torch.randn(5, 8), torch.randn(5, 8)
    logits = F.normalize(anchor, dim=1) @ F.normalize(positive, dim=1).T / 0.1
    expected = F.cross_entropy(logits, torch.arange(5))
    assert float(info_nce(anchor, positive, temperature=0.1)) == pytest.approx(float(expected), rel=1e-5)


def test_info_nce_is_small_when_each_anchor_points_at_its_own_positive() -> None:
    items = torch.eye(4)
    assert float(info_nce(items, items, temperature=0.05)) < 1e-6
    assert float(info_nce(items, items.roll(1, dims=0), temperature=0.05)) > 10


def test_info_nce_groups_keep_two_views_of_one_item_from_repelling() -> None:
    """Two photos of item 0 in one batch: its catalogue row appears twice and is not a negative for either."""
    catalogue = torch.eye(3)
    positives = catalogue[[0, 0, 1, 2]]
    anchors = positives.clone()
    ungrouped = float(info_nce(anchors, positives, temperature=0.05))
    grouped = float(info_nce(anchors, positives, temperature=0.05, groups=torch.tensor([0, 0, 1, 2])))
    assert ungrouped == pytest.approx(2 * math.log(2) / 4, rel=1e-4)  # rows 0 and 1 tie with each other
    assert grouped < 1e-6


def test_info_nce_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="must match"):
        info_nce(torch.zeros(3, 4), torch.zeros(2, 4))
