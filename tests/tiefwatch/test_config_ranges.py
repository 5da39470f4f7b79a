"""Settings that would silently do nothing, or fail deep inside FAISS, are refused where they are given."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiefwatch.config import Config, ConfigError
from tiefwatch.images import IMAGE_EXTENSIONS, list_images


@pytest.mark.parametrize("override", ["search.k=0", "search.k=-2", "rerank.top_k=0", "embed.batch_size=0"])
def test_counts_below_one_are_refused_with_the_key_named(override: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{key} must be at least 1, got -?\d+$"):
        Config().merged(overrides=[override])
    with pytest.raises(ConfigError, match=key):
        Config.from_dict({key.split(".")[0]: {key.split(".")[1]: 0}})


def test_one_is_enough() -> None:
    assert Config().merged(overrides=["search.k=1", "embed.batch_size=1"]).search.k == 1


def test_the_catalogue_takes_every_format_the_reader_reads(tmp_path: Path) -> None:
    """HEIC from iPhones, AVIF and TIFF are indexed by default, not silently left out of the listing."""
    extensions = Config().index.extensions
    assert set(IMAGE_EXTENSIONS) <= set(extensions)
    for suffix in (".heic", ".HEIF", ".avif", ".tif", ".tiff"):
        (tmp_path / f"photo{suffix}").write_bytes(b"x")
    assert len(list_images(tmp_path, extensions)) == 5
