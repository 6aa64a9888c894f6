"""The operator's request limits and quotas, from the environment (prefix ``GRAPHMESH_``).

Every setting, its default and what it bounds is listed in ``docs/security.md``
("Request limits"). Per-tenant quotas come from ``GRAPHMESH_QUOTA_OVERRIDES``, a JSON
object ``{"<tenant>": {"concurrent_runs": 10, ...}}`` whose missing fields keep the
defaults.
"""

from __future__ import annotations

from dataclasses import replace

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from graphmesh.orchestrator.runs.quotas import Quota, QuotaPolicy
from graphmesh.orchestrator.wire.validation import RequestLimits

_LIMITS = RequestLimits()
_QUOTA = Quota()


class QuotaOverride(BaseModel):
    """One tenant's quotas; unset fields keep the defaults."""

    model_config = {"extra": "forbid"}

    request_bytes: int | None = Field(default=None, ge=1)
    graph_tasks: int | None = Field(default=None, ge=1)
    concurrent_runs: int | None = Field(default=None, ge=0)
    tasks_in_flight: int | None = Field(default=None, ge=0)


class EdgeSettings(BaseSettings):
    """Request limits (INVALID_ARGUMENT beyond them) and quotas (RESOURCE_EXHAUSTED)."""

    model_config = SettingsConfigDict(env_prefix="GRAPHMESH_", extra="ignore")

    max_json_depth: int = Field(default=_LIMITS.json_depth, ge=1)
    max_graph_depth: int = Field(default=_LIMITS.graph_depth, ge=0)
    max_name_bytes: int = Field(default=_LIMITS.name_bytes, ge=1)
    max_text_bytes: int = Field(default=_LIMITS.text_bytes, ge=1)
    max_labels: int = Field(default=_LIMITS.labels, ge=0)
    max_run_timeout_s: float = Field(default=_LIMITS.max_timeout_s, gt=0)
    max_page_size: int = Field(default=_LIMITS.max_page_size, ge=1)
    quota_request_bytes: int = Field(default=_QUOTA.request_bytes, ge=1)
    quota_graph_tasks: int = Field(default=_QUOTA.graph_tasks, ge=1)
    quota_concurrent_runs: int = Field(default=_QUOTA.concurrent_runs, ge=0)
    quota_tasks_in_flight: int = Field(default=_QUOTA.tasks_in_flight, ge=0)
    quota_retry_after_s: float = Field(default=QuotaPolicy().retry_after_s, gt=0)
    quota_overrides: dict[str, QuotaOverride] = Field(default_factory=dict)

    def request_limits(self) -> RequestLimits:
        """The limits; a depth pair whose responses protobuf could not parse is refused."""
        return RequestLimits(
            json_depth=self.max_json_depth,
            graph_depth=self.max_graph_depth,
            name_bytes=self.max_name_bytes,
            text_bytes=self.max_text_bytes,
            labels=self.max_labels,
            max_timeout_s=self.max_run_timeout_s,
            default_page_size=min(_LIMITS.default_page_size, self.max_page_size),
            max_page_size=self.max_page_size,
        )

    def quota_policy(self) -> QuotaPolicy:
        default = Quota(
            request_bytes=self.quota_request_bytes,
            graph_tasks=self.quota_graph_tasks,
            concurrent_runs=self.quota_concurrent_runs,
            tasks_in_flight=self.quota_tasks_in_flight,
        )
        tenants = {
            tenant: replace(default, **override.model_dump(exclude_none=True))
            for tenant, override in self.quota_overrides.items()
        }
        return QuotaPolicy(default=default, tenants=tenants, retry_after_s=self.quota_retry_after_s)
