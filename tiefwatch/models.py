"""Which crop and similarity models a workspace uses: its own if trained, else the package's defaults."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, TypeVar

from tiefwatch.config import Config
from tiefwatch.pipeline import Cropper, Reranker
from tiefwatch.workspace import Workspace

log = logging.getLogger(__name__)
R = TypeVar("R")


def _first_existing(*candidates: str | Path | None) -> Path | None:
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


def load_cropper(config: Config, workspace: Workspace, required: bool = False) -> Cropper | None:
    """The configured crop model, else the workspace's own, else the one that ships with the package."""
    from bbox.predict import DEFAULT_MODEL, BoxPredictor

    if config.crop.model and not Path(config.crop.model).exists():
        raise FileNotFoundError(f"crop.model {config.crop.model} does not exist")
    path = _first_existing(config.crop.model, workspace.crop_model_path, DEFAULT_MODEL)
    if path is None:
        if required:
            raise FileNotFoundError("no crop model: run `tiefwatch train-bbox` first")
        return None
    return BoxPredictor(
        path,
        device=config.embed.device,
        engine=config.embed.engine,
        cache_dir=workspace.cache_dir,
        batch_size=config.embed.batch_size,
        refine=config.crop.refine,
        refine_pad=config.crop.refine_pad,
        refine_below=config.crop.refine_below,
        alternatives_ratio=config.crop.alternatives_ratio,
        max_alternatives=config.crop.max_alternatives,
    )


def load_reranker(
    config: Config, workspace: Workspace, index_signature: dict[str, Any] | None = None
) -> Reranker | None:
    """The configured similarity model, else the workspace's, else the package's default (trained on human
    judgements, see benchmarks/judged), else None (FAISS order is final).

    The packaged model is only used where the index's vectors are made the way it was trained on; otherwise it
    is left out quietly, since a user never chose it.
    """
    from ranking import rerank

    if config.rerank.model and not Path(config.rerank.model).exists():
        raise FileNotFoundError(f"rerank.model {config.rerank.model} does not exist")
    path = _first_existing(config.rerank.model, workspace.similarity_model_path)
    packaged = path is None and config.rerank.packaged and rerank.DEFAULT_MODEL.exists()
    if packaged:
        path = rerank.DEFAULT_MODEL
    if path is None:
        return None
    reranker = rerank.SimilarityReranker.load(path, workspace.cache_dir)
    if packaged and index_signature is not None and not same_embedding(reranker.signature, index_signature):
        log.info("packaged similarity model not used: this index's vectors are made with other settings")
        return None
    if packaged and index_signature is not None and reranker.colour_dim and not index_signature.get("catalog_colour"):
        log.info("packaged similarity model not used: it compares colour descriptors, and this index keeps none")
        return None
    if config.rerank.attribute_weight >= 0 and reranker.attributes is not None:
        reranker.attribute_weight = min(float(config.rerank.attribute_weight), 1.0)
    return with_query_expansion(reranker, config)


def with_query_expansion(reranker: R, config: Config) -> R:
    """The search's query expansion (``rerank.expand``) on a re-ranker that offers it; returned for chaining."""
    if hasattr(reranker, "expand"):
        reranker.expand, reranker.expand_alpha = max(0, config.rerank.expand), config.rerank.expand_alpha
    return reranker


def same_embedding(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two embedding signatures make comparable vectors: the backbone side, not how photos were framed."""
    if a is None or b is None:
        return True
    return embedding_part(a) == embedding_part(b)


def embedding_part(signature: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in signature.items() if not k.startswith(("crop", "catalog"))}
