from __future__ import annotations

from pathlib import Path

import pytest

from tiefwatch.config import Config, ConfigError, parse_override, read_yaml
from tiefwatch.workspace import Workspace


def test_defaults_round_trip_through_yaml(tmp_path: Path) -> None:
    config = Config().merged(overrides=["search.k=7", "crop.min_confidence=0.25"])
    config.save(tmp_path / "c.yaml")
    loaded = Config.load(tmp_path / "c.yaml")
    assert loaded == config and loaded.search.k == 7 and loaded.crop.min_confidence == 0.25


def test_overrides_are_typed_and_unknown_keys_rejected() -> None:
    assert parse_override("index.type=hnsw") == {"index": {"type": "hnsw"}}
    assert Config().merged(overrides=["crop.enabled=false"]).crop.enabled is False
    with pytest.raises(ConfigError, match="unknown config key 'search.kk'"):
        Config().merged(overrides=["search.kk=3"])
    with pytest.raises(ConfigError, match="must be an integer"):
        Config().merged(overrides=["search.k=ten"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("search.k")


def test_workspace_layers_defaults_file_and_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = Workspace(tmp_path / "ws")
    workspace.save_config(Config().merged(overrides=["search.k=3", "rerank.top_k=50"]))
    user = tmp_path / "user.yaml"
    user.write_text("search:\n  k: 4\n")
    config = workspace.load_config(user, ["rerank.top_k=20"])
    assert (config.search.k, config.rerank.top_k) == (4, 20)
    monkeypatch.setenv("TIEFWATCH_WORKSPACE", str(tmp_path / "env"))
    assert Workspace().root == tmp_path / "env"


def test_workspace_keeps_its_own_settings_not_the_defaults(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "ws")
    workspace.save_config(Config().merged(overrides=["search.k=3", "backbone.weights=imagenet"]))
    assert read_yaml(workspace.config_path) == {"backbone": {"weights": "imagenet"}, "search": {"k": 3}}
    assert workspace.load_config().rerank.top_k == Config().rerank.top_k  # a later release's default reaches it
    one_off = Config().merged(overrides=["search.k=9", "backbone.weights=photo", "crop.pad=0.2"])
    workspace.save_config(one_off, sections=("backbone", "crop"))  # as `index` records what its vectors need
    config = workspace.load_config()
    assert (config.search.k, config.backbone.weights, config.crop.pad) == (3, "photo", 0.2)
    assert read_yaml(workspace.config_path) == {"crop": {"pad": 0.2}, "search": {"k": 3}}


def test_bad_yaml_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("search: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Config.load(path)


def test_saved_configs_of_earlier_versions_still_load() -> None:
    """index.pq_m was written by earlier versions into every workspace and index; it is read and dropped."""
    from tiefwatch.config import Config, ConfigError

    config = Config.from_dict({"index": {"pq_m": 64, "ivf_nprobe": 8}})
    assert config.index.ivf_nprobe == 8 and not hasattr(config.index, "pq_m")
    with pytest.raises(ConfigError, match="unknown config key 'index.pq_mm'"):
        Config.from_dict({"index": {"pq_mm": 64}})
