"""Attribute heads: what people name when they say two watches are alike (shape, case colour, strap...).

A few hundred labelled watches teach more per label than triplets do: one row "round, gold, white dial, leather,
brown" says something about every pair the watch is in. Each attribute gets a softmax classifier (multinomial
logistic regression) on the unit backbone vector. Two watches' probability vectors, one block per attribute
scaled by ``1/sqrt(K)``, have as dot product the expected share of the K attributes they have in common, so the
re-ranker can blend it into its score as one more set of columns (``ranking.rerank``).

Measured on the judged set (``docs/benchmarks.md``, human-judged section): trained on 200 labelled watches of
half A, the blend closes more of the gap to the best possible top-5 attribute agreement on half B's unseen
watches than triplets derived from the same labels do. ``choose_attribute_blend`` picks the classifiers'
regularisation and the blend weight by cross-validation over the labelled watches only.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TOP = 5  # the agreement cross-validation scores the top five, as the judged benchmark does


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


@dataclass
class AttributeHeads:
    """One softmax classifier per attribute on unit backbone vectors: ``weights[k]`` (V_k, D), ``biases[k]`` (V_k,)."""

    names: list[str]
    values: list[list[str]]
    weights: list[np.ndarray]
    biases: list[np.ndarray]

    @property
    def input_dim(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def width(self) -> int:
        """Columns of ``embed``: one per attribute value."""
        return sum(len(v) for v in self.values)

    def probabilities(self, vectors: np.ndarray) -> list[np.ndarray]:
        """(N, D) backbone vectors -> per attribute, (N, V_k) probabilities of its values."""
        x = _unit(vectors)
        out = []
        for weight, bias in zip(self.weights, self.biases, strict=True):
            logits = x @ weight.T + bias
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            out.append((p / p.sum(axis=1, keepdims=True)).astype(np.float32))
        return out

    def embed(self, vectors: np.ndarray) -> np.ndarray:
        """(N, D) -> (N, width) rows whose dot product is the expected share of attributes two watches share."""
        return np.hstack(self.probabilities(vectors)) / np.float32(np.sqrt(len(self.names)))

    def predict(self, vectors: np.ndarray) -> list[dict[str, tuple[str, float]]]:
        """Per vector: attribute -> (most likely value, its probability); what a search can show beside a hit."""
        probabilities = self.probabilities(vectors)
        out: list[dict[str, tuple[str, float]]] = [{} for _ in range(len(probabilities[0]))]
        for name, values, p in zip(self.names, self.values, probabilities, strict=True):
            best = p.argmax(axis=1)
            for row, column in enumerate(best):
                out[row][name] = (values[column], float(p[row, column]))
        return out

    def to_state(self) -> dict[str, Any]:
        """Plain lists and float32 arrays (no pickled objects), for checkpoints and ``.npz`` caches alike."""
        return {
            "names": list(self.names),
            "values": [list(v) for v in self.values],
            "weights": [np.asarray(w, np.float32) for w in self.weights],
            "biases": [np.asarray(b, np.float32) for b in self.biases],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> AttributeHeads:
        weights = [np.asarray(w, np.float32) for w in state["weights"]]
        biases = [np.asarray(b, np.float32) for b in state["biases"]]
        names, values = [str(n) for n in state["names"]], [[str(v) for v in vs] for vs in state["values"]]
        if not (len(names) == len(values) == len(weights) == len(biases)) or not names:
            raise ValueError("attribute heads: names, values, weights and biases must match and not be empty")
        for name, vs, w, b in zip(names, values, weights, biases, strict=True):
            if w.shape != (len(vs), weights[0].shape[1]) or b.shape != (len(vs),):
                raise ValueError(f"attribute heads: {name} has {len(vs)} values but weights {w.shape}, bias {b.shape}")
        return cls(names, values, weights, biases)


def fit_attribute_heads(
    vectors: np.ndarray, labels: Mapping[str, Sequence[str | None]], c: float = 30.0
) -> AttributeHeads:
    """Multinomial logistic regression per attribute (``c``: inverse L2 strength, as scikit-learn's ``C``).

    ``labels[name][i]`` is row i's value of that attribute, or None/"" where nobody said; an attribute with fewer
    than two distinct values is left out (nothing to tell apart).
    """
    from sklearn.linear_model import LogisticRegression

    x = _unit(vectors)
    names, values, weights, biases = [], [], [], []
    for name, column in labels.items():
        if len(column) != len(x):
            raise ValueError(f"attribute {name!r}: {len(column)} labels for {len(x)} vectors")
        known = np.array([bool(v) for v in column])
        y = np.array([v for v in column if v])
        classes = sorted(set(y.tolist()))
        if len(classes) < 2:
            continue
        model = LogisticRegression(C=c, max_iter=3000).fit(x[known], y)
        weight, bias = model.coef_.astype(np.float32), model.intercept_.astype(np.float32)
        if len(classes) == 2:  # scikit-learn keeps one row for two classes: the softmax of (-z/2, z/2) equals it
            weight, bias = np.vstack([-weight / 2, weight / 2]), np.array([-bias[0] / 2, bias[0] / 2], np.float32)
        names.append(name)
        values.append([str(v) for v in model.classes_])
        weights.append(weight)
        biases.append(bias)
    if not names:
        raise ValueError("no attribute has two or more labelled values to learn from")
    return AttributeHeads(names, values, weights, biases)


def fit_with_shots(
    vectors: np.ndarray,
    labels: Mapping[str, Sequence[str | None]],
    c: float,
    rows: np.ndarray | None = None,
    shots: tuple[np.ndarray, np.ndarray] | None = None,
) -> AttributeHeads:
    """``fit_attribute_heads`` on ``rows`` of the labelled vectors (all by default) and on the ``shots`` (vectors,
    owner row) of those rows, each shot labelled as its owner: a phone photo of a gold watch is still gold."""
    rows = np.arange(len(vectors)) if rows is None else np.asarray(rows, np.int64)
    x, owners = vectors[rows], rows
    if shots is not None and len(shots[1]):
        mine = np.isin(shots[1], rows)
        x, owners = np.vstack([x, shots[0][mine]]), np.concatenate([rows, shots[1][mine]])
    return fit_attribute_heads(x, {k: [v[i] for i in owners] for k, v in labels.items()}, c)


@dataclass
class AttributeBlendChoice:
    """What cross-validation over the labelled watches chose, and what it saw for every candidate."""

    c: float
    weight: float
    folds: int
    scores: dict[tuple[float, float], float] = field(default_factory=dict)  # (c, weight) -> mean top-5 agreement

    @property
    def agreement(self) -> dict[str, float]:
        return {f"c={c:g},weight={w:g}": round(v, 4) for (c, w), v in sorted(self.scores.items())}

    def best_c(self, weight: float) -> float:
        """The regularisation that did best at this weight."""
        return max((c for c, w in self.scores if w == weight), key=lambda c: (round(self.scores[(c, weight)], 6), -c))

    def within(self, weights: Collection[float]) -> AttributeBlendChoice:
        """The best choice among these weights only (e.g. those that keep the exact watch first)."""
        kept = {key: v for key, v in self.scores.items() if key[1] in set(weights)}
        if not kept:
            raise ValueError(f"none of the weights {sorted(weights)} was cross-validated")
        c, w = _best(kept)
        return AttributeBlendChoice(c, w, self.folds, self.scores)

    def as_dict(self) -> dict[str, Any]:
        return {"c": self.c, "weight": self.weight, "folds": self.folds, "agreement": self.agreement}


def _best(scores: Mapping[tuple[float, float], float]) -> tuple[float, float]:
    """Highest agreement; ties go to the smaller weight, then the stronger regularisation: attributes must earn
    their share."""
    return max(scores, key=lambda key: (round(scores[key], 6), -key[1], -key[0]))


def top_agreement(embedded: np.ndarray, queries: np.ndarray, labels: Mapping[str, Sequence[str | None]]) -> float:
    """Mean share of attributes the top five (by dot product of ``embedded`` rows, itself left out) have in common
    with each query row; an attribute nobody labelled on either side counts as not shared."""
    scores = embedded[queries] @ embedded.T
    scores[np.arange(len(queries)), queries] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :TOP]
    shared = np.zeros(top.shape, np.float64)
    for column in labels.values():
        values = np.array([v or "" for v in column], dtype=object)
        shared += (values[top] == values[queries][:, None]) & (values[queries][:, None] != "")
    return float(shared.mean() / max(len(labels), 1))


def choose_attribute_blend(
    vectors: np.ndarray,
    labels: Mapping[str, Sequence[str | None]],
    base_embed: Callable[[np.ndarray], np.ndarray],
    cs: Sequence[float] = (3.0, 10.0, 30.0),
    weights: Sequence[float] = (0.0, 0.2, 0.35, 0.5),
    folds: int = 5,
    seed: int = 0,
    on_fit: Callable[[int], None] | None = None,
    shots: tuple[np.ndarray, np.ndarray] | None = None,
) -> AttributeBlendChoice:
    """The regularisation and blend weight whose re-ranking score gives the best top-5 attribute agreement for
    labelled watches whose labels the heads did not see (``folds``-fold, gallery: all labelled watches).

    ``base_embed`` is the score without attributes (raw and learned cosine, ``SimilarityReranker.embed``).
    Ties go to the smaller weight: attributes must earn their share. ``on_fit(1)`` is called after each of the
    ``len(cs) * folds`` fits (a progress bar's advance). ``shots`` (vectors, owner row in ``vectors``): more
    training rows labelled as their owner, such as photo-like shots of the labelled watches; a fold fits on the
    shots of its own watches only, and is scored on the labelled rows alone.
    """
    count = len(vectors)
    folds = max(2, min(folds, count))
    order = np.random.default_rng(seed).permutation(count)
    parts = np.array_split(order, folds)
    base = base_embed(vectors)
    results: dict[tuple[float, float], float] = {}
    for c in cs:
        per_weight: dict[float, list[float]] = {w: [] for w in weights}
        for part in parts:
            fit_rows = np.setdiff1d(order, part)
            heads = fit_with_shots(vectors, labels, c, fit_rows, shots)
            attribute_part = heads.embed(vectors)
            if on_fit is not None:
                on_fit(1)
            for w in weights:
                blended = np.hstack([np.sqrt(1 - w) * base, np.sqrt(w) * attribute_part]) if w else base
                per_weight[w].append(top_agreement(blended, part, labels) * len(part))
        for w in weights:
            results[(c, w)] = float(sum(per_weight[w]) / count)
    best_c, best_w = _best(results)
    return AttributeBlendChoice(best_c, best_w, folds, results)
