from __future__ import annotations

import numpy as np
import pytest

from ranking.rerank import SimilarityReranker, expand_query, keep_nearest_order, sure_of_nearest


def test_nearest_candidates_pushed_off_the_page_take_its_last_places_in_re_ranked_order() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.35])  # the two nearest scored last
    order = keep_nearest_order(scores, keep_nearest=2, within=5)
    assert order.tolist() == [3, 4, 5, 1, 0, 6, 7, 8, 9, 2]
    assert sorted(order.tolist()) == list(range(10))  # a permutation: nothing lost, nothing twice


def test_the_re_rankers_top_is_untouched_and_the_nearest_always_land_on_the_page() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        scores = rng.normal(size=int(rng.integers(1, 40)))
        order = keep_nearest_order(scores, keep_nearest=5, within=10)
        plain = np.argsort(-scores, kind="stable")
        assert sorted(order.tolist()) == list(range(len(scores)))
        assert order[:5].tolist() == plain[:5].tolist()
        assert set(range(min(5, len(scores)))) <= set(order[:10].tolist())


@pytest.mark.parametrize(("keep", "within"), [(0, 10), (3, 10), (10, 0)])
def test_order_is_plain_where_the_nearest_already_are_on_the_page_or_nothing_is_kept(keep: int, within: int) -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.05, 0.01])
    assert keep_nearest_order(scores, keep, within).tolist() == np.argsort(-scores, kind="stable").tolist()


def test_a_pinned_nearest_goes_first_and_the_rest_keep_their_re_ranked_places() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        scores = rng.normal(size=int(rng.integers(1, 40)))
        pinned = keep_nearest_order(scores, keep_nearest=5, within=10, pin_nearest=True)
        unpinned = keep_nearest_order(scores, keep_nearest=5, within=10)
        assert pinned[0] == 0
        assert sorted(pinned.tolist()) == list(range(len(scores)))
        assert pinned[1:].tolist() == [i for i in unpinned.tolist() if i != 0]
        assert set(range(min(5, len(scores)))) <= set(pinned[:10].tolist())


def test_the_nearest_is_sure_only_by_a_clear_margin_over_the_next() -> None:
    assert sure_of_nearest(np.array([0.80, 0.70, 0.60]), margin=0.05)
    assert not sure_of_nearest(np.array([0.80, 0.78, 0.60]), margin=0.05)
    assert not sure_of_nearest(np.array([0.80, 0.10]), margin=0.0)  # 0: never
    assert not sure_of_nearest(np.array([0.80]), margin=0.05)  # nothing to be surer than


def test_query_expansion_leans_toward_the_closest_candidate_and_keeps_the_querys_length() -> None:
    query = np.array([1.0, 0.3, 0.0], np.float32)
    candidates = np.array([[0.9, 0.0, 0.4], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]], np.float32)
    assert np.array_equal(expand_query(query, candidates, 0), query)
    widened = expand_query(query, candidates, 1)
    assert np.isclose(np.linalg.norm(widened), np.linalg.norm(query))
    assert widened[2] > 0  # took on the closest candidate's third coordinate
    scores = candidates @ query
    weight = (scores[0] / (query @ query)) ** 3
    expected = query + weight * candidates[0]
    assert np.allclose(widened, expected * np.linalg.norm(query) / np.linalg.norm(expected), atol=1e-6)
    # a candidate pointing away (negative score) adds nothing, however many are asked for
    assert np.allclose(expand_query(query, candidates, 3), expand_query(query, candidates[:2], 2), atol=1e-6)


def test_a_widened_photo_query_ranks_the_look_alikes_of_its_own_watch_above_those_of_its_background() -> None:
    """A phone photo: mostly its watch (axis 0), some clutter (axis 2). Its own catalogue photo is the closest
    candidate; the watch's look-alike (axes 0, 1) should come next, not the clutter's (axes 0, 2)."""
    reranker = SimilarityReranker(np.eye(3, dtype=np.float32), "identity")
    watch, look_alike, clutter = [1.0, 0.2, 0.0], [0.75, 0.66, 0.0], [0.5, 0.0, 0.87]
    photo = np.array([0.9, 0.0, 0.44], np.float32)
    candidates = np.array([watch, look_alike, clutter], np.float32)
    assert np.argsort(-reranker.score(photo, candidates)).tolist() == [0, 2, 1]  # as it is: the clutter's next
    reranker.expand = 1
    assert np.argsort(-reranker.score(photo, candidates)).tolist() == [0, 1, 2]  # widened: the look-alike's
    assert reranker.with_attributes(None, 0.0).expand == 1  # a candidate blend is ranked the same way


def test_widening_leaves_the_raw_cosines_share_of_the_query_as_it_is() -> None:
    rng = np.random.default_rng(1)
    reranker = SimilarityReranker(rng.normal(size=(4, 6)).astype(np.float32), "blend", raw_weight=0.5)
    reranker.expand = 2
    inputs = 1.0 + 0.5 * rng.normal(size=(5, 6)).astype(np.float32)  # a query and four candidates near it
    rows = reranker.embed(inputs)
    widened = reranker.widen(rows[0], rows[1:])
    assert np.array_equal(widened[:6], rows[0][:6])  # the raw part: the query's own
    assert not np.allclose(widened[6:], rows[0][6:], atol=1e-3)  # the learned part leaned toward the closest two
    assert np.allclose(reranker.score(inputs[0], inputs[1:]), rows[1:] @ widened, atol=1e-5)
