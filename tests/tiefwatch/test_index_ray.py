"""Indexing on Ray writes the index a local run writes (``tiefwatch.distributed``); the Ray runs are skipped
without Ray Data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tiefwatch.index import CatalogIndex, index_catalog
from tiefwatch.workspace import Workspace


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray of two CPUs (as CI has), started once for the module: starting one takes seconds."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_index_equals_the_local_index(
    tmp_path: Path, catalog_dir: Path, fast_overrides: list[str], local_ray: None
) -> None:
    (catalog_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    # Two simulated views a photo: the views' random draws (seeded by each file's hash) must match too.
    overrides = [*fast_overrides, "index.views=2", "embed.batch_size=2"]
    local_ws, ray_ws = Workspace(tmp_path / "local"), Workspace(tmp_path / "ray")
    local = index_catalog(catalog_dir, local_ws, local_ws.load_config(overrides=overrides))
    remote = index_catalog(catalog_dir, ray_ws, ray_ws.load_config(overrides=overrides), ray_address="")

    assert (local.total, local.added, local.skipped) == (6, 6, ["broken.jpg"])
    assert (remote.total, remote.added, remote.skipped) == (local.total, local.added, local.skipped)
    assert remote.skip_reasons == local.skip_reasons
    assert remote.with_views == local.with_views
    a, b = CatalogIndex.load(local_ws.index_path), CatalogIndex.load(ray_ws.index_path)
    assert [e.path for e in b.entries] == [e.path for e in a.entries]
    assert [(e.sha1, e.box) for e in b.entries] == [(e.sha1, e.box) for e in a.entries]
    assert b.signature == a.signature
    np.testing.assert_allclose(b.vectors, a.vectors, atol=1e-5)
    np.testing.assert_allclose(b.colours, a.colours, atol=1e-5)
    assert b.colours.shape[1] > 0  # colour descriptors travelled beside the vectors

    # Incremental on Ray too: nothing changed, nothing embedded.
    again = index_catalog(catalog_dir, ray_ws, ray_ws.load_config(overrides=overrides), ray_address="")
    assert (again.added, again.updated, again.unchanged) == (0, 0, 6)


def test_pool_takes_one_actor_per_gpu_else_per_core() -> None:
    from tiefwatch.distributed import actor_resources

    assert actor_resources({"CPU": 16.0, "GPU": 2.0}) == (2, {"num_cpus": 8, "num_gpus": 1})
    assert actor_resources({"CPU": 2.0}) == (2, {"num_cpus": 1})
    assert actor_resources({}) == (1, {"num_cpus": 1})


def test_without_ray_the_flag_is_a_one_line_error(
    tmp_path: Path, catalog_dir: Path, fast_overrides: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from tiefwatch.distributed import RayUnavailableError

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as where the extra is not installed
    workspace = Workspace(tmp_path / "ws")
    with pytest.raises(RayUnavailableError, match=r"pip install 'tiefwatch\[ray\]'"):
        index_catalog(catalog_dir, workspace, workspace.load_config(overrides=fast_overrides), ray_address="")
    assert not workspace.index_path.exists() and not workspace.config_path.exists()


def test_cli_ray_flag_takes_an_optional_address() -> None:
    from tiefwatch.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["index", "cat"]).ray is None
    assert parser.parse_args(["index", "cat", "--ray"]).ray == ""
    assert parser.parse_args(["index", "cat", "--ray", "head:6379"]).ray == "head:6379"


def test_a_gpu_actor_preparing_in_threads_gives_the_local_vectors(
    tmp_path: Path, catalog_dir: Path, fast_overrides: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GPU actor runs a local run's threaded loop on its batches: checked here on the CPU, without Ray."""
    from tiefwatch.distributed import EmbedActor, unpack
    from tiefwatch.index import file_sha1

    monkeypatch.setenv("TIEFWATCH_THREADS", "")  # the actor sets it; restored afterwards
    workspace = Workspace(tmp_path / "ws")
    config = workspace.load_config(overrides=[*fast_overrides, "index.views=2", "embed.batch_size=2"])
    index_catalog(catalog_dir, workspace, config)
    local = CatalogIndex.load(workspace.index_path)

    paths = sorted(catalog_dir.rglob("*.png"))
    items = [(p.relative_to(catalog_dir).as_posix(), p, 0, 0, file_sha1(p), False) for p in paths]
    columns = list(zip(*items, strict=True))
    batch = {
        name: np.array(values, dtype=object)
        for name, values in zip(("rel", "path", "size", "mtime", "sha1", "existed"), columns, strict=True)
    }
    batch["n"] = np.arange(len(items))
    actor = EmbedActor(str(workspace.root), config.to_dict(), threads=2, gpu=True)
    assert actor.pipeline.config.embed.decode_workers == 2
    chunk, outcomes = unpack(actor(batch), items, actor.pipeline.embedder.dim)
    by_path = {item[0]: outcome for item, outcome in zip(chunk, outcomes, strict=True)}
    for row, entry in enumerate(local.entries):
        np.testing.assert_allclose(by_path[entry.path].vector, local.vectors[row], atol=1e-5)
        assert by_path[entry.path].box == entry.box
