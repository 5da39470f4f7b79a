from __future__ import annotations

import numpy as np
import pytest

from ranking.attributes import (
    AttributeBlendChoice,
    AttributeHeads,
    choose_attribute_blend,
    fit_attribute_heads,
    top_agreement,
)

SHAPES = ["round", "square", "tonneau"]
STRAPS = ["leather", "bracelet"]


def labelled_vectors(count: int, seed: int, noise: float = 0.3) -> tuple[np.ndarray, dict[str, list[str]]]:
    """Vectors whose first dimensions encode a shape (3 values) and a strap (2 values), the rest noise."""
    rng = np.random.default_rng(seed)
    shapes = rng.integers(0, 3, count)
    straps = rng.integers(0, 2, count)
    vectors = rng.normal(0, noise, (count, 32)).astype(np.float32)
    vectors[np.arange(count), shapes] += 1.0
    vectors[:, 3] += np.where(straps == 1, 1.0, -1.0)
    return vectors, {"shape": [SHAPES[s] for s in shapes], "strap": [STRAPS[s] for s in straps]}


def test_heads_predict_unseen_vectors_and_their_dot_product_is_the_expected_shared_share() -> None:
    train_x, train_labels = labelled_vectors(120, seed=0)
    test_x, test_labels = labelled_vectors(60, seed=1)
    heads = fit_attribute_heads(train_x, train_labels)
    assert heads.names == ["shape", "strap"] and heads.values == [sorted(SHAPES), sorted(STRAPS)]
    predicted = heads.predict(test_x)
    for name in ("shape", "strap"):
        hits = [p[name][0] == truth for p, truth in zip(predicted, test_labels[name], strict=True)]
        assert np.mean(hits) > 0.9, name

    probabilities = heads.probabilities(test_x[:2])
    expected = np.mean([p[0] @ p[1] for p in probabilities])  # chance the two share each attribute, averaged
    embedded = heads.embed(test_x[:2])
    assert embedded.shape == (2, heads.width) == (2, 5)
    assert embedded[0] @ embedded[1] == pytest.approx(expected, abs=1e-6)
    assert 0.0 <= embedded[0] @ embedded[1] <= 1.0


def test_a_two_valued_attribute_gets_both_softmax_rows_and_unlabelled_cells_are_skipped() -> None:
    from sklearn.linear_model import LogisticRegression

    x, labels = labelled_vectors(80, seed=2)
    straps: list[str | None] = list(labels["strap"])
    straps[:10] = [None] * 10  # nobody said
    heads = fit_attribute_heads(x, {"strap": straps, "colour": ["black"] * 80})  # one value: nothing to learn
    assert heads.names == ["strap"]
    reference = LogisticRegression(C=30.0, max_iter=3000).fit(_unit(x[10:]), straps[10:])
    np.testing.assert_allclose(heads.probabilities(x)[0], reference.predict_proba(_unit(x)), atol=1e-5)
    with pytest.raises(ValueError, match="two or more"):
        fit_attribute_heads(x, {"colour": ["black"] * 80})
    with pytest.raises(ValueError, match="79 labels for 80"):
        fit_attribute_heads(x, {"strap": straps[:79]})


def test_state_round_trip_and_mismatched_state_is_refused() -> None:
    x, labels = labelled_vectors(60, seed=3)
    heads = fit_attribute_heads(x, labels)
    again = AttributeHeads.from_state(heads.to_state())
    np.testing.assert_array_equal(again.embed(x), heads.embed(x))
    state = heads.to_state()
    state["biases"][0] = state["biases"][0][:2]
    with pytest.raises(ValueError, match="shape has 3 values"):
        AttributeHeads.from_state(state)


def test_top_agreement_counts_shared_labels_of_the_five_nearest() -> None:
    labels = {"shape": ["round"] * 6 + ["square"] * 6, "strap": ["leather", None] * 6}
    embedded = np.eye(12, dtype=np.float32)
    embedded[:6, 0] = embedded[6:, 6] = 1.0  # two groups of six: each row's five nearest are its own group
    # within a group every shape agrees; a strap agrees only between two labelled "leather" rows (3 per group)
    queries = np.array([0, 1])
    agreement = top_agreement(embedded / np.linalg.norm(embedded, axis=1, keepdims=True), queries, labels)
    assert agreement == pytest.approx(np.mean([(5 + 2) / 10, (5 + 0) / 10]))


def test_cross_validation_gives_attributes_weight_where_the_base_score_misses_them() -> None:
    x, labels = labelled_vectors(150, seed=4, noise=0.6)
    rng = np.random.default_rng(5)

    def base(vectors: np.ndarray) -> np.ndarray:  # a score that looks only at the noise dimensions
        noise = vectors[:, 4:] + rng.normal(0, 0.01, vectors[:, 4:].shape)
        return (noise / np.linalg.norm(noise, axis=1, keepdims=True)).astype(np.float32)

    fits: list[int] = []
    choice = choose_attribute_blend(x, labels, base, cs=(1.0, 10.0), weights=(0.0, 0.5), folds=3, on_fit=fits.append)
    assert choice.weight == 0.5 and len(fits) == 2 * 3  # each C on each fold: what a progress bar counts
    assert set(choice.agreement) == {"c=1,weight=0", "c=1,weight=0.5", "c=10,weight=0", "c=10,weight=0.5"}
    assert choice.agreement[f"c={choice.c:g},weight=0.5"] > choice.agreement["c=1,weight=0"] + 0.2


def test_a_blend_choice_can_be_narrowed_to_the_weights_that_keep_the_exact_watch_first() -> None:
    scores = {(1.0, 0.0): 0.60, (10.0, 0.0): 0.60, (1.0, 0.2): 0.70, (10.0, 0.2): 0.72}
    scores |= {(1.0, 0.5): 0.80, (10.0, 0.5): 0.75}
    choice = AttributeBlendChoice(1.0, 0.5, 5, scores)
    assert choice.best_c(0.2) == 10.0 and choice.best_c(0.5) == 1.0
    narrowed = choice.within([0.0, 0.2])
    assert (narrowed.c, narrowed.weight) == (10.0, 0.2)
    assert narrowed.agreement == choice.agreement  # every candidate's score is still reported
    assert choice.within([0.0]).weight == 0.0 and choice.within([0.0]).c == 1.0  # a tie: the smaller C, more regular
    with pytest.raises(ValueError, match="cross-validated"):
        choice.within([0.35])


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _as_photos(vectors: np.ndarray) -> np.ndarray:
    """What a phone does to these vectors here: the shape code moves to other dimensions, the strap code stays."""
    photos = vectors.copy()
    photos[:, 10:13], photos[:, :3] = vectors[:, :3], 0.0
    return photos


def test_shots_teach_the_heads_to_name_photos_and_a_fold_uses_only_its_own_watches_shots(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ranking.attributes

    x, labels = labelled_vectors(120, seed=0)
    owners = np.repeat(np.arange(120), 2)
    shots = (_as_photos(x[owners] + np.random.default_rng(3).normal(0, 0.1, (240, 32)).astype(np.float32)), owners)
    test_x, test_labels = labelled_vectors(60, seed=1)
    test_photos = _as_photos(test_x)

    def shape_hits(heads: AttributeHeads) -> float:
        predicted = heads.predict(test_photos)
        return float(np.mean([p["shape"][0] == t for p, t in zip(predicted, test_labels["shape"], strict=True)]))

    catalogue_only = ranking.attributes.fit_with_shots(x, labels, 30.0)
    with_shots = ranking.attributes.fit_with_shots(x, labels, 30.0, shots=shots)
    assert shape_hits(catalogue_only) < 0.6 < 0.9 < shape_hits(with_shots)

    fits: list[int] = []
    real_fit = ranking.attributes.fit_attribute_heads
    monkeypatch.setattr(
        ranking.attributes, "fit_attribute_heads", lambda v, lab, c=30.0: fits.append(len(v)) or real_fit(v, lab, c)
    )
    choose_attribute_blend(x, labels, lambda v: v / np.linalg.norm(v, axis=1, keepdims=True), cs=(30.0,),
                           weights=(0.0, 0.5), folds=4, shots=shots)  # fmt: skip
    assert fits == [90 + 2 * 90] * 4  # each fold: its 90 watches and their 180 shots, never the held-out 30's
