"""The model server's TOML config file, validated by pydantic; errors name file and field.

See ``docs/model-server.md`` for every key; ``examples/model-server.toml`` is a full example.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from graphmesh.model_server.backends.base import DEVICES_HELP, DTYPES, LoadOptions
from graphmesh.services.kit.model_wire import WireLimits
from graphmesh.services.kit.server import TlsFiles


class ConfigError(ValueError):
    """The config file is missing, not TOML, or holds a bad value (named by its path)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BatchingConfig(_Strict):
    """How one model's requests are batched."""

    max_batch_size: int = Field(default=32, ge=1, le=4096)
    max_queue_delay_ms: float = Field(default=5.0, ge=0, le=10_000)
    max_queue_size: int = Field(default=1024, ge=1)
    concurrency: int = Field(default=1, ge=1, le=64)


class ModelConfig(_Strict):
    """One model to load at start."""

    name: str = Field(min_length=4, description="routed name, e.g. hf:all-MiniLM-L6-v2")
    device: str = Field(default="auto", description=DEVICES_HELP)
    dtype: str = Field(default="auto", description=", ".join(DTYPES))
    warm_up: bool = True
    batching: BatchingConfig | None = None

    @field_validator("name")
    @classmethod
    def _routed(cls, name: str) -> str:
        if not name.startswith(("hf:", "triton:")):
            raise ValueError(
                "must start with 'hf:' (a packaged model, local path or hub id) "
                "or 'triton:' (a model of the Triton server at GRAPHMESH_TRITON_URL)"
            )
        return name

    @model_validator(mode="after")
    def _placement(self) -> Self:
        self.load_options()  # device and dtype errors surface at config time
        return self

    def load_options(self) -> LoadOptions:
        """Device, dtype and warm-up as the registry takes them."""
        return LoadOptions(device=self.device, dtype=self.dtype, warm_up=self.warm_up)


class TlsConfig(_Strict):
    """Server TLS; with ``client_ca_file`` clients must present a certificate (mTLS)."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    def files(self) -> TlsFiles:
        return TlsFiles(
            cert_file=self.cert_file, key_file=self.key_file, client_ca_file=self.client_ca_file
        )


class LimitsConfig(_Strict):
    """What one request may ask for (see :class:`WireLimits`)."""

    max_texts: int = Field(default=256, ge=1)
    max_text_chars: int = Field(default=32_768, ge=1)
    max_prompt_chars: int = Field(default=65_536, ge=1)
    max_new_tokens: int = Field(default=2048, ge=1)

    def wire(self) -> WireLimits:
        return WireLimits(
            max_texts=self.max_texts,
            max_text_chars=self.max_text_chars,
            max_prompt_chars=self.max_prompt_chars,
            max_new_tokens=self.max_new_tokens,
        )


class ServerConfig(_Strict):
    """The whole file."""

    listen: str = "127.0.0.1:50061"
    metrics_listen: str | None = None
    grace_period: float = Field(default=10.0, ge=0)
    allow_local_paths: bool = Field(
        default=False,
        description="callers may name hf:<path> or cached hub ids not in the config (LoadModel)",
    )
    load_on_demand: bool = Field(
        default=False, description="a call to a known, unloaded model loads it (else UNAVAILABLE)"
    )
    default_max_new_tokens: int = Field(default=128, ge=1)
    tls: TlsConfig | None = None
    limits: LimitsConfig = LimitsConfig()
    batching: BatchingConfig = BatchingConfig()
    models: list[ModelConfig] = Field(default_factory=list)

    @field_validator("listen")
    @classmethod
    def _address(cls, listen: str) -> str:
        host, colon, port = listen.rpartition(":")
        if not colon or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError("must be HOST:PORT")
        return listen

    @model_validator(mode="after")
    def _unique(self) -> Self:
        names = [model.name for model in self.models]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"models: {', '.join(duplicated)} listed more than once")
        return self

    def batching_for(self, name: str) -> BatchingConfig:
        """The named model's batching, else the server's default."""
        chosen = next((m.batching for m in self.models if m.name == name), None)
        return chosen or self.batching


def load_config(path: Path) -> ServerConfig:
    """Read and validate ``path``; a :class:`ConfigError` names the file and each bad field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return parse_config(data, source=str(path))


def parse_config(data: dict[str, object], *, source: str = "config") -> ServerConfig:
    """Validate an already-parsed config mapping."""
    try:
        return ServerConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from exc
