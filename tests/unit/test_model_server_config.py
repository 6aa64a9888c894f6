"""The model server's config file: the example loads, bad values name file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphmesh.model_server.backends.base import LoadOptions
from graphmesh.model_server.service.config import ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).parents[2] / "examples" / "model-server.toml"


def test_the_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    assert [m.name for m in config.models] == ["hf:all-MiniLM-L6-v2", "hf:SmolLM2-135M-Instruct"]
    assert config.batching_for("hf:all-MiniLM-L6-v2").max_batch_size == 64
    assert config.batching_for("hf:SmolLM2-135M-Instruct").concurrency == 2
    assert config.batching_for("hf:other").max_batch_size == 32
    assert config.models[0].load_options() == LoadOptions(device="auto", dtype="auto")
    assert config.limits.wire().max_texts == 256


def test_defaults_need_no_file() -> None:
    config = parse_config({})
    assert config.listen == "127.0.0.1:50061" and config.models == []


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"models": [{"name": "hf:m", "device": "gpu"}]}, "models.0"),
        ({"models": [{"name": "hf:m", "dtype": "int4"}]}, "models.0"),
        ({"models": [{"name": "openai:gpt"}]}, "models.0.name"),
        ({"models": [{"name": "hf:m", "batching": {"max_batch_size": 0}}]}, "max_batch_size"),
        ({"batching": {"max_queue_delay_ms": -1}}, "batching.max_queue_delay_ms"),
        ({"listen": "nowhere"}, "listen"),
        ({"models": [{"name": "hf:m"}, {"name": "hf:m"}]}, "more than once"),
        ({"surprise": 1}, "surprise"),
        ({"limits": {"max_texts": 0}}, "limits.max_texts"),
    ],
)
def test_bad_values_name_the_field(data: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        parse_config(data)


def test_unreadable_and_malformed_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("listen = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.toml is not valid TOML"):
        load_config(broken)
