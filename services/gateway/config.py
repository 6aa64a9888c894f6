"""The gateway's configuration: a TOML file of accounts, models, limits and prices, and the
``GRAPHMESH_GATEWAY_*`` settings that point at it.

::

    [limiter]
    dsn = "postgresql://gateway@db/graphmesh"   # or GRAPHMESH_GATEWAY_LIMITER_DSN; none: this
    max_wait_s = 1.0                             # process only (one replica)

    [accounts.openai-main]
    provider = "openai"
    api_key_env = "OPENAI_API_KEY"               # or api_key_file = "/run/secrets/openai"
    organization = "org-..."
    timeout_s = 60

    [models."openai:gpt-4o-mini"]
    account = "openai-main"
    requests_per_minute = 500
    tokens_per_minute = 200000
    max_concurrent = 50

    [prices."openai:gpt-4o-mini"]                # USD per million tokens, over the defaults
    input_per_million = 0.15
    output_per_million = 0.60

API keys never appear in the file: only the name of the environment variable or the file
that holds each. They are read when the gateway opens, kept as ``SecretStr`` (so a logged
config or settings object shows ``**********``), and handed to the SDK client only.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

ProviderName = Literal["openai", "anthropic"]
PROVIDERS: tuple[ProviderName, ...] = ("openai", "anthropic")


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the setting (never a secret)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccountConfig(_Section):
    """One provider account: where its API key is (an environment variable, a file, or
    both: the variable first), and how its client connects. An ``optional`` account whose
    key is not there is left out, its models unserved (an image that ships one config for
    whichever keys a deployment has); otherwise a missing key stops the gateway."""

    provider: ProviderName
    api_key_env: str | None = None
    api_key_file: Path | None = None
    optional: bool = False
    base_url: str | None = None
    organization: str | None = None
    timeout_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _a_key_source(self) -> Self:
        if self.api_key_env is None and self.api_key_file is None:
            raise ValueError("give api_key_env or api_key_file (or both: the variable first)")
        return self

    def api_key(self, environ: Mapping[str, str]) -> SecretStr:
        """The API key, from its environment variable, else its file."""
        places = []
        if self.api_key_env is not None:
            value = environ.get(self.api_key_env, "").strip()
            if value:
                return SecretStr(value)
            places.append(f"environment variable {self.api_key_env}")
        if self.api_key_file is not None:
            where = f"file {self.api_key_file}"
            try:
                value = self.api_key_file.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                value = ""
            except OSError as error:
                raise ConfigError(f"cannot read the API key {where}: {error.strerror}") from None
            if value:
                return SecretStr(value)
            places.append(where)
        raise ConfigError(f"the API key ({' or '.join(places)}) is empty or not set")


class ModelConfig(_Section):
    """A routed model (``openai:gpt-4o-mini``): its account, the provider's id for it
    (default: the name after the prefix) and its shared limits."""

    account: str
    provider_model: str | None = None
    requests_per_minute: PositiveInt | None = None
    tokens_per_minute: PositiveInt | None = None
    max_concurrent: PositiveInt | None = None


class LimiterConfig(_Section):
    """Where the shared limits live and how they are applied (see ``limiting.py``)."""

    dsn: SecretStr | None = None
    max_wait_s: float = Field(default=1.0, ge=0)
    window_margin_s: float = Field(default=1.0, ge=0)
    lease_s: float = Field(default=60.0, gt=0)
    pool_timeout_s: float = Field(default=2.0, gt=0)
    local_grant_s: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _grants_within_the_margin(self) -> Self:
        if self.local_grant_s > self.window_margin_s:
            raise ValueError("local_grant_s must be at most window_margin_s")
        return self


class RetryConfig(_Section):
    """The gateway's retry loop (see ``retry.py``)."""

    attempts: PositiveInt = 4
    base_delay_s: float = Field(default=0.25, gt=0)
    max_delay_s: float = Field(default=8.0, gt=0)


class PriceConfig(_Section):
    """USD per million input and output tokens."""

    input_per_million: float = Field(ge=0, allow_inf_nan=False)
    output_per_million: float = Field(ge=0, allow_inf_nan=False)


class GatewayConfig(_Section):
    """The whole configuration file."""

    accounts: dict[str, AccountConfig]
    models: dict[str, ModelConfig]
    limiter: LimiterConfig = LimiterConfig()
    retry: RetryConfig = RetryConfig()
    prices: dict[str, PriceConfig] = Field(default_factory=dict)
    default_timeout_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _models_match_accounts(self) -> Self:
        for name, model in self.models.items():
            provider, _, provider_model = name.partition(":")
            if provider not in PROVIDERS or not provider_model or "\x00" in name:
                raise ValueError(f"model {name!r} must be 'openai:<model>' or 'anthropic:<model>'")
            account = self.accounts.get(model.account)
            if account is None:
                raise ValueError(f"model {name!r} names an unknown account {model.account!r}")
            if account.provider != provider:
                raise ValueError(
                    f"model {name!r} is a {provider} model but account {model.account!r} "
                    f"is {account.provider}"
                )
        return self

    @classmethod
    def load(cls, path: Path) -> GatewayConfig:
        """Read and check the TOML file at ``path``."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            return cls.model_validate(data)
        except OSError as error:
            raise ConfigError(f"cannot read gateway config {path}: {error.strerror}") from None
        except ValidationError as error:
            raise ConfigError(f"gateway config {path}: {_problems(error)}") from None
        except (tomllib.TOMLDecodeError, ValueError) as error:
            raise ConfigError(f"gateway config {path}: {error}") from None

    def provider_model(self, name: str) -> str:
        """The provider's own id of the routed model ``name``."""
        return self.models[name].provider_model or name.partition(":")[2]


class GatewaySettings(BaseSettings):
    """``GRAPHMESH_GATEWAY_CONFIG`` (the file) and ``GRAPHMESH_GATEWAY_LIMITER_DSN`` (over
    the file's ``[limiter] dsn``, kept out of the file since it may hold a password)."""

    model_config = SettingsConfigDict(env_prefix="GRAPHMESH_GATEWAY_", extra="ignore")

    config: Path
    limiter_dsn: SecretStr | None = None

    def load_config(self) -> GatewayConfig:
        """The configuration file, with the settings' overrides applied."""
        config = GatewayConfig.load(self.config)
        if self.limiter_dsn is None:
            return config
        limiter = config.limiter.model_copy(update={"dsn": self.limiter_dsn})
        return config.model_copy(update={"limiter": limiter})


def _problems(error: ValidationError) -> str:
    """Where and what, never the value: a key pasted into the wrong field stays unseen."""
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
        for problem in error.errors(include_input=False, include_url=False)
    )


def environment() -> Mapping[str, str]:
    """Where API key variables are read from (a seam for tests)."""
    return os.environ
