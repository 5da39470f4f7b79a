"""All state in one folder: the resolved config, the index and trained models.

Chosen by ``tiefwatch --workspace DIR`` or ``TIEFWATCH_WORKSPACE``; ``./.tiefwatch`` by default. Several
catalogues are several workspaces.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

import yaml

from tiefwatch.config import Config, read_yaml
from tiefwatch.storage import write_text_atomic

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

    def save_config(self, config: Config, sections: Collection[str] | None = None) -> None:
        """Keep ``config`` as the workspace's own settings, written as its differences from the defaults.

        ``sections``: take only these top-level sections from ``config`` and keep the rest as saved, so that a
        one-off ``--set`` given to a command that must record what it built on (``index`` records the backbone,
        embed, index and crop settings its vectors depend on) does not stick to the workspace's other settings.
        """
        if sections is not None:
            chosen = config.to_dict()
            config = Config.from_dict(self.load_config().to_dict() | {name: chosen[name] for name in sections})
        write_text_atomic(self.config_path, yaml.safe_dump(config.changes(), sort_keys=False))
