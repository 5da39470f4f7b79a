"""The learned similarity: a linear projection of frozen backbone vectors (searches run it through ``ranking.rerank``).

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

import hashlib
import json
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CHECKPOINT_KIND = "tiefwatch-similarity"
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


def fingerprint(
    net: SimilarityNet, attributes: dict[str, Any] | None = None, colour: dict[str, Any] | None = None
) -> str:
    """Content hash of the architecture and weights (attribute heads and colour scaling included): what a search
    result can cite as its re-ranker."""
    digest = hashlib.sha1(json.dumps(net.spec(), sort_keys=True).encode())
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    if attributes is not None:
        digest.update(json.dumps([attributes["names"], attributes["values"]]).encode())
        for array in (*attributes["weights"], *attributes["biases"]):
            digest.update(np.asarray(array, np.float32).tobytes())
    if colour is not None:
        for name in ("mean", "scale"):
            digest.update(name.encode())
            digest.update(np.asarray(colour[name], np.float32).tobytes())
    return f"similarity:{digest.hexdigest()[:16]}"


def to_checkpoint(
    net: SimilarityNet,
    meta: dict[str, Any] | None = None,
    attributes: dict[str, Any] | None = None,
    colour: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Plain tensors and JSON-able metadata, ready for ``torch.save``; ``meta`` is checked to be JSON-able now
    so a bad value fails at training time, not when someone tries to read the file later. ``attributes`` is
    ``AttributeHeads.to_state()`` (``ranking.attributes``) when the model has attribute heads; ``colour``
    ``ColourScaling.to_state()`` (``ranking.colour``) when its inputs carry colour descriptors."""
    meta = dict(meta or {})
    json.dumps(meta)
    checkpoint = {
        "kind": CHECKPOINT_KIND,
        "version": CHECKPOINT_VERSION,
        "spec": net.spec(),
        "state_dict": {name: tensor.detach().cpu().clone() for name, tensor in net.state_dict().items()},
        "meta": meta,
        "fingerprint": fingerprint(net, attributes, colour),
    }
    if colour is not None:
        checkpoint["colour"] = {k: torch.from_numpy(np.asarray(colour[k], np.float32)) for k in ("mean", "scale")}
    if attributes is not None:  # tensors and lists of strings: a weights_only load reads them
        checkpoint["attributes"] = {
            "names": list(attributes["names"]),
            "values": [list(v) for v in attributes["values"]],
            "weights": [torch.from_numpy(np.asarray(w, np.float32)) for w in attributes["weights"]],
            "biases": [torch.from_numpy(np.asarray(b, np.float32)) for b in attributes["biases"]],
        }
    return checkpoint


def attribute_state(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint's attribute heads as numpy (``AttributeHeads.from_state`` takes it), or None."""
    stored = checkpoint.get("attributes")
    if not stored:
        return None
    return {
        "names": list(stored["names"]),
        "values": [list(v) for v in stored["values"]],
        "weights": [t.detach().cpu().float().numpy() for t in stored["weights"]],
        "biases": [t.detach().cpu().float().numpy() for t in stored["biases"]],
    }


def colour_state(checkpoint: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The checkpoint's colour scaling as numpy (``ColourScaling.from_state`` takes it), or None."""
    stored = checkpoint.get("colour")
    if not stored:
        return None
    return {name: stored[name].detach().cpu().float().numpy() for name in ("mean", "scale")}


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
