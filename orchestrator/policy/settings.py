"""The policy file: ``GRAPHMESH_POLICY_FILE`` names a TOML file the operator writes.

::

    [default]                      # every tenant
    task_types = ["*"]             # or a list of type names; unset: all but external access
    data_root = "/srv/graphmesh/data"   # tenants get <data_root>/<tenant>; unset: no files

    [default.connections.warehouse]
    dsn_env = "WAREHOUSE_DSN"      # or dsn_file = "/run/secrets/warehouse_dsn"
    read_only = true               # the role in the DSN must enforce it; tasks only check
    statement_timeout_s = 30

    [tenants.acme]                 # one tenant's own rules, over the defaults
    task_types = ["DocumentSplitterTask", "FileReadTask"]
    data_root = "/srv/acme"        # used as it is

DSNs are secrets: they come from an environment variable or a file, never from the policy
file itself, and never appear in errors, logs or task outputs. Every problem in the file is
reported at start-up, naming where it is.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from graphmesh.orchestrator.policy.model import DatabaseConnection, TaskPolicy, TenantRules


class PolicySettings(BaseSettings):
    """Where the operator's policy file is (unset: the deny-by-default policy)."""

    model_config = SettingsConfigDict(env_prefix="GRAPHMESH_", extra="ignore")

    policy_file: Path | None = None


class _Connection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dsn_env: str | None = None
    dsn_file: Path | None = None
    read_only: bool = True
    statement_timeout_s: float = Field(default=30.0, gt=0, le=24 * 3600)

    @model_validator(mode="after")
    def _one_source(self) -> _Connection:
        if (self.dsn_env is None) == (self.dsn_file is None):
            raise ValueError("give exactly one of dsn_env and dsn_file")
        return self

    def build(self, name: str) -> DatabaseConnection:
        return DatabaseConnection(
            dsn=SecretStr(self._dsn(name)),
            read_only=self.read_only,
            statement_timeout_s=self.statement_timeout_s,
        )

    def _dsn(self, name: str) -> str:
        if self.dsn_env is not None:
            value = os.environ.get(self.dsn_env)
            if not value:
                raise PolicyFileError(f"connection {name!r}: ${self.dsn_env} is not set")
            return value
        assert self.dsn_file is not None
        try:
            return self.dsn_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise PolicyFileError(
                f"connection {name!r}: cannot read dsn_file {str(self.dsn_file)!r} "
                f"({error.strerror})"
            ) from None


class _Rules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_types: list[str] | None = None
    data_root: Path | None = None
    tenant_data_dirs: bool | None = None
    connections: dict[str, _Connection] | None = None

    def build(self) -> TenantRules:
        if self.data_root is not None and not self.data_root.is_absolute():
            raise PolicyFileError(f"data_root {str(self.data_root)!r} must be an absolute path")
        connections = None
        if self.connections is not None:
            connections = {name: c.build(name) for name, c in self.connections.items()}
        return TenantRules(
            task_types=None if self.task_types is None else frozenset(self.task_types),
            data_root=self.data_root,
            tenant_data_dirs=self.tenant_data_dirs,
            connections=connections,
        )


class _PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: _Rules = Field(default_factory=_Rules)
    tenants: dict[str, _Rules] = Field(default_factory=dict)


class PolicyFileError(ValueError):
    """The policy file cannot be used; the message says where and why."""


def load_policy(path: Path | None = None) -> TaskPolicy:
    """The policy of ``path`` (default: ``GRAPHMESH_POLICY_FILE``); without one, the
    deny-by-default policy. Raises :class:`PolicyFileError` naming every problem."""
    path = path or PolicySettings().policy_file
    if path is None:
        return TaskPolicy()
    data = _read(path)
    try:
        parsed = _PolicyFile.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise PolicyFileError(f"policy file {str(path)!r}: {problems}") from None
    try:
        tenants = {name: rules.build() for name, rules in parsed.tenants.items()}
        return TaskPolicy(default=parsed.default.build(), tenants=tenants)
    except PolicyFileError as error:
        raise PolicyFileError(f"policy file {str(path)!r}: {error}") from None


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PolicyFileError(f"cannot read policy file {str(path)!r}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise PolicyFileError(f"policy file {str(path)!r} is not valid TOML: {error}") from None
