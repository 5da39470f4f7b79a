"""tiefwatch: find the catalogue watches most similar to a photo — crop, embed, FAISS, re-rank.

Every CLI verb is a function here too, imported lazily so ``tiefwatch --help`` does not load torch::

    import tiefwatch
    tiefwatch.index_catalog("catalog/", workspace="ws")
    results = tiefwatch.search(["photo.jpg"], workspace="ws", k=5)   # loads the models, searches, any number of times

    searcher = tiefwatch.Searcher("ws")                               # load once...
    for result in searcher.search_paths(["a.jpg", "b.jpg"], k=5):     # ...answer many photos
        print(result.as_dict())

``tiefwatch.search`` is also the name of the module that defines it; that module is callable (``tiefwatch.search``
always calls the search function, whichever of the two the name holds). docs/api.md lists every function.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "index_catalog": "tiefwatch.index",
    "search": "tiefwatch.search",
    "Searcher": "tiefwatch.search",
    "QueryResult": "tiefwatch.search",
    "crop_images": "tiefwatch.crop",
    "train_bbox": "tiefwatch.crop",
    "evaluate": "tiefwatch.evaluation",
    "train_triplets": "tiefwatch.train_ranking",
    "train_invariance": "tiefwatch.train_ranking",
    "train_backbone_tail": "tiefwatch.train_backbone",
    "serve_labelling": "tiefwatch.label",
    "create_app": "tiefwatch.web.app",
    "serve": "tiefwatch.web.app",
    "run_demo": "tiefwatch.demo",
    "Config": "tiefwatch.config",
    "Workspace": "tiefwatch.workspace",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name == "search":
        # The module, not the function: importing tiefwatch.search binds the module under this name anyway, so
        # handing out the (callable) module keeps ``tiefwatch.search`` one object whatever was imported first.
        return import_module("tiefwatch.search")
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'tiefwatch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
