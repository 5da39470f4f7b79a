from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from ranking.similarity import SimilarityNet, from_checkpoint, to_checkpoint
from ranking.triplet_training import (
    ProjectionTrainSettings,
    TripletEpochReport,
    TripletTrainSettings,
    fit_projection_infonce,
    fit_triplets,
    hard_negative_triplets,
    recall_at_1,
    split_by_anchor,
    triplet_accuracy,
)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny matrices: a second thread only adds contention on a busy two-core machine (measured 20x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def subspace_case(seed: int = 0, dim: int = 128, n_triplets: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """Vectors whose kind lives in an 8-d subspace, swamped by a stronger 8-d nuisance subspace (think lighting
    and background): raw cosine gets about 0.6 of the triplets right, ignoring the nuisance gets nearly all."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, 16)))[0]
    kinds = rng.normal(size=(40, 8)) / np.sqrt(8)
    labels = np.repeat(np.arange(40), 6)
    count = len(labels)
    kind_part = (kinds[labels] + 0.5 * rng.normal(size=(count, 8)) / np.sqrt(8)) @ basis[:, :8].T
    nuisance_part = 3.0 * rng.normal(size=(count, 8)) / np.sqrt(8) @ basis[:, 8:].T
    vectors = kind_part + nuisance_part + 0.3 * rng.normal(size=(count, dim)) / np.sqrt(dim)
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    anchors = rng.integers(0, count, n_triplets)
    rows = np.arange(count)
    near = [rng.choice(rows[(labels == labels[a]) & (rows != a)]) for a in anchors]
    far = [rng.choice(rows[labels != labels[a]]) for a in anchors]
    return vectors, np.stack([anchors, near, far], axis=1)


def quick_settings(**changes: object) -> TripletTrainSettings:
    return TripletTrainSettings(**{"epochs": 12, "lr": 3e-3, "output_dim": 64, "tune_epochs": 2, **changes})


def test_training_lowers_the_loss_and_beats_the_backbone_on_unseen_anchors() -> None:
    vectors, triplets = subspace_case()
    rest, test = split_by_anchor(triplets, 0.3, seed=1)
    train, val = split_by_anchor(rest, 0.25, seed=2)
    net, reports = fit_triplets(vectors, train, val, quick_settings())

    assert 0.5 < triplet_accuracy(vectors, test) < 0.7
    assert triplet_accuracy(net.embed(vectors), test) >= 0.9
    assert reports[-1].train_loss < reports[0].train_loss / 3
    assert all(r.backbone_val_accuracy == pytest.approx(triplet_accuracy(vectors, val)) for r in reports)
    best = max(reports, key=lambda r: r.val_accuracy)
    assert best.best and best.val_accuracy > best.backbone_val_accuracy + 0.25
    assert triplet_accuracy(net.embed(vectors), val) == pytest.approx(best.val_accuracy)  # the best epoch is kept


def test_margin_is_tuned_among_the_candidates_and_reported() -> None:
    vectors, triplets = subspace_case(n_triplets=600)
    train, val = split_by_anchor(triplets, 0.25, seed=0)
    margins = (0.05, 0.1, 0.2)
    _, reports = fit_triplets(vectors, train, val, quick_settings(epochs=2, margins=margins))
    trials = reports[0].margin_trials
    assert sorted(float(m) for m in trials) == list(margins)
    assert reports[0].margin in margins
    assert trials[str(reports[0].margin)] == max(trials.values())
    assert reports[0].margin == next(m for m in margins if trials[str(m)] == max(trials.values()))  # ties: first
    _, fixed = fit_triplets(vectors, train, val, quick_settings(epochs=1, margins=(0.3,)))
    assert fixed[0].margin == 0.3 and fixed[0].margin_trials == {}


def test_split_by_anchor_never_shares_an_anchor() -> None:
    _, triplets = subspace_case(n_triplets=400)
    train, val = split_by_anchor(triplets, 0.2, seed=5)
    assert len(train) + len(val) == len(triplets)
    assert not set(train[:, 0]) & set(val[:, 0])
    assert 0.1 < len(np.unique(val[:, 0])) / len(np.unique(triplets[:, 0])) < 0.3
    again_train, _ = split_by_anchor(triplets, 0.2, seed=5)
    assert np.array_equal(train, again_train)
    two_anchors = np.array([[0, 1, 2], [0, 2, 1], [3, 1, 2]])
    small_train, small_val = split_by_anchor(two_anchors, 0.1, seed=0)
    assert len(small_val) >= 1 and len(small_train) >= 1  # one anchor is always held out


def test_resuming_from_a_checkpoint_continues_exactly() -> None:
    vectors, triplets = subspace_case(n_triplets=600)
    train, val = split_by_anchor(triplets, 0.25, seed=0)
    settings = quick_settings(epochs=6, patience=100)
    saved: dict[int, bytes] = {}

    def save(report: TripletEpochReport, net: SimilarityNet, state: dict) -> None:
        buffer = io.BytesIO()
        torch.save({"net": to_checkpoint(net, {"epoch": report.epoch}), "state": state}, buffer)
        saved[report.epoch] = buffer.getvalue()

    straight_net, straight = fit_triplets(vectors, train, val, settings, on_epoch=save)

    stopped = torch.load(io.BytesIO(saved[3]), weights_only=True)
    resumed_net, resumed = fit_triplets(
        vectors,
        train,
        val,
        settings,
        net=from_checkpoint(stopped["net"]).train(),
        start_epoch=3,
        optimizer_state=stopped["state"],
    )
    assert [r.epoch for r in resumed] == [4, 5, 6]
    for a, b in zip(straight[3:], resumed, strict=True):
        assert (a.margin, a.train_loss, a.val_loss, a.val_accuracy, a.best) == (
            b.margin,
            b.train_loss,
            b.val_loss,
            b.val_accuracy,
            b.best,
        )
    assert torch.equal(straight_net.projection.weight, resumed_net.projection.weight)


def test_early_stopping_after_patience_epochs_without_progress() -> None:
    vectors, triplets = subspace_case(n_triplets=300)
    train, val = split_by_anchor(triplets, 0.25, seed=0)
    frozen = quick_settings(lr=0.0, epochs=20, patience=3, margins=(0.1,))
    _, reports = fit_triplets(vectors, train, val, frozen)
    assert len(reports) == 4 and [r.best for r in reports] == [True, False, False, False]


def test_a_given_net_counts_as_epoch_zero_so_fine_tuning_never_makes_it_worse() -> None:
    vectors, triplets = subspace_case(n_triplets=300)
    train, val = split_by_anchor(triplets, 0.25, seed=0)
    torch.manual_seed(0)
    start = SimilarityNet(vectors.shape[1], 64)
    start_accuracy = triplet_accuracy(start.embed(vectors), val)
    weights = start.projection.weight.detach().clone()

    frozen = quick_settings(lr=0.0, epochs=20, patience=3, margins=(0.1,))
    net, reports = fit_triplets(vectors, train, val, frozen, net=start)
    assert len(reports) == 3 and not any(r.best for r in reports)
    assert torch.equal(net.projection.weight, weights)

    torch.manual_seed(0)
    wild = quick_settings(lr=5.0, epochs=3, margins=(0.1,))  # steps this large scramble the projection
    net, _ = fit_triplets(vectors, train, val, wild, net=SimilarityNet(vectors.shape[1], 64))
    assert triplet_accuracy(net.embed(vectors), val) >= start_accuracy


def test_training_needs_held_out_triplets() -> None:
    vectors, triplets = subspace_case(n_triplets=50)
    with pytest.raises(ValueError, match="held-out"):
        fit_triplets(vectors, triplets, triplets[:0], quick_settings())


def test_triplet_accuracy_from_vectors_or_a_function() -> None:
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [1.0, 0.0]], np.float32)
    triplets = np.array([[0, 1, 2], [0, 2, 1], [0, 3, 1], [0, 1, 3]])
    assert triplet_accuracy(vectors, triplets) == pytest.approx((1 + 0 + 1 + 0) / 4)
    assert triplet_accuracy(lambda a, b: np.zeros(len(a)), triplets) == 0.5  # ties count half


def test_hard_negatives_come_from_the_top_k_and_never_are_the_positive() -> None:
    rng = np.random.default_rng(0)
    catalog = rng.normal(size=(50, 16)).astype(np.float32)
    positives = rng.integers(0, 50, 30)
    anchors = catalog[positives] + 0.3 * rng.normal(size=(30, 16)).astype(np.float32)
    triplets = hard_negative_triplets(anchors, positives, catalog, k=5, rng=np.random.default_rng(1), anchor_offset=50)

    assert triplets.shape == (30, 3)
    assert np.array_equal(triplets[:, 0], 50 + np.arange(30))
    assert np.array_equal(triplets[:, 1], positives)
    assert np.all(triplets[:, 2] != positives)
    unit = catalog / np.linalg.norm(catalog, axis=1, keepdims=True)
    sims = anchors / np.linalg.norm(anchors, axis=1, keepdims=True) @ unit.T
    sims[np.arange(30), positives] = -np.inf
    top5 = np.argsort(-sims, axis=1)[:, :5]
    assert all(far in top for far, top in zip(triplets[:, 2], top5, strict=True))
    draws = {
        tuple(hard_negative_triplets(anchors, positives, catalog, k=5, rng=np.random.default_rng(s))[:, 2])
        for s in range(3)
    }
    assert len(draws) > 1  # drawn among the k, not always the nearest


def photo_case(seed: int = 0, dim: int = 128, items: int = 200) -> tuple[np.ndarray, ...]:
    """Catalogue items in families of ten; a "photo" is its item plus a shared colour cast, a strong nuisance in
    16 directions (background, pose) and a little noise. Training photos and test photos are different views."""
    rng = np.random.default_rng(seed)
    families = rng.normal(size=(items // 10, dim)) / np.sqrt(dim)
    catalog = families[np.arange(items) // 10] + 0.4 * rng.normal(size=(items, dim)) / np.sqrt(dim)
    nuisance_basis = np.linalg.qr(rng.normal(size=(dim, 16)))[0]
    cast = rng.normal(size=dim)
    cast *= 0.5 / np.linalg.norm(cast)

    def photos(rows: np.ndarray) -> np.ndarray:
        nuisance = 3.0 * rng.normal(size=(len(rows), 16)) / 4.0 @ nuisance_basis.T
        return (catalog[rows] + cast + nuisance + 0.1 * rng.normal(size=(len(rows), dim)) / np.sqrt(dim)).astype(
            np.float32
        )

    train_rows, test_rows = np.repeat(np.arange(items), 2), np.arange(items)
    return catalog.astype(np.float32), train_rows, photos(train_rows), test_rows, photos(test_rows)


def test_infonce_projection_lands_photos_on_their_catalogue_items() -> None:
    catalog, train_rows, train_photos, test_rows, test_photos = photo_case()
    losses: list[float] = []
    net = fit_projection_infonce(
        train_photos,
        train_rows,
        catalog,
        ProjectionTrainSettings(epochs=20, lr=3e-3, output_dim=64),
        on_epoch=lambda epoch, loss: losses.append(loss),
    )
    before = recall_at_1(test_photos, test_rows, catalog)
    after = recall_at_1(net.embed(test_photos), test_rows, net.embed(catalog))
    assert before < 0.55
    assert after >= 0.9
    assert len(losses) == 20 and losses[-1] < losses[0]
