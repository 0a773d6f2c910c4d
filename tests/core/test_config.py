from pathlib import Path

import pytest

from tasks.core.config import ConfigError, config_hash, load_config
from tasks.ingest.config import IngestConfig
from tasks.pipeline.config import PipelineConfig


def test_quick_profile_loads_by_name() -> None:
    config = load_config("quick", PipelineConfig)
    assert isinstance(config, PipelineConfig)
    assert config.profile == "quick"
    assert config.datasets["train"].kind == "csv"


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("ingest:\n  symprecc: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, PipelineConfig)
    assert str(path) in str(info.value)
    assert "ingest.symprecc" in str(info.value)


def test_bad_value_names_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("ingest:\n  symprec: -1\n")
    with pytest.raises(ConfigError, match=r"ingest\.symprec"):
        load_config(path, PipelineConfig)


def test_source_kind_requires_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("datasets:\n  train:\n    kind: csv\n")
    with pytest.raises(ConfigError, match="needs a 'path'"):
        load_config(path, PipelineConfig)


def test_overrides_and_hash() -> None:
    base = load_config("quick", PipelineConfig)
    tweaked = load_config("quick", PipelineConfig, overrides={"ingest.symprec": 0.01})
    assert tweaked.ingest.symprec == 0.01
    assert config_hash(base) != config_hash(tweaked)
    assert config_hash(base) == config_hash(load_config("quick", PipelineConfig))


def test_missing_profile_is_clear() -> None:
    with pytest.raises(ConfigError, match="neither a file nor a profile"):
        load_config("no-such-profile", PipelineConfig)


def test_assignment_is_validated() -> None:
    config = IngestConfig()
    with pytest.raises(ValueError):
        config.symprec = 0
