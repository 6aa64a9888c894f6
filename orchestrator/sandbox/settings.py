"""The operator's settings for JavaScript sandboxes (environment prefix ``GRAPHMESH_JS_``).

A task's config may ask for less time or memory than these maxima, never more: a task
asking for more is refused with an error naming the setting (see
:meth:`SandboxSettings.limits`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from graphmesh.orchestrator.catalog.errors import TaskInputError

MIB: Final = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class SandboxLimits:
    """The limits one script runs under: V8 stops it at ``timeout_s`` seconds, or when
    its heap grows past ``max_memory`` bytes."""

    timeout_s: float
    max_memory: int


def _default_workers() -> int:
    return max(2, os.cpu_count() or 2)


class SandboxSettings(BaseSettings):
    """How many sandboxes run, and the most a script may use.

    ``GRAPHMESH_JS_WORKERS`` sandbox processes at most run scripts at once (default: the
    CPU count, at least 2); one remote tenant holds at most
    ``GRAPHMESH_JS_TENANT_CONCURRENCY`` of them (default: all but one, so another tenant
    can always start). ``GRAPHMESH_JS_MAX_TIMEOUT_S`` and ``GRAPHMESH_JS_MAX_MEMORY`` cap
    what a task's ``timeout_sec`` and ``max_memory`` may ask for; a task that asks
    nothing gets ``GRAPHMESH_JS_DEFAULT_TIMEOUT_S`` and ``GRAPHMESH_JS_DEFAULT_MEMORY``.
    """

    model_config = SettingsConfigDict(env_prefix="GRAPHMESH_JS_", extra="ignore")

    max_memory: int = Field(default=256 * MIB, ge=8 * MIB, le=64 * 1024 * MIB)
    max_timeout_s: float = Field(default=30.0, gt=0, le=24 * 3600)
    default_memory: int = Field(default=64 * MIB, ge=1)
    default_timeout_s: float = Field(default=1.0, gt=0)
    workers: int = Field(default_factory=_default_workers, ge=1, le=1024)
    tenant_concurrency: int | None = Field(default=None, ge=1)
    warm_workers: int = Field(default=1, ge=0, description="sandboxes started ahead of need")
    max_output_bytes: int = Field(default=16 * MIB, ge=1024)
    tasks_per_worker: int = Field(default=1000, ge=1, description="then it is replaced")
    cpu_budget_s: float = Field(default=3600.0, gt=0, description="CPU seconds of one sandbox")
    start_timeout_s: float = Field(default=30.0, gt=0)
    kill_grace_s: float = Field(
        default=2.0, gt=0, description="wall-clock seconds past a task's timeout before a kill"
    )

    @model_validator(mode="after")
    def _consistent(self) -> SandboxSettings:
        if self.cpu_budget_s < self.max_timeout_s + 4:
            raise ValueError("GRAPHMESH_JS_CPU_BUDGET_S must exceed MAX_TIMEOUT_S by 4 s")
        return self

    @property
    def per_tenant(self) -> int:
        """Sandboxes one remote tenant may hold at once."""
        if self.tenant_concurrency is not None:
            return min(self.tenant_concurrency, self.workers)
        return max(1, self.workers - 1)

    def limits(self, config: Mapping[str, Any]) -> SandboxLimits:
        """The limits a task's config asks for (``timeout_sec``, ``max_memory``), with
        the defaults; a value above the operator's maximum is refused, naming both."""
        timeout = config.get("timeout_sec", min(self.default_timeout_s, self.max_timeout_s))
        memory = config.get("max_memory", min(self.default_memory, self.max_memory))
        if not _positive_number(timeout):
            raise TaskInputError(f"config timeout_sec must be a positive number, not {timeout!r}")
        if not isinstance(memory, int) or isinstance(memory, bool) or memory <= 0:
            raise TaskInputError(f"config max_memory must be a positive integer, not {memory!r}")
        if timeout > self.max_timeout_s:
            raise TaskInputError(
                f"config timeout_sec {timeout:g} is more than this server allows "
                f"({self.max_timeout_s:g} s, GRAPHMESH_JS_MAX_TIMEOUT_S)"
            )
        if memory > self.max_memory:
            raise TaskInputError(
                f"config max_memory {memory} is more than this server allows "
                f"({self.max_memory} bytes, GRAPHMESH_JS_MAX_MEMORY)"
            )
        return SandboxLimits(timeout_s=float(timeout), max_memory=memory)

    def worker_settings(self) -> dict[str, Any]:
        """What a sandbox process needs to know at start-up."""
        return {
            "max_memory": self.max_memory,
            "max_timeout_s": self.max_timeout_s,
            "max_output_bytes": self.max_output_bytes,
            "cpu_budget_s": self.cpu_budget_s,
        }


def _positive_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return value > 0 and value == value and value != float("inf")
