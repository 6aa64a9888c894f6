"""The gateway's config file and settings: checked on load with errors that name the
setting, API keys read from env or files and never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphmesh.prices import Price, PriceTable
from graphmesh.services.gateway.config import ConfigError, GatewayConfig, GatewaySettings
from graphmesh.services.gateway.types import Usage

KEY = "sk-config-test-SECRET-123456"
VALID = """
[limiter]
dsn = "postgresql://gw:hunter2@db/limits"

[accounts.main]
provider = "openai"
api_key_env = "GW_TEST_KEY"
organization = "org-1"

[accounts.claude]
provider = "anthropic"
api_key_file = "{key_file}"

[models."openai:gpt-4o-mini"]
account = "main"
requests_per_minute = 500
tokens_per_minute = 200000
max_concurrent = 8

[models."anthropic:sonnet"]
account = "claude"
provider_model = "claude-sonnet-4-0"

[prices."openai:gpt-4o-mini"]
input_per_million = 1.0
output_per_million = 2.0
"""


def write(tmp_path: Path, text: str) -> Path:
    key_file = tmp_path / "anthropic.key"
    key_file.write_text(f"{KEY}\n", encoding="utf-8")
    path = tmp_path / "gateway.toml"
    path.write_text(text.replace("{key_file}", str(key_file)), encoding="utf-8")
    return path


def test_a_valid_file_loads(tmp_path: Path) -> None:
    config = GatewayConfig.load(write(tmp_path, VALID))
    assert config.provider_model("openai:gpt-4o-mini") == "gpt-4o-mini"
    assert config.provider_model("anthropic:sonnet") == "claude-sonnet-4-0"
    assert config.models["openai:gpt-4o-mini"].max_concurrent == 8
    assert config.retry.attempts == 4


def test_keys_come_from_env_or_file_and_never_show(tmp_path: Path) -> None:
    config = GatewayConfig.load(write(tmp_path, VALID))
    from_env = config.accounts["main"].api_key({"GW_TEST_KEY": KEY})
    from_file = config.accounts["claude"].api_key({})
    assert from_env.get_secret_value() == from_file.get_secret_value() == KEY
    for shown in (repr(config), str(config), repr(from_env), str(from_file)):
        assert KEY not in shown
    assert "hunter2" not in repr(config)


def test_a_missing_key_names_where_it_was_looked_for(tmp_path: Path) -> None:
    config = GatewayConfig.load(write(tmp_path, VALID))
    with pytest.raises(ConfigError, match="GW_TEST_KEY"):
        config.accounts["main"].api_key({})
    (tmp_path / "anthropic.key").unlink()
    with pytest.raises(ConfigError, match=r"anthropic\.key"):
        config.accounts["claude"].api_key({})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('account = "main"', 'account = "nobody"'), "unknown account 'nobody'"),
        (('"anthropic:sonnet"', '"openai:sonnet"'), "account 'claude' is anthropic"),
        (('"anthropic:sonnet"', '"hf:sonnet"'), "must be 'openai:<model>'"),
        (('"anthropic:sonnet"', '"anthropic:"'), "must be 'openai:<model>'"),
        (("requests_per_minute = 500", "requests_per_minute = 0"), "requests_per_minute"),
        (('api_key_env = "GW_TEST_KEY"', 'api_key = "sk-inline"'), "api_key"),
        (('api_key_env = "GW_TEST_KEY"', "optional = true"), "api_key_env or api_key_file"),
        (("output_per_million = 2.0", "output_per_million = -2.0"), "output_per_million"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        GatewayConfig.load(write(tmp_path, VALID.replace(*change)))
    assert "sk-inline" not in str(raised.value)  # a key pasted inline is never echoed


def test_unreadable_or_malformed_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read gateway config"):
        GatewayConfig.load(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"gateway\.toml"):
        GatewayConfig.load(write(tmp_path, "[accounts\n"))


def test_settings_point_at_the_file_and_override_the_dsn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, VALID)
    monkeypatch.setenv("GRAPHMESH_GATEWAY_CONFIG", str(path))
    monkeypatch.setenv("GRAPHMESH_GATEWAY_LIMITER_DSN", "postgresql://other/db")
    settings = GatewaySettings()
    config = settings.load_config()
    assert config.limiter.dsn is not None
    assert config.limiter.dsn.get_secret_value() == "postgresql://other/db"
    assert "other" not in repr(settings)


def test_prices_default_and_override() -> None:
    table = PriceTable.default()
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000)
    assert table.cost("openai:gpt-4o-mini", usage) == pytest.approx(0.15 + 0.30)
    assert table.cost("openai:unknown", usage) is None
    cheaper = table.overridden(
        {"openai:gpt-4o-mini": Price(input_per_million=1, output_per_million=2)}
    )
    assert cheaper.cost("openai:gpt-4o-mini", usage) == pytest.approx(2.0)


def test_the_dev_mode_config_loads_for_the_keys_set(tmp_path: Path) -> None:
    from graphmesh.dev import gateway_config

    def tmp_config(text: str) -> Path:
        path = tmp_path / "dev-gateway.toml"
        path.write_text(text, encoding="utf-8")
        return path

    config = GatewayConfig.load(tmp_config(gateway_config(["OPENAI_API_KEY", "ANTHROPIC_API_KEY"])))
    assert "openai:gpt-4o-mini" in config.models
    assert "anthropic:claude-sonnet-4-0" in config.models
    assert config.accounts["openai"].api_key_env == "OPENAI_API_KEY"
    only_claude = GatewayConfig.load(tmp_config(gateway_config(["ANTHROPIC_API_KEY"])))
    assert {name.partition(":")[0] for name in only_claude.models} == {"anthropic"}


OPTIONAL = """
[accounts.oa]
provider = "openai"
api_key_env = "GW_OA_KEY"
api_key_file = "{key_file}"
optional = true

[accounts.an]
provider = "anthropic"
api_key_env = "GW_AN_KEY"
optional = {optional}

[models."openai:gpt-test"]
account = "oa"

[models."anthropic:claude-test"]
account = "an"
"""


async def test_a_key_is_read_from_env_then_file_and_optional_accounts_may_lack_one(
    tmp_path: Path,
) -> None:
    from graphmesh.services.gateway import open_gateway

    key_file = tmp_path / "openai.key"
    key_file.write_text(f"{KEY}\n", encoding="utf-8")
    path = tmp_path / "gateway.toml"
    path.write_text(OPTIONAL.format(key_file=key_file, optional="true"), encoding="utf-8")
    config = GatewayConfig.load(path)
    assert config.accounts["oa"].api_key({}).get_secret_value() == KEY  # the file
    assert config.accounts["oa"].api_key({"GW_OA_KEY": "env-key"}).get_secret_value() == "env-key"
    async with open_gateway(config, environ={}) as gateway:
        assert gateway.models() == ["openai:gpt-test"]  # anthropic has no key: left out
    path.write_text(OPTIONAL.format(key_file=key_file, optional="false"), encoding="utf-8")
    with pytest.raises(ConfigError, match="GW_AN_KEY") as refused:
        async with open_gateway(GatewayConfig.load(path), environ={}):
            pass
    assert KEY not in str(refused.value)


def test_the_image_config_loads_and_serves_whichever_keys_are_set() -> None:
    image = Path(__file__).resolve().parents[2] / "deploy" / "config" / "gateway.toml"
    config = GatewayConfig.load(image)
    assert all(account.optional for account in config.accounts.values())
    assert {name.partition(":")[0] for name in config.models} == {"openai", "anthropic"}
