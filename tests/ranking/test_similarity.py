from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch

from ranking.rerank import SimilarityReranker
from ranking.similarity import CHECKPOINT_KIND, SimilarityNet, fingerprint, from_checkpoint, to_checkpoint


def random_net(input_dim: int = 32, output_dim: int = 8, seed: int = 0) -> SimilarityNet:
    torch.manual_seed(seed)
    return SimilarityNet(input_dim, output_dim).eval()


def unit_rows(count: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_net_gives_unit_vectors_and_a_symmetric_cosine() -> None:
    net = random_net()
    a, b = torch.from_numpy(unit_rows(5, 32, 1)), torch.from_numpy(unit_rows(5, 32, 2))
    with torch.no_grad():
        projected = net(a)
        assert projected.shape == (5, 8)
        assert torch.allclose(projected.norm(dim=1), torch.ones(5), atol=1e-6)
        assert torch.allclose(net.similarity(a, b), net.similarity(b, a))
        assert torch.allclose(net.similarity(a, b), (net(a) * net(b)).sum(1))
    assert np.allclose(net.embed(a.numpy()), projected.numpy(), atol=1e-6)


def test_checkpoint_round_trip_gives_identical_scores() -> None:
    net = random_net(seed=3)
    checkpoint = to_checkpoint(net, {"margin": 0.1, "triplets": 120, "note": "unit test"})
    assert checkpoint["kind"] == CHECKPOINT_KIND
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)  # plain tensors and values: loadable without pickled code
    restored = from_checkpoint(loaded)
    assert loaded["meta"] == {"margin": 0.1, "triplets": 120, "note": "unit test"}
    assert fingerprint(restored) == fingerprint(net) == loaded["fingerprint"]
    query, candidates = unit_rows(1, 32, 4)[0], unit_rows(20, 32, 5)
    assert np.array_equal(
        SimilarityReranker.from_net(net).score(query, candidates),
        SimilarityReranker.from_net(restored).score(query, candidates),
    )


def test_checkpoint_refuses_other_files_and_unserialisable_meta() -> None:
    net = random_net()
    with pytest.raises(ValueError, match="not a similarity checkpoint"):
        from_checkpoint({"kind": "tiefwatch-crop", "state_dict": {}})
    with pytest.raises(TypeError):
        to_checkpoint(net, {"when": object()})


def test_fingerprint_follows_the_weights() -> None:
    assert fingerprint(random_net(seed=0)) == fingerprint(random_net(seed=0))
    assert fingerprint(random_net(seed=0)) != fingerprint(random_net(seed=1))
    assert SimilarityReranker.from_net(random_net(seed=0)).fingerprint.startswith("similarity:")


def test_reranker_matches_the_net_and_orders_by_the_learned_similarity() -> None:
    """A projection that keeps dimensions 0-1 and drops 2: a candidate close to the query only through
    dimension 2 must fall behind one that agrees on the kept dimensions."""
    net = SimilarityNet(3, 2)
    with torch.no_grad():
        net.projection.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    reranker = SimilarityReranker.from_net(net)
    query = np.array([1.0, 0.0, 1.0], np.float32)
    candidates = np.array([[0.0, 1.0, 1.0], [1.0, 0.1, 0.0], [1.0, 0.8, 0.0], [0.1, 0.3, 5.0]], np.float32)
    raw = candidates @ query / np.linalg.norm(candidates, axis=1) / np.linalg.norm(query)
    scores = reranker.score(query, candidates)
    assert np.argsort(-raw).tolist() == [3, 1, 2, 0]  # the backbone's order
    assert np.argsort(-scores).tolist() == [1, 2, 3, 0]  # candidate 3 was close only through dimension 2
    assert scores.dtype == np.float32 and scores.shape == (4,)
    with torch.no_grad():
        expected = net.similarity(torch.from_numpy(query)[None], torch.from_numpy(candidates)).numpy()
    assert np.allclose(scores, expected, atol=1e-6)
    assert reranker.score(query, np.zeros((0, 3), np.float32)).shape == (0,)


def test_reranking_a_hundred_candidates_takes_well_under_ten_milliseconds() -> None:
    reranker = SimilarityReranker.from_net(random_net(1280, 256))
    query, candidates = unit_rows(1, 1280, 0)[0], unit_rows(100, 1280, 1)
    reranker.score(query, candidates)
    timings = []
    for _ in range(30):
        started = time.perf_counter()
        reranker.score(query, candidates)
        timings.append(time.perf_counter() - started)
    assert np.median(timings) < 0.010


def test_raw_weight_from_the_checkpoint_blends_raw_and_learned_cosine() -> None:
    net = random_net()
    rng = np.random.default_rng(0)
    query, candidates = rng.normal(size=32).astype(np.float32), rng.normal(size=(20, 32)).astype(np.float32)
    learned_only = SimilarityReranker.from_checkpoint(to_checkpoint(net))
    blended = SimilarityReranker.from_checkpoint(to_checkpoint(net, {"raw_weight": 0.6}))
    assert learned_only.raw_weight == 0.0 and blended.raw_weight == 0.6
    raw = (candidates / np.linalg.norm(candidates, axis=1, keepdims=True)) @ (query / np.linalg.norm(query))
    expected = 0.6 * raw + 0.4 * learned_only.score(query, candidates)
    np.testing.assert_allclose(blended.score(query, candidates), expected, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_loads_through_its_numpy_cache_without_torch(tmp_path) -> None:
    """The second load reads the ``.npz`` the first one wrote: same scores, and no torch needed for it."""
    net = random_net(seed=5)
    path = tmp_path / "model.pt"
    torch.save(to_checkpoint(net, {"raw_weight": 0.3, "signature": {"image_size": 96}}), path)
    first = SimilarityReranker.load(path, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("similarity-*.npz"))) == 1
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any torch import now fails
        "from pathlib import Path\n"
        "from ranking.rerank import SimilarityReranker\n"
        f"r = SimilarityReranker.load(Path({str(path)!r}), Path({str(tmp_path / 'cache')!r}))\n"
        "print(r.fingerprint, r.raw_weight, r.signature)"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == [first.fingerprint, "0.3"]
    query, candidates = unit_rows(1, 32, 1)[0], unit_rows(10, 32, 2)
    second = SimilarityReranker.load(path, tmp_path / "cache")
    assert np.array_equal(first.score(query, candidates), second.score(query, candidates))
    assert second.signature == {"image_size": 96}


def attribute_state(input_dim: int = 32) -> dict:
    """Heads for one 2-valued attribute read off dimension 0 (strongly), so its agreement is easy to predict."""
    weight = np.zeros((2, input_dim), np.float32)
    weight[0, 0], weight[1, 0] = -40.0, 40.0
    return {"names": ["strap"], "values": [["leather", "bracelet"]], "weights": [weight], "biases": [np.zeros(2)]}


def test_attribute_heads_travel_in_the_checkpoint_and_the_npz_cache_and_weigh_in_the_score(tmp_path) -> None:
    net = random_net(seed=7)
    meta = {"raw_weight": 0.6, "attribute_weight": 0.5}
    path = tmp_path / "model.pt"
    torch.save(to_checkpoint(net, meta, attribute_state()), path)
    plain = SimilarityReranker.from_checkpoint(to_checkpoint(net, {"raw_weight": 0.6}))
    first = SimilarityReranker.load(path, tmp_path / "cache")
    assert first.attributes is not None and first.attribute_weight == 0.5
    assert first.fingerprint != plain.fingerprint, "the heads are part of what a result cites"
    cached = SimilarityReranker.load(path, tmp_path / "cache")  # through the .npz this time
    assert cached.attributes is not None and cached.attributes.names == ["strap"]

    query, candidates = unit_rows(1, 32, 3)[0], unit_rows(40, 32, 4)
    np.testing.assert_array_equal(first.score(query, candidates), cached.score(query, candidates))
    bracelet = 1 / (1 + np.exp(-80 * candidates[:, 0])), 1 / (1 + np.exp(-80 * query[0]))  # softmax of (-40x, 40x)
    agreement = bracelet[0] * bracelet[1] + (1 - bracelet[0]) * (1 - bracelet[1])
    expected = 0.5 * plain.score(query, candidates) + 0.5 * agreement
    np.testing.assert_allclose(first.score(query, candidates), expected, atol=1e-5)
    same_strap = np.sign(candidates[:, 0]) == np.sign(query[0])
    top = np.argsort(-first.score(query, candidates))[:5]
    assert same_strap[top].all() and not same_strap.all(), "the shared strap lifts candidates above the others"


def test_attribute_heads_for_other_vectors_are_refused() -> None:
    from ranking.attributes import AttributeHeads

    heads = AttributeHeads.from_state(attribute_state(input_dim=16))
    with pytest.raises(ValueError, match="16-d vectors"):
        SimilarityReranker(np.zeros((8, 32), np.float32), "x", attributes=heads, attribute_weight=0.5)


def _colour_model(raw_dim: int = 32, colour_dim: int = 4, weight: float = 0.5):
    """A re-ranker whose projection reads only the colour columns: it ranks by colour alone."""
    from ranking.colour import ColourScaling

    colours = np.random.default_rng(7).normal(size=(200, colour_dim)).astype(np.float32)
    scaling = ColourScaling(np.zeros(colour_dim, np.float32), np.full(colour_dim, weight, np.float32))
    projection = np.zeros((colour_dim, raw_dim + colour_dim), np.float32)
    projection[:, raw_dim:] = np.eye(colour_dim)
    return SimilarityReranker(projection, "similarity:colour", colour=scaling), colours


def test_a_colour_model_takes_vectors_with_their_colours_and_ranks_by_them() -> None:
    reranker, colours = _colour_model()
    vectors = unit_rows(6, 32, 11)
    assert (reranker.raw_dim, reranker.colour_dim, reranker.input_dim) == (32, 4, 36)
    with pytest.raises(ValueError, match="re-run `tiefwatch index`"):
        reranker.inputs(vectors)  # no colours: refused, not guessed
    with pytest.raises(ValueError, match="re-run `tiefwatch index`"):
        reranker.inputs(vectors, np.zeros((6, 0), np.float32))  # an index built without them
    inputs = reranker.inputs(vectors, colours[:6])
    assert inputs.shape == (6, 36)
    np.testing.assert_array_equal(inputs[:, :32], vectors)

    # the query wears candidate 3's colours: the colour-only projection puts it first
    query = reranker.inputs(unit_rows(1, 32, 12), colours[3:4])[0]
    assert int(np.argmax(reranker.score(query, inputs))) == 3
    # the raw share of the score reads the backbone part alone: at raw weight 1 it is the plain cosine
    reranker.raw_weight = 1.0
    np.testing.assert_allclose(reranker.score(query, inputs), vectors @ query[:32], atol=1e-5)


def test_colour_scaling_travels_in_checkpoint_cache_and_fingerprint(tmp_path) -> None:
    from ranking.colour import ColourScaling

    net = random_net(input_dim=36, seed=4)
    colours = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    scaling = ColourScaling.fit(colours, 0.1)
    plain = to_checkpoint(net, {"raw_weight": 0.6})
    coloured = to_checkpoint(net, {"raw_weight": 0.6}, colour=scaling.to_state())
    assert coloured["fingerprint"] != plain["fingerprint"]
    path = tmp_path / "model.pt"
    torch.save(coloured, path)
    first = SimilarityReranker.load(path, tmp_path)  # writes the numpy cache
    cached = SimilarityReranker.load(path, tmp_path)  # reads it
    assert first.colour_dim == cached.colour_dim == 4 and first.raw_dim == 32
    assert first.fingerprint == cached.fingerprint == coloured["fingerprint"]
    rows = np.hstack([unit_rows(20, 32, 2), colours[:20]])
    np.testing.assert_array_equal(first.score(rows[0], rows[1:]), cached.score(rows[0], rows[1:]))
    # the numpy projection is the net on the prepared rows: unit backbone vector, then scaled colours
    prepared = np.hstack([rows[:, :32], scaling.apply(colours[:20])]).astype(np.float32)
    np.testing.assert_allclose(first.prepare(rows), prepared, atol=1e-6)
    np.testing.assert_allclose(first.project(rows), net.embed(prepared), atol=1e-5)
