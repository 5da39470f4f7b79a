"""One small indexed workspace for all the web tests (indexing once keeps them to seconds)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import draw_watch
from tiefwatch.config import Config
from tiefwatch.images import save_image
from tiefwatch.workspace import Workspace

FAST = ["backbone.image_size=96", "embed.batch_size=8", "embed.engine=torch", "index.views=0"]
# one embedding per query and no zoomed second look: the web layer is tested here, not the search's refinements
FAST_SEARCH = ["search.extra_crop_scales=[]", "search.zoom_below=0"]


@pytest.fixture(scope="session")
def served_workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Config, Path]:
    """Six drawn watches (one in a subfolder) indexed with the fast test settings; returns the catalogue too."""
    from tiefwatch.index import index_catalog

    root = tmp_path_factory.mktemp("served")
    catalog = root / "catalog"
    for i in range(6):
        save_image((catalog / "sub" if i == 5 else catalog) / f"w{i}.png", draw_watch(i))
    workspace = Workspace(root / "ws")
    config = workspace.load_config(overrides=FAST)
    index_catalog(catalog, workspace, config)
    workspace.save_config(workspace.load_config(overrides=FAST_SEARCH))  # so that every Searcher of it is quick
    return workspace, workspace.load_config(), catalog


@pytest.fixture(scope="session")
def searcher(served_workspace: tuple[Workspace, Config, Path]):
    from tiefwatch.search import Searcher

    workspace, config, _ = served_workspace
    return Searcher(workspace, config)


@pytest.fixture(scope="session")
def png_bytes() -> Callable[..., bytes]:
    """A drawn watch, encoded as an upload would be."""

    def encode(seed: int, size: int = 96, fmt: str = "PNG") -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(draw_watch(seed, size)).save(buffer, fmt)
        return buffer.getvalue()

    return encode


@pytest.fixture
def client(served_workspace: tuple[Workspace, Config, Path], searcher) -> Iterator:
    from fastapi.testclient import TestClient

    from tiefwatch.web.app import create_app

    workspace, config, _ = served_workspace
    with TestClient(create_app(workspace, config, searcher=searcher), base_url="http://127.0.0.1") as test_client:
        yield test_client
