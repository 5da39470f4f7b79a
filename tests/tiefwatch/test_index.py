from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import draw_watch
from tiefwatch.images import save_image
from tiefwatch.index import CatalogIndex, CatalogIndexError, index_catalog
from tiefwatch.workspace import Workspace


def _paths(workspace: Workspace) -> list[str]:
    return [e.path for e in CatalogIndex.load(workspace.index_path).entries]


def test_index_is_incremental(tmp_path: Path, catalog_dir: Path, fast_overrides: list[str]) -> None:
    workspace = Workspace(tmp_path / "ws")
    config = workspace.load_config(overrides=fast_overrides)
    first = index_catalog(catalog_dir, workspace, config)
    assert (first.total, first.added, first.skipped) == (6, 6, [])
    assert _paths(workspace) == ["sub/w5.png", "w0.png", "w1.png", "w2.png", "w3.png", "w4.png"]
    before = CatalogIndex.load(workspace.index_path)

    again = index_catalog(catalog_dir, workspace, config)
    assert (again.added, again.updated, again.unchanged, again.removed) == (0, 0, 6, 0)

    (catalog_dir / "w0.png").unlink()
    save_image(catalog_dir / "w1.png", draw_watch(11))  # content changed
    save_image(catalog_dir / "new.png", draw_watch(12))
    os.utime(catalog_dir / "w2.png", (1, 1))  # touched only: content hash says unchanged
    third = index_catalog(catalog_dir, workspace, config)
    assert (third.added, third.updated, third.unchanged, third.removed, third.total) == (1, 1, 4, 1, 6)
    after = CatalogIndex.load(workspace.index_path)
    assert "w0.png" not in _paths(workspace) and "new.png" in _paths(workspace)
    old, new = before.entries, after.entries
    old_w1 = before.vectors[[e.path for e in old].index("w1.png")]
    new_w1 = after.vectors[[e.path for e in new].index("w1.png")]
    assert float(old_w1 @ new_w1) < 0.999  # re-embedded
    old_w3 = before.vectors[[e.path for e in old].index("w3.png")]
    np.testing.assert_array_equal(old_w3, after.vectors[[e.path for e in new].index("w3.png")])


def test_corrupt_and_non_image_files_are_skipped_and_counted(
    tmp_path: Path, catalog_dir: Path, fast_overrides: list[str]
) -> None:
    (catalog_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (catalog_dir / "empty.png").write_bytes(b"")
    workspace = Workspace(tmp_path / "ws")
    summary = index_catalog(catalog_dir, workspace, workspace.load_config(overrides=fast_overrides))
    assert summary.total == 6
    assert sorted(summary.skipped) == ["broken.jpg", "empty.png"]
    assert summary.as_dict()["skipped_count"] == 2


def test_search_finds_the_indexed_image_itself(tmp_path: Path, catalog_dir: Path, fast_overrides: list[str]) -> None:
    from tiefwatch.search import search

    workspace = Workspace(tmp_path / "ws")
    # One crop a query, one vector a photo: the query is then framed and embedded exactly as its catalogue entry.
    config = workspace.load_config(overrides=[*fast_overrides, "search.extra_crop_scales=[]"])
    index_catalog(catalog_dir, workspace, config)
    results = search([catalog_dir / "w3.png", catalog_dir / "sub"], workspace=workspace, k=3, config=config)
    assert [Path(r.results[0].path).name for r in results] == ["w3.png", "w5.png"]
    assert results[0].results[0].score == pytest.approx(1.0, abs=1e-4)
    assert [hit.rank for hit in results[0].results] == [1, 2, 3]


def test_interrupted_save_keeps_the_previous_index(
    tmp_path: Path, catalog_dir: Path, fast_overrides: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = Workspace(tmp_path / "ws")
    config = workspace.load_config(overrides=fast_overrides)
    index_catalog(catalog_dir, workspace, config)
    save_image(catalog_dir / "extra.png", draw_watch(20))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        index_catalog(catalog_dir, workspace, config)
    monkeypatch.undo()
    assert len(CatalogIndex.load(workspace.index_path)) == 6
    assert not [p for p in workspace.index_path.parent.iterdir() if p.name.endswith(".tmp")]


def test_mismatched_settings_are_refused(tmp_path: Path, catalog_dir: Path, fast_overrides: list[str]) -> None:
    from tiefwatch.search import search

    workspace = Workspace(tmp_path / "ws")
    index_catalog(catalog_dir, workspace, workspace.load_config(overrides=fast_overrides))
    other = workspace.load_config(overrides=[*fast_overrides, "backbone.pooling=gap"])
    with pytest.raises(CatalogIndexError, match="pooling: index has 'gem', now 'gap'"):
        search([catalog_dir / "w0.png"], workspace=workspace, config=other)
    summary = index_catalog(catalog_dir, workspace, other)
    assert summary.rebuilt_reason == "embedding settings changed" and summary.added == 6


def test_garbage_index_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "catalog.npz"
    path.write_bytes(b"not an index")
    with pytest.raises(CatalogIndexError, match="unreadable index"):
        CatalogIndex.load(path)
    with pytest.raises(CatalogIndexError, match="run `tiefwatch index"):
        CatalogIndex.load(tmp_path / "missing.npz")


def test_a_flat_index_reloads_exact_from_its_vectors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flat index is filled again from the saved vectors instead of deserialising FAISS's copy of them (60 ms of a
    fresh search process); its answers and entries are those of the index that was saved."""
    from tiefwatch import vector_index
    from tiefwatch.config import Config
    from tiefwatch.index import Entry

    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(50, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    entries = [
        Entry(f"d/{i}.jpg", 100 + i, 10**18 + i, f"{i:040x}", (1.5, 2.0, 3.25, 4.0) if i % 2 else None)
        for i in range(50)
    ]
    index = CatalogIndex(tmp_path, entries, vectors, {"s": 1}, Config())
    index.save(tmp_path / "i.npz")
    expected = index.search(vectors[:8], 5)

    def not_read(*args, **kwargs):
        raise AssertionError("a flat index must not be deserialised")

    monkeypatch.setattr(vector_index, "deserialize", not_read)
    loaded = CatalogIndex.load(tmp_path / "i.npz")
    assert vector_index.index_kind(loaded.faiss_index) == "flat"
    assert loaded.entries == entries
    assert all(type(e.size) is int and type(e.mtime_ns) is int and type(e.path) is str for e in loaded.entries)
    scores, rows = loaded.search(vectors[:8], 5)
    np.testing.assert_array_equal(rows, expected[1])
    np.testing.assert_allclose(scores, expected[0], atol=1e-6)
    np.testing.assert_array_equal(rows[:, 0], np.arange(8))


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_index_types_save_and_reload(tmp_path: Path, kind: str) -> None:
    from tiefwatch.config import Config
    from tiefwatch.index import Entry

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(400, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    config = Config().merged(overrides=[f"index.type={kind}", "index.pca_dim=32"])
    entries = [Entry(f"{i}.jpg", 1, 1, "x") for i in range(400)]
    index = CatalogIndex(tmp_path, entries, vectors, {"s": 1}, config)
    index.save(tmp_path / "i.npz")
    loaded = CatalogIndex.load(tmp_path / "i.npz")
    _, rows = loaded.search(vectors[:50], 5)
    hit_rate = float(np.mean(rows[:, 0] == np.arange(50)))
    assert hit_rate >= 0.9, f"{kind} finds itself only {hit_rate:.0%} of the time"


def test_catalogue_views_shape_the_vectors_reproducibly_and_rebuild_when_changed(
    tmp_path: Path, catalog_dir: Path, fast_overrides: list[str]
) -> None:
    from tiefwatch.search import search

    plain_ws, views_ws = Workspace(tmp_path / "plain"), Workspace(tmp_path / "views")
    with_views = [*fast_overrides, "index.views=2"]
    index_catalog(catalog_dir, plain_ws, plain_ws.load_config(overrides=fast_overrides))
    summary = index_catalog(catalog_dir, views_ws, views_ws.load_config(overrides=with_views))
    assert (summary.catalog_views, summary.with_views) == (2, 6)
    plain, viewed = CatalogIndex.load(plain_ws.index_path), CatalogIndex.load(views_ws.index_path)
    assert (plain.signature["catalog_views"], viewed.signature["catalog_views"]) == (0, 2)
    np.testing.assert_allclose(np.linalg.norm(viewed.vectors, axis=1), 1.0, atol=1e-5)
    own = np.sum(plain.vectors * viewed.vectors, axis=1)
    assert np.all(own < 0.999)  # each vector moved towards its photo-like views...
    assert np.all(own > (plain.vectors @ viewed.vectors.T).max(axis=0) - 1e-6)  # ...and is still nearest its photo

    again_ws = Workspace(tmp_path / "again")  # the views are seeded by the file, so a rebuild repeats them
    index_catalog(catalog_dir, again_ws, again_ws.load_config(overrides=with_views))
    np.testing.assert_allclose(CatalogIndex.load(again_ws.index_path).vectors, viewed.vectors, atol=1e-5)

    results = search([catalog_dir / "w3.png"], workspace=views_ws, k=3, config=views_ws.load_config())
    assert Path(results[0].results[0].path).name == "w3.png"
    # Queries do not depend on the catalogue's views: another setting still searches this index.
    other = views_ws.load_config(overrides=["index.views=0"])
    assert Path(search([catalog_dir / "w3.png"], workspace=views_ws, k=1, config=other)[0].results[0].path).name == (
        "w3.png"
    )
    rebuilt = index_catalog(catalog_dir, views_ws, views_ws.load_config(overrides=fast_overrides))
    assert rebuilt.rebuilt_reason == "embedding settings changed" and rebuilt.added == 6


def test_colour_descriptors_are_kept_beside_the_vectors(
    tmp_path: Path, catalog_dir: Path, fast_overrides: list[str]
) -> None:
    import json

    from ranking.colour import COLOUR_DIM, colour_descriptor
    from ranking.features import backbone_pixels
    from tiefwatch.images import load_image
    from tiefwatch.pipeline import Pipeline

    workspace = Workspace(tmp_path / "ws")
    config = workspace.load_config(overrides=fast_overrides)
    index_catalog(catalog_dir, workspace, config)
    index = CatalogIndex.load(workspace.index_path)
    assert index.colours.shape == (6, COLOUR_DIM) and index.signature["catalog_colour"] == 1
    # each row describes its own photo as framed for the backbone (the cut-out crop, light-normalised)
    pipeline = Pipeline.from_config(config)
    row = [e.path for e in index.entries].index("w2.png")
    crop, _ = pipeline.frame_without_model(load_image(catalog_dir / "w2.png"))
    expected = colour_descriptor(backbone_pixels(crop, 96, config.backbone.light_norm))
    np.testing.assert_allclose(index.colours[row], expected, atol=1e-6)
    assert len({tuple(np.round(c, 4)) for c in index.colours}) == 6  # six drawn watches, six descriptions

    save_image(catalog_dir / "new.png", draw_watch(12))  # an update keeps the others' colours as they were
    index_catalog(catalog_dir, workspace, config)
    updated = CatalogIndex.load(workspace.index_path)
    same = [e.path for e in updated.entries].index("w2.png")
    np.testing.assert_array_equal(updated.colours[same], index.colours[row])

    # an index written before colour descriptors still loads, with none, and still answers searches
    with np.load(workspace.index_path) as data:
        arrays = {key: data[key] for key in data.files if key != "colours"}
    meta = json.loads(bytes(arrays["meta"]).decode())
    del meta["signature"]["catalog_colour"]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(workspace.index_path, **arrays)
    old = CatalogIndex.load(workspace.index_path)
    assert old.colours.shape == (7, 0) and meta["format"] == 1
    from tiefwatch.search import search

    found = search([catalog_dir / "w2.png"], workspace=workspace, config=config)[0]
    assert found.error is None and found.results[0].path.endswith("w2.png")

    off = Workspace(tmp_path / "off")
    index_catalog(catalog_dir, off, off.load_config(overrides=[*fast_overrides, "index.colour=false"]))
    bare = CatalogIndex.load(off.index_path)
    assert bare.colours.shape == (7, 0) and bare.signature["catalog_colour"] is None
