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


def load_cropper(config: Config, workspace: Workspace) -> Cropper | None:
    """The configured crop model, else the workspace's, else None (whole images are embedded)."""
    if config.crop.model and not Path(config.crop.model).exists():
        raise FileNotFoundError(f"crop.model {config.crop.model} does not exist")
    path = _first_existing(config.crop.model, workspace.crop_model_path)
    if path is None:
        return None
    raise NotImplementedError(f"crop models are not supported yet ({path})")


def load_reranker(config: Config, workspace: Workspace) -> Reranker | None:
    """The configured similarity model, else the workspace's, else None (FAISS order is final)."""
    if config.rerank.model and not Path(config.rerank.model).exists():
        raise FileNotFoundError(f"rerank.model {config.rerank.model} does not exist")
    path = _first_existing(config.rerank.model, workspace.similarity_model_path)
    if path is None:
        return None
    raise NotImplementedError(f"similarity models are not supported yet ({path})")
