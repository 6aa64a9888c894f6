"""Quotas per tenant, the one rule above every run store.

A tenant may send requests up to ``request_bytes``, graphs of up to ``graph_tasks`` tasks
(subgraphs included), hold up to ``concurrent_runs`` runs not yet ended and up to
``tasks_in_flight`` unsettled tasks in them. What would pass a quota is refused with
:class:`QuotaExceededError` (RESOURCE_EXHAUSTED with a retry delay at the API);
other tenants are not affected. :class:`QuotaRunService` wraps any
:class:`~graphmesh.orchestrator.runs.records.RunService` (memory, SQLite, Postgres) and checks
runs against the store's :class:`~graphmesh.orchestrator.runs.records.TenantUsage`.

The run quotas are checked before a run is created, not in its transaction: calls racing
each other may pass a quota by the few runs they create at the same moment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphmesh.orchestrator.errors import GraphmeshError
from graphmesh.orchestrator.runs.records import (
    JsonObject,
    Page,
    RunEventRecord,
    RunFilter,
    RunRecord,
    RunService,
    TenantUsage,
)
from graphmesh.orchestrator.task.base import TaskStatus

MIB = 1024 * 1024


class QuotaExceededError(GraphmeshError):
    """A request would pass one of its tenant's quotas; ``retry_after`` seconds is when
    trying again makes sense (for the size quotas: never, unless the operator raises it)."""

    def __init__(self, message: str, *, quota: str, retry_after: float) -> None:
        self.quota = quota
        self.retry_after = retry_after
        super().__init__(message)


@dataclass(frozen=True, kw_only=True)
class Quota:
    """One tenant's limits."""

    request_bytes: int = 4 * MIB
    graph_tasks: int = 1000
    concurrent_runs: int = 100
    tasks_in_flight: int = 10_000


@dataclass(frozen=True, kw_only=True)
class QuotaPolicy:
    """The operator's quotas: ``default`` for every tenant, ``tenants`` for some."""

    default: Quota = field(default_factory=Quota)
    tenants: Mapping[str, Quota] = field(default_factory=dict)
    retry_after_s: float = 5.0

    def of(self, tenant: str) -> Quota:
        return self.tenants.get(tenant, self.default)

    @property
    def largest_request(self) -> int:
        """The largest request any tenant may send (the server's receive limit)."""
        return max([self.default.request_bytes, *(q.request_bytes for q in self.tenants.values())])

    def check_request(self, tenant: str, size: int) -> None:
        limit = self.of(tenant).request_bytes
        if size > limit:
            self._refuse("request_bytes", f"the request has {size} bytes; the limit is {limit}")

    def check_graph(self, tenant: str, graph: Any) -> None:
        """Refuse a graph (graph JSON or dependency JSON) with too many tasks."""
        tasks, limit = count_tasks(graph), self.of(tenant).graph_tasks
        if tasks > limit:
            self._refuse("graph_tasks", f"the graph has {tasks} tasks; the limit is {limit}")

    def check_run(self, tenant: str, usage: TenantUsage, tasks: int) -> None:
        """Refuse a run of ``tasks`` top-level tasks the tenant has no room for."""
        quota = self.of(tenant)
        if usage.active_runs + 1 > quota.concurrent_runs:
            self._refuse(
                "concurrent_runs",
                f"{usage.active_runs} runs have not ended; the limit is {quota.concurrent_runs}",
            )
        if usage.open_tasks + tasks > quota.tasks_in_flight:
            self._refuse(
                "tasks_in_flight",
                f"{usage.open_tasks} tasks are in flight and the run adds {tasks}; "
                f"the limit is {quota.tasks_in_flight}",
            )

    def _refuse(self, quota: str, detail: str) -> None:
        raise QuotaExceededError(
            f"quota {quota} exceeded: {detail}", quota=quota, retry_after=self.retry_after_s
        )


def count_tasks(graph: Any) -> int:
    """Tasks of a graph, subgraphs included, in either JSON form; parts that are not
    well-formed count as nothing (the graph loader reports them)."""
    if isinstance(graph, Mapping):
        items, nested = graph.get("tasks"), "subgraph"
    else:
        items, nested = graph, "subtasks"
    if not isinstance(items, list):
        return 0
    total = len(items)
    for item in items:
        if isinstance(item, Mapping) and item.get(nested) is not None:
            total += count_tasks(item[nested])
    return total


class QuotaRunService:
    """A RunService that creates and resumes runs only within the tenant's quotas."""

    def __init__(self, runs: RunService, policy: QuotaPolicy) -> None:
        self.runs = runs
        self.policy = policy

    async def create_run(
        self,
        *,
        graph: JsonObject,
        inputs: JsonObject,
        tenant: str,
        idempotency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the run's deadline, not this call's)
        traceparent: str | None = None,
    ) -> RunRecord:
        """Check the graph and run quotas, then create; a repeated idempotency key is
        never refused (it creates nothing)."""
        self.policy.check_graph(tenant, graph)
        usage = await self.runs.tenant_usage(tenant, idempotency_key=idempotency_key or None)
        if usage.existing_run is None:
            self.policy.check_run(tenant, usage, len(graph.get("tasks") or ()))
        return await self.runs.create_run(
            graph=graph,
            inputs=inputs,
            tenant=tenant,
            idempotency_key=idempotency_key,
            labels=labels,
            timeout=timeout,
            traceparent=traceparent,
        )

    async def resume_run(self, run_id: str, *, tenant: str) -> RunRecord:
        """Check the run quotas for the tasks that will run again, then resume."""
        record = await self.runs.get_run(run_id, tenant=tenant)
        if record.status.finished:
            rerun = sum(task.status != TaskStatus.COMPLETED for task in record.tasks)
            self.policy.check_run(tenant, await self.runs.tenant_usage(tenant), rerun)
        return await self.runs.resume_run(run_id, tenant=tenant)

    async def get_run(self, run_id: str, *, tenant: str) -> RunRecord:
        return await self.runs.get_run(run_id, tenant=tenant)

    async def list_runs(
        self, run_filter: RunFilter, *, page_size: int = 50, page_token: str = ""
    ) -> Page[RunRecord]:
        return await self.runs.list_runs(run_filter, page_size=page_size, page_token=page_token)

    async def cancel_run(self, run_id: str, *, tenant: str, reason: str = "") -> RunRecord:
        return await self.runs.cancel_run(run_id, tenant=tenant, reason=reason)

    def watch_run(
        self, run_id: str, *, tenant: str, from_seq: int = 0
    ) -> AsyncIterator[RunEventRecord]:
        return self.runs.watch_run(run_id, tenant=tenant, from_seq=from_seq)

    async def get_task_output(self, run_id: str, task_id: str, *, tenant: str) -> JsonObject:
        return await self.runs.get_task_output(run_id, task_id, tenant=tenant)

    async def tenant_usage(self, tenant: str, *, idempotency_key: str | None = None) -> TenantUsage:
        return await self.runs.tenant_usage(tenant, idempotency_key=idempotency_key)
