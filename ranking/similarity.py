"""The learned similarity: a linear projection of frozen backbone vectors, and the re-ranker that uses it.

``SimilarityNet`` maps a backbone vector ``x`` to ``normalize(W normalize(x))`` with ``W`` (d, D): cosine in
the projected space is the learned similarity. It was measured against a residual form,
``normalize(x + up(relu(down(x))))`` with ``up`` zero-initialised so it starts as the backbone's own cosine, on
synthetic triplets like the tests' (identity in a small subspace, swamped by a larger nuisance subspace; raw
cosine 0.6): the plain projection reached higher held-out accuracy, in fewer epochs (mean of 4 seeds: 0.79
against 0.67 from 90 training triplets, 0.95 against 0.89 from 300). What it has to learn is mostly which
backbone directions to drop, which a projection does directly and a residual only by cancelling them. It is
also a single (K, D) x (D, d) product per re-ranking call.

Both sides of a comparison go through the same projection, so ``similarity(a, b)`` is symmetric and the
catalogue's projected vectors could be cached if re-ranking ever needs to go deeper than a few hundred rows.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CHECKPOINT_KIND = "tiefwatch-similarity"
DEFAULT_MODEL = Path(__file__).resolve().parent / "weights" / "similarity_default.pt"  # see benchmarks/judged
CHECKPOINT_VERSION = 1


class SimilarityNet(nn.Module):
    """Linear projection of backbone vectors; cosine of its outputs is the learned similarity."""

    def __init__(self, input_dim: int = 1280, output_dim: int = 256) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.projection = nn.Linear(input_dim, output_dim, bias=False)  # a bias would only add a constant vector

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        """(..., D) backbone vectors -> (..., d) unit vectors in the learned space."""
        return F.normalize(self.projection(F.normalize(vectors, dim=-1)), dim=-1)

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Cosine of the projected vectors, row by row (broadcasting like ``a * b``)."""
        return (self(a) * self(b)).sum(dim=-1)

    def spec(self) -> dict[str, int]:
        return {"input_dim": self.input_dim, "output_dim": self.output_dim}

    @torch.no_grad()
    def embed(self, vectors: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """numpy (N, D) -> (N, d) float32 unit rows in the learned space."""
        vectors = np.asarray(vectors, np.float32).reshape(-1, self.input_dim)
        out = np.empty((len(vectors), self.output_dim), np.float32)
        for start in range(0, len(vectors), batch_size):
            out[start : start + batch_size] = self(torch.from_numpy(vectors[start : start + batch_size])).numpy()
        return out


def fingerprint(net: SimilarityNet) -> str:
    """Content hash of the architecture and weights: what a search result can cite as its re-ranker."""
    digest = hashlib.sha1(json.dumps(net.spec(), sort_keys=True).encode())
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    return f"similarity:{digest.hexdigest()[:16]}"


def to_checkpoint(net: SimilarityNet, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Plain tensors and JSON-able metadata, ready for ``torch.save``; ``meta`` is checked to be JSON-able now
    so a bad value fails at training time, not when someone tries to read the file later."""
    meta = dict(meta or {})
    json.dumps(meta)
    return {
        "kind": CHECKPOINT_KIND,
        "version": CHECKPOINT_VERSION,
        "spec": net.spec(),
        "state_dict": {name: tensor.detach().cpu().clone() for name, tensor in net.state_dict().items()},
        "meta": meta,
        "fingerprint": fingerprint(net),
    }


def from_checkpoint(checkpoint: dict[str, Any]) -> SimilarityNet:
    """The net a ``to_checkpoint`` dict describes, in eval mode; anything else is refused with a reason."""
    kind = checkpoint.get("kind") if isinstance(checkpoint, dict) else None
    if kind != CHECKPOINT_KIND:
        raise ValueError(f"not a similarity checkpoint (kind {kind!r}, expected {CHECKPOINT_KIND!r})")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"similarity checkpoint version {checkpoint.get('version')} is not {CHECKPOINT_VERSION}")
    net = SimilarityNet(**checkpoint["spec"])
    net.load_state_dict(checkpoint["state_dict"])
    return net.eval()


@functools.lru_cache(maxsize=1)
def _blas_controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # only a speed guard; scikit-learn brings it
        return None
    return ThreadpoolController()


@contextlib.contextmanager
def _single_blas_thread() -> Iterator[None]:
    """One BLAS thread for one small product: on a busy two-core machine a threaded (100, 1280) x (1280, 256)
    product measured 5 ms median and 40 ms at the 90th percentile, single-threaded 1.5 ms flat."""
    controller = _blas_controller()
    if controller is None:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield


class SimilarityReranker:
    """The ``Reranker`` protocol on a trained ``SimilarityNet``: numpy in, numpy out, no torch per call.

    The projection is copied to a float32 numpy array once; each call is one (K+1, D) x (D, d) product.
    """

    def __init__(self, net: SimilarityNet) -> None:
        weight = net.projection.weight.detach().cpu().float().numpy()
        self._projection_t = np.ascontiguousarray(weight.T)  # (D, d)
        self.input_dim = net.input_dim
        self.fingerprint = fingerprint(net)
        self.signature: dict[str, Any] | None = None  # the embedding signature it was trained on, when known
        self.raw_weight = 0.0  # share of the raw cosine in the score; set from the checkpoint that trained it
        _blas_controller()  # found once here (about 10 ms), not inside the first query

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> SimilarityReranker:
        reranker = cls(from_checkpoint(checkpoint))
        meta = checkpoint.get("meta", {})
        reranker.signature = meta.get("signature")
        reranker.raw_weight = float(meta.get("raw_weight") or 0.0)
        return reranker

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """(K, D) -> (K, d) unit rows in the learned space; the numpy twin of ``SimilarityNet.forward``."""
        x = np.asarray(vectors, np.float32)
        x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        y = x @ self._projection_t
        return y / np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-12)

    def embed(self, vectors: np.ndarray) -> np.ndarray:
        """(K, D) -> rows whose dot products are the re-ranking score: the raw unit vector scaled by
        sqrt(raw_weight) beside the learned one scaled by sqrt(1 - raw_weight) (just the learned one when 0)."""
        learned = self.project(vectors)
        if not self.raw_weight:
            return learned
        x = np.asarray(vectors, np.float32)
        raw = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        return np.hstack([np.sqrt(self.raw_weight) * raw, np.sqrt(1.0 - self.raw_weight) * learned]).astype(np.float32)

    def score(self, query: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Similarity of one query (D,) to each of K candidates (K, D): (K,) float32, higher = closer; the learned
        cosine, blended with the raw one by ``raw_weight``."""
        candidates = np.asarray(candidates, np.float32).reshape(-1, self.input_dim)
        if not len(candidates):
            return np.zeros(0, np.float32)
        with _single_blas_thread():
            embedded = self.embed(np.vstack([np.asarray(query, np.float32).reshape(1, -1), candidates]))
        return embedded[1:] @ embedded[0]
