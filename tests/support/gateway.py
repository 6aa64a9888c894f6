"""Gateway test helpers: providers of every kind (the in-memory twin, and the real SDK
adapters against the loopback fake provider) behind one constructor, and a config writer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from graphmesh.services.gateway.anthropic_provider import AnthropicProvider
from graphmesh.services.gateway.memory import MemoryProvider
from graphmesh.services.gateway.openai_provider import OpenAIProvider
from graphmesh.services.gateway.provider import Provider
from support.fake_provider import FakeProvider

API_KEY = "sk-test-0123456789abcdefSECRET"
PROVIDER_KINDS = ("memory", "openai", "anthropic")
SDK_KINDS = ("openai", "anthropic")


def sdk_provider(
    kind: str, fake: FakeProvider, *, key: str = API_KEY, timeout: float = 10
) -> Provider:
    """The real adapter of ``kind`` pointed at ``fake``."""
    if kind == "openai":
        return OpenAIProvider(api_key=SecretStr(key), base_url=fake.openai_url, timeout=timeout)
    return AnthropicProvider(api_key=SecretStr(key), base_url=fake.anthropic_url, timeout=timeout)


@asynccontextmanager
async def open_provider(kind: str, fake: FakeProvider | None) -> AsyncIterator[Provider]:
    """A provider of ``kind`` (``memory``, ``openai``, ``anthropic``), closed on exit."""
    if kind == "memory":
        provider: Provider = MemoryProvider()
    else:
        assert fake is not None
        provider = sdk_provider(kind, fake)
    try:
        yield provider
    finally:
        await provider.aclose()


def write_config(
    path: Path,
    fake: FakeProvider,
    *,
    dsn: str | None,
    anthropic: FakeProvider | None = None,
    local_grant_s: float = 0.0,
    **model: Any,
) -> Path:
    """A gateway config with one account per provider on ``fake`` (the Anthropic one on
    ``anthropic`` if given) and the models ``openai:gpt-test``, ``openai:embed-test`` and
    ``anthropic:claude-test``, each with the limits given in ``model``; the key comes from
    ``TEST_PROVIDER_KEY``; ``local_grant_s`` leases rate grants in blocks (``lease.py``)."""
    limits = "".join(f"{name} = {value}\n" for name, value in model.items())
    limiter = f'dsn = "{dsn}"\n' if dsn else ""
    path.write_text(
        f"""
default_timeout_s = 30

[limiter]
{limiter}max_wait_s = 0.5
local_grant_s = {local_grant_s}

[retry]
attempts = 3
base_delay_s = 0.01
max_delay_s = 0.05

[accounts.oa]
provider = "openai"
api_key_env = "TEST_PROVIDER_KEY"
base_url = "{fake.openai_url}"
timeout_s = 10

[accounts.an]
provider = "anthropic"
api_key_env = "TEST_PROVIDER_KEY"
base_url = "{(anthropic or fake).anthropic_url}"
timeout_s = 10

[models."openai:gpt-test"]
account = "oa"
{limits}
[models."openai:embed-test"]
account = "oa"

[models."anthropic:claude-test"]
account = "an"
{limits}""",
        encoding="utf-8",
    )
    return path
