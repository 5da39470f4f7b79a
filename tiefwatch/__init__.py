"""tiefwatch: find the catalogue watches most similar to a photo — crop, embed, FAISS, re-rank.

Every CLI verb is a function here too, imported lazily so ``tiefwatch --help`` does not load torch::

    import tiefwatch
    tiefwatch.index_catalog("catalog/", workspace="ws")
    results = tiefwatch.search(["photo.jpg"], workspace="ws", k=5)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "index_catalog": "tiefwatch.index",
    "search": "tiefwatch.search",
    "run_demo": "tiefwatch.demo",
    "Config": "tiefwatch.config",
    "Workspace": "tiefwatch.workspace",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'tiefwatch' has no attribute {name!r}")
