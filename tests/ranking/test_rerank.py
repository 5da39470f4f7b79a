from __future__ import annotations

import numpy as np
import pytest

from ranking.rerank import keep_nearest_order


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
