"""Retrieval evaluation: stable splits, simulated photo queries with known answers, recall@k.

Shared by ``tools/bench_*.py`` and the tests so every figure in docs/benchmarks.md is computed one way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bbox.box import BoundingBox
from tiefwatch.images import load_image


def is_holdout(name: str, fraction: float = 0.2, salt: str = "tiefwatch-holdout") -> bool:
    """Stable by file name: the same watches are held out of training in every run and on every machine."""
    digest = hashlib.sha1(f"{salt}:{Path(name).name}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def rank_of(truth: str | Path, ranked: Sequence[str | Path]) -> int | None:
    """1-based rank of ``truth`` in ``ranked`` (compared as resolved paths), None when absent."""
    target = Path(truth).resolve()
    for position, item in enumerate(ranked, start=1):
        if Path(item).resolve() == target:
            return position
    return None


def recall_at(ranks: Sequence[int | None], k: int) -> float:
    """Share of queries whose true item is within the top ``k``."""
    if not ranks:
        return 0.0
    return float(np.mean([r is not None and r <= k for r in ranks]))


@dataclass
class QuerySample:
    """A simulated phone photo of a catalogue watch: the photo, the watch's true box, the catalogue file."""

    image: np.ndarray
    box: BoundingBox
    truth: Path


def simulate_queries(
    catalog_paths: Sequence[Path], count: int, seed: int = 0, backgrounds: Sequence[np.ndarray] | None = None
) -> list[QuerySample]:
    """``count`` photo-like queries of distinct catalogue watches, drawn reproducibly from ``seed``."""
    from bbox.synth import PhotoSimulator

    rng = np.random.default_rng(seed)
    simulator = PhotoSimulator(backgrounds=backgrounds, seed=seed)
    picks = rng.choice(len(catalog_paths), size=min(count, len(catalog_paths)), replace=False)
    samples = []
    for pick in picks:
        path = catalog_paths[int(pick)]
        scene = simulator(load_image(path), rng)
        samples.append(QuerySample(scene.image, scene.box, path))
    return samples
