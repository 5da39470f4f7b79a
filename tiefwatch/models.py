"""Which crop and similarity models a workspace uses: its own if trained, else the package's defaults."""

from __future__ import annotations

from pathlib import Path

from tiefwatch.config import Config
from tiefwatch.pipeline import Cropper, Reranker
from tiefwatch.workspace import Workspace


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
    )


def load_reranker(config: Config, workspace: Workspace) -> Reranker | None:
    """The configured similarity model, else the workspace's, else None (FAISS order is final)."""
    import torch

    from ranking.similarity import SimilarityReranker

    if config.rerank.model and not Path(config.rerank.model).exists():
        raise FileNotFoundError(f"rerank.model {config.rerank.model} does not exist")
    path = _first_existing(config.rerank.model, workspace.similarity_model_path)
    if path is None:
        return None
    return SimilarityReranker.from_checkpoint(torch.load(path, map_location="cpu", weights_only=True))
