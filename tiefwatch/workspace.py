"""All state in one folder: the resolved config, the index and trained models.

Chosen by ``tiefwatch --workspace DIR`` or ``TIEFWATCH_WORKSPACE``; ``./.tiefwatch`` by default. Several
catalogues are several workspaces.
"""

from __future__ import annotations

import os
from pathlib import Path

from tiefwatch.config import Config, read_yaml

DEFAULT_WORKSPACE = ".tiefwatch"
ENV_VAR = "TIEFWATCH_WORKSPACE"


class Workspace:
    def __init__(self, root: str | Path | None = None) -> None:
        chosen = root if root is not None else os.environ.get(ENV_VAR) or DEFAULT_WORKSPACE
        self.root = Path(chosen).expanduser()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def index_path(self) -> Path:
        return self.root / "index" / "catalog.npz"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def cache_dir(self) -> Path:
        """Derived files that can always be rebuilt (ONNX exports)."""
        return self.root / "cache"

    @property
    def crop_model_path(self) -> Path:
        return self.models_dir / "crop.pt"

    @property
    def similarity_model_path(self) -> Path:
        return self.models_dir / "similarity.pt"

    def load_config(self, config_file: str | Path | None = None, overrides: list[str] | None = None) -> Config:
        """Defaults, then the workspace's saved config, then the user's file, then ``--set`` flags."""
        config = Config.load(self.config_path) if self.config_path.exists() else Config()
        data = read_yaml(config_file) if config_file else None
        return config.merged(data, overrides)

    def save_config(self, config: Config) -> None:
        config.save(self.config_path)
