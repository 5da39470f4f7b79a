"""Shared fixtures: small images made in code, a throw-away workspace, a fast config."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.helpers import draw_watch


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    """Six small catalogue photos, one in a subfolder, plus a text file that must be ignored."""
    from tiefwatch.images import save_image

    root = tmp_path / "catalog"
    for i in range(6):
        folder = root / "sub" if i == 5 else root
        save_image(folder / f"w{i}.png", draw_watch(i))
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def fast_overrides() -> list[str]:
    """A small input size keeps backbone tests quick on two cores; behaviour is the same. Torch avoids an ONNX
    export per throw-away workspace (the engines' agreement has its own test). Catalogue views multiply the
    embedding work; ``test_index`` covers them."""
    return ["backbone.image_size=96", "embed.batch_size=8", "embed.engine=torch", "index.views=0"]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails loudly, as it would on a machine without network."""

    def refuse(*args, **kwargs):
        raise OSError("network access blocked in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
