"""The re-ranker a search runs: the learned projection as a numpy matrix, no torch per call or per process.

A trained ``SimilarityNet`` (``ranking.similarity``) is a bias-free linear map, so at search time it is one
(K+1, D) x (D, d) product. Its checkpoint is a torch file; the first load writes the matrix and what the
search needs beside it into a small ``.npz`` cache keyed by the checkpoint's bytes, and later processes read
that instead, without importing torch.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ranking.engines import write_cache_file

if TYPE_CHECKING:
    from ranking.similarity import SimilarityNet

CACHE_VERSION = 1
DEFAULT_MODEL = Path(__file__).resolve().parent / "weights" / "similarity_default.pt"  # see benchmarks/judged


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
    """The ``Reranker`` protocol on a trained projection: numpy in, numpy out.

    ``projection`` is the net's (d, D) weight; ``raw_weight`` the share of the raw cosine in the score;
    ``signature`` the embedding signature the model was trained on, when known.
    """

    def __init__(
        self,
        projection: np.ndarray,
        fingerprint: str,
        signature: dict[str, Any] | None = None,
        raw_weight: float = 0.0,
    ) -> None:
        projection = np.asarray(projection, np.float32)
        self._projection_t = np.ascontiguousarray(projection.T)  # (D, d)
        self.input_dim = projection.shape[1]
        self.fingerprint = fingerprint
        self.signature = signature
        self.raw_weight = float(raw_weight)
        _blas_controller()  # found once here (about 10 ms), not inside the first query

    @classmethod
    def from_net(cls, net: SimilarityNet) -> SimilarityReranker:
        from ranking.similarity import fingerprint

        return cls(net.projection.weight.detach().cpu().float().numpy(), fingerprint(net))

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> SimilarityReranker:
        from ranking.similarity import from_checkpoint

        reranker = cls.from_net(from_checkpoint(checkpoint))
        meta = checkpoint.get("meta", {})
        reranker.signature = meta.get("signature")
        reranker.raw_weight = float(meta.get("raw_weight") or 0.0)
        return reranker

    @classmethod
    def load(cls, path: str | Path, cache_dir: Path | None = None) -> SimilarityReranker:
        """A checkpoint file, through the numpy cache in ``cache_dir`` when there is one (no torch then)."""
        data = Path(path).read_bytes()
        cached = cache_dir / f"similarity-{hashlib.sha256(data).hexdigest()[:16]}.npz" if cache_dir else None
        if cached is not None and cached.exists():
            try:
                return cls.from_npz(cached)
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache entry is rebuilt from the checkpoint below
        import torch

        reranker = cls.from_checkpoint(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
        if cached is not None:
            write_cache_file(cached, reranker.npz_bytes())
        return reranker

    def npz_bytes(self) -> bytes:
        meta = {
            "version": CACHE_VERSION,
            "fingerprint": self.fingerprint,
            "signature": self.signature,
            "raw_weight": self.raw_weight,
        }
        buffer = io.BytesIO()
        np.savez(buffer, projection=self._projection_t.T, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
        return buffer.getvalue()

    @classmethod
    def from_npz(cls, path: Path) -> SimilarityReranker:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("version") != CACHE_VERSION:
                raise ValueError(f"{path}: cache version {meta.get('version')}")
            return cls(data["projection"], meta["fingerprint"], meta["signature"], meta["raw_weight"])

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
