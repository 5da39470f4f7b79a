"""Training the similarity net on cached backbone vectors: annotated triplets, free hard negatives, InfoNCE.

The backbone is frozen, so every image is embedded once and training only ever sees rows of one (N, D) array;
a triplet is three row numbers ``[anchor, near, far]``. An epoch over thousands of triplets takes a fraction
of a second on two CPU cores, which is what makes tuning the margin on held-out triplets affordable.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ranking.losses import info_nce, triplet_hinge
from ranking.settings import ProjectionTrainSettings, TripletTrainSettings
from ranking.similarity import SimilarityNet

SimilarityFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class TripletEpochReport:
    """One epoch, with the raw backbone's held-out accuracy beside the net's so any gain is visible."""

    epoch: int  # epochs completed, counting from 1; pass it back as ``start_epoch`` to resume
    margin: float
    train_loss: float
    val_loss: float
    val_accuracy: float
    backbone_val_accuracy: float
    best: bool  # this epoch's weights are the ones kept so far
    seconds: float = 0.0
    margin_trials: dict[str, float] = field(default_factory=dict)  # margin -> held-out accuracy of its brief run

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------- triplets


def triplet_accuracy(similarity: SimilarityFn | np.ndarray, triplets: np.ndarray) -> float:
    """Share of triplets whose near row is more similar to the anchor than the far row (ties count half).

    ``similarity`` is either (N, D) vectors, compared by cosine, or ``fn(rows_a, rows_b) -> (T,)``.
    """
    triplets = np.asarray(triplets, np.int64).reshape(-1, 3)
    if not len(triplets):
        return float("nan")
    anchor, near, far = triplets.T
    if callable(similarity):
        sim_near = np.asarray(similarity(anchor, near), np.float64)
        sim_far = np.asarray(similarity(anchor, far), np.float64)
    else:
        unit = _unit_rows(np.asarray(similarity, np.float32))
        sim_near = np.einsum("td,td->t", unit[anchor], unit[near])
        sim_far = np.einsum("td,td->t", unit[anchor], unit[far])
    return float(np.mean((sim_near > sim_far) + 0.5 * (sim_near == sim_far)))


def split_by_anchor(triplets: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/held-out triplets with no anchor on both sides, so held-out accuracy is about unseen anchors.

    At least one anchor is held out whenever there are two or more anchors.
    """
    triplets = np.asarray(triplets, np.int64).reshape(-1, 3)
    anchors = np.unique(triplets[:, 0])
    n_val = max(1, round(len(anchors) * val_fraction)) if len(anchors) > 1 and val_fraction > 0 else 0
    held_out = np.random.default_rng(seed).permutation(anchors)[:n_val]
    is_val = np.isin(triplets[:, 0], held_out)
    return triplets[~is_val], triplets[is_val]


def hard_negative_triplets(
    anchor_vecs: np.ndarray,
    positive_rows: np.ndarray,
    catalog_vecs: np.ndarray,
    k: int = 20,
    rng: np.random.Generator | None = None,
    anchor_offset: int = 0,
) -> np.ndarray:
    """Triplets no annotator has to make: each anchor's far item is one of its FAISS-style top-k catalogue hits.

    Meant for photo-like views of catalogue items: anchor ``i`` is ``anchor_vecs[i]``, its near item is its own
    catalogue row ``positive_rows[i]``, its far item is drawn uniformly from the ``k`` catalogue rows most similar
    to it (by cosine) other than the positive: the confusions the re-ranker exists to fix. Rows come back as
    ``[anchor_offset + i, positive_row, far_row]``: stack ``np.vstack([catalog_vecs, anchor_vecs])`` and pass
    ``anchor_offset=len(catalog_vecs)`` to train on them with ``fit_triplets`` directly.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    positive_rows = np.asarray(positive_rows, np.int64)
    if len(catalog_vecs) < 2:
        raise ValueError("hard negatives need at least two catalogue rows")
    k = max(1, min(k, len(catalog_vecs) - 1))
    catalog = _unit_rows(np.asarray(catalog_vecs, np.float32))
    out = np.empty((len(anchor_vecs), 3), np.int64)
    for start in range(0, len(anchor_vecs), 1024):
        anchors = _unit_rows(np.asarray(anchor_vecs[start : start + 1024], np.float32))
        positives = positive_rows[start : start + len(anchors)]
        sims = anchors @ catalog.T
        sims[np.arange(len(anchors)), positives] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        far = top[np.arange(len(anchors)), rng.integers(0, k, len(anchors))]
        out[start : start + len(anchors)] = np.stack(
            [anchor_offset + start + np.arange(len(anchors)), positives, far], axis=1
        )
    return out


def fit_triplets(
    vectors: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    settings: TripletTrainSettings,
    net: SimilarityNet | None = None,
    start_epoch: int = 0,
    optimizer_state: dict[str, Any] | None = None,
    on_epoch: Callable[[TripletEpochReport, SimilarityNet, dict[str, Any]], None] | None = None,
    raw_dim: int | None = None,
) -> tuple[SimilarityNet, list[TripletEpochReport]]:
    """Deep-ranking hinge on triplet rows of ``vectors``; AdamW; keeps the epoch with the best held-out accuracy.

    ``raw_dim``: where ``vectors`` carry more than the backbone vector (a colour descriptor after it), the first
    ``raw_dim`` columns are the backbone's, and "raw backbone" accuracy is measured on them alone.

    The margin is picked first: a brief run per candidate in ``settings.margins``, each from the same start,
    keeping the best held-out accuracy (ties go to the earlier candidate). The full run then starts from that same
    start again. A net passed in (say, from ``fit_projection_infonce``) counts as epoch 0, so fine-tuning never
    returns something worse on the held-out triplets than what it began from; a fresh net's random start does
    not count. Compare the reports' ``val_accuracy`` with ``backbone_val_accuracy`` before using the result.

    ``on_epoch(report, net, state)`` is where the caller checkpoints: ``state`` holds the optimizer, margin, best
    weights so far and early-stopping count (tensors and plain values, fine for ``torch.save``). Passing the
    saved net, ``start_epoch=report.epoch`` and ``optimizer_state=state`` back continues exactly as if
    training had never stopped.
    """
    if not len(val):
        raise ValueError("fit_triplets needs held-out triplets (see split_by_anchor) to pick the margin and epoch")
    if not len(train):
        raise ValueError("fit_triplets needs training triplets")
    vectors_t = torch.from_numpy(_unit_rows(np.asarray(vectors, np.float32)))
    train = np.asarray(train, np.int64).reshape(-1, 3)
    val = np.asarray(val, np.int64).reshape(-1, 3)
    resumed = optimizer_state or {}
    given_net = net is not None
    start_net = net if net is not None else _fresh_net(vectors_t.shape[1], settings)
    raw = np.asarray(vectors, np.float32)[:, :raw_dim] if raw_dim else vectors_t.numpy()
    backbone_accuracy = triplet_accuracy(_unit_rows(raw), val)

    margin, trials = resumed.get("margin"), dict(resumed.get("margin_trials", {}))
    if margin is None:
        margin, trials = _tune_margin(vectors_t, train, val, settings, start_net)

    net = start_net
    optimizer = _optimizer(net, settings)
    if "optimizer" in resumed:
        optimizer.load_state_dict(resumed["optimizer"])
    elif resumed:
        optimizer.load_state_dict(resumed)  # a bare torch optimizer state
    best = resumed.get("best")
    if best is None and given_net and start_epoch == 0:
        accuracy, val_loss = _evaluate(net, vectors_t, val, margin)
        best = {"epoch": 0, "accuracy": accuracy, "val_loss": val_loss, "weights": _copy_weights(net)}
    stale = int(resumed.get("stale_epochs", 0))

    reports: list[TripletEpochReport] = []
    for epoch in range(start_epoch, settings.epochs):
        if stale >= settings.patience:
            break
        started = time.perf_counter()
        train_loss = _train_epoch(net, optimizer, vectors_t, train, margin, settings, epoch)
        accuracy, val_loss = _evaluate(net, vectors_t, val, margin)
        improved = best is None or (accuracy, -val_loss) > (best["accuracy"], -best["val_loss"])
        if improved:
            best = {"epoch": epoch + 1, "accuracy": accuracy, "val_loss": val_loss, "weights": _copy_weights(net)}
            stale = 0
        else:
            stale += 1
        report = TripletEpochReport(
            epoch=epoch + 1,
            margin=margin,
            train_loss=train_loss,
            val_loss=val_loss,
            val_accuracy=accuracy,
            backbone_val_accuracy=backbone_accuracy,
            best=improved,
            seconds=time.perf_counter() - started,
            margin_trials=trials,
        )
        reports.append(report)
        if on_epoch is not None:
            state = {
                "optimizer": copy.deepcopy(optimizer.state_dict()),  # a snapshot: the live one keeps changing
                "margin": margin,
                "margin_trials": trials,
                "best": best,
                "stale_epochs": stale,
            }
            on_epoch(report, net, state)
    if best is not None:
        net.load_state_dict(best["weights"])
    return net.eval(), reports


def _tune_margin(
    vectors: torch.Tensor,
    train: np.ndarray,
    val: np.ndarray,
    settings: TripletTrainSettings,
    start_net: SimilarityNet,
) -> tuple[float, dict[str, float]]:
    """The candidate margin whose brief run reaches the best held-out accuracy, and every candidate's result."""
    if len(settings.margins) == 0:
        raise ValueError("settings.margins is empty")
    if len(settings.margins) == 1:
        return float(settings.margins[0]), {}
    trials: dict[str, float] = {}
    best_margin, best_accuracy = float(settings.margins[0]), -1.0
    for margin in settings.margins:
        net = copy.deepcopy(start_net)
        optimizer = _optimizer(net, settings)
        accuracy = -1.0
        for epoch in range(min(settings.tune_epochs, settings.epochs)):
            _train_epoch(net, optimizer, vectors, train, margin, settings, epoch)
            accuracy = max(accuracy, _evaluate(net, vectors, val, margin)[0])
        trials[str(margin)] = accuracy
        if accuracy > best_accuracy:
            best_margin, best_accuracy = float(margin), accuracy
    return best_margin, trials


def _fresh_net(input_dim: int, settings: TripletTrainSettings | ProjectionTrainSettings) -> SimilarityNet:
    """Seeded initial weights, without resetting the caller's global torch random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        return SimilarityNet(input_dim, settings.output_dim)


def _optimizer(net: SimilarityNet, settings: TripletTrainSettings | ProjectionTrainSettings) -> torch.optim.AdamW:
    return torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)


def _copy_weights(net: SimilarityNet) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in net.state_dict().items()}


def _train_epoch(
    net: SimilarityNet,
    optimizer: torch.optim.Optimizer,
    vectors: torch.Tensor,
    triplets: np.ndarray,
    margin: float,
    settings: TripletTrainSettings,
    epoch: int,
) -> float:
    """One shuffled pass; the shuffle depends only on (seed, epoch), so a resumed run sees the same batches."""
    net.train()
    order = np.random.default_rng([settings.seed, epoch]).permutation(len(triplets))
    total = 0.0
    for start in range(0, len(order), settings.batch_size):
        batch = torch.from_numpy(triplets[order[start : start + settings.batch_size]])
        anchor, near, far = (net(vectors[batch[:, column]]) for column in range(3))
        loss = triplet_hinge((anchor * near).sum(-1), (anchor * far).sum(-1), margin)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
    return total / len(triplets)


@torch.no_grad()
def _evaluate(net: SimilarityNet, vectors: torch.Tensor, triplets: np.ndarray, margin: float) -> tuple[float, float]:
    """Held-out accuracy and hinge loss; only the rows the triplets use are projected."""
    net.eval()
    rows, local = np.unique(triplets, return_inverse=True)
    projected = net(vectors[torch.from_numpy(rows)])
    local = torch.from_numpy(local.reshape(-1, 3))
    anchor, near, far = (projected[local[:, column]] for column in range(3))
    sim_near, sim_far = (anchor * near).sum(-1), (anchor * far).sum(-1)
    accuracy = float(((sim_near > sim_far).double() + 0.5 * (sim_near == sim_far).double()).mean())
    return accuracy, float(triplet_hinge(sim_near, sim_far, margin))


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


# --------------------------------------------------------------------------------------------- photo -> catalogue


def recall_at_1(query_vecs: np.ndarray, positive_rows: np.ndarray, catalog_vecs: np.ndarray) -> float:
    """Share of queries whose most similar catalogue row (cosine) is their own; project both sides first to
    measure a net (``net.embed``)."""
    queries = _unit_rows(np.asarray(query_vecs, np.float32))
    catalog = _unit_rows(np.asarray(catalog_vecs, np.float32))
    return float(np.mean(np.argmax(queries @ catalog.T, axis=1) == np.asarray(positive_rows)))


def fit_projection_infonce(
    anchor_vecs: np.ndarray,
    positive_rows: np.ndarray,
    catalog_vecs: np.ndarray,
    settings: ProjectionTrainSettings,
    net: SimilarityNet | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> SimilarityNet:
    """A projection under which a photo's vector lands on its catalogue item's: InfoNCE, in-batch negatives.

    ``anchor_vecs[i]`` is a photo-like view of catalogue row ``positive_rows[i]``. Both sides go through the same
    net (as they will when re-ranking). Anchors of the same item in one batch are not used as each other's
    negatives. ``on_epoch(epoch, mean_loss)`` reports progress.
    """
    anchors = torch.from_numpy(_unit_rows(np.asarray(anchor_vecs, np.float32)))
    catalog = torch.from_numpy(_unit_rows(np.asarray(catalog_vecs, np.float32)))
    positive_rows = np.asarray(positive_rows, np.int64)
    if len(anchors) != len(positive_rows):
        raise ValueError(f"{len(anchors)} anchors but {len(positive_rows)} positive rows")
    net = net if net is not None else _fresh_net(anchors.shape[1], settings)
    optimizer = _optimizer(net, settings)
    for epoch in range(settings.epochs):
        net.train()
        order = np.random.default_rng([settings.seed, epoch]).permutation(len(anchors))
        total = 0.0
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            if len(batch) < 2:
                continue  # one row has no negatives
            groups = torch.from_numpy(positive_rows[batch])
            loss = info_nce(net(anchors[batch]), net(catalog[groups]), settings.temperature, groups)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        if on_epoch is not None:
            on_epoch(epoch + 1, total / len(anchors))
    return net.eval()
