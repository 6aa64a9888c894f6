"""What ``create_run`` returns is the run as stored: the record ``get_run`` reads right after.

The durable services build that record from what they just wrote rather than reading the
graph and every task row back, so these tests compare the two field by field, on Postgres
and SQLite, for a run that waits for its tasks and for one that ends as it is created. No
worker runs here: nothing changes the run between the two calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support.durable_tasks import CollectTask

from graphmesh.orchestrator.runs.durable.postgres import PostgresRunService
from graphmesh.orchestrator.runs.durable.service import DurableRunService
from graphmesh.orchestrator.runs.durable.sqlite import SqliteRunService
from graphmesh.orchestrator.runs.records import RunState
from graphmesh.orchestrator.task.base import TaskStatus

TENANT = "acme"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(params=["postgres", "sqlite"])
async def service(
    request: pytest.FixtureRequest, postgres_dsn: str, sqlite_path: Path
) -> AsyncIterator[DurableRunService]:
    opened: Any
    if request.param == "postgres":
        opened = PostgresRunService.open(postgres_dsn, run_tasks=False)
    else:
        opened = SqliteRunService.open(sqlite_path, run_tasks=False)
    async with opened as runs:
        yield runs


def collect(task_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": task_id, "type": CollectTask.type, **fields}


def wire(source: str, target: str) -> dict[str, str]:
    ports = {"source_port": "items", "target_port": "items"}
    return {"source_task": source, "target_task": target, **ports}


GRAPH = {
    "tasks": [
        collect("a", defaults={"items": [1, 2.5, "ü", None, {"nested": [True]}]}),
        collect("b", config={"name": "B", "provenance": {"source": "test"}}),
        collect("c"),
    ],
    "dataflows": [wire("a", "c"), wire("b", "c")],
}


async def test_the_record_of_a_new_run_is_the_run_as_stored(service: DurableRunService) -> None:
    created = await service.create_run(
        graph=GRAPH,
        inputs={"items": [{"deep": {"er": [1, 2]}}]},
        tenant=TENANT,
        idempotency_key="key-1",
        labels={"team": "graph"},
        timeout=60.0,
        traceparent=TRACEPARENT,
    )

    assert created == await service.get_run(created.run_id, tenant=TENANT)
    assert created.status == RunState.PENDING
    assert [(task.task_id, task.status) for task in created.tasks] == [
        ("a", TaskStatus.PENDING),
        ("b", TaskStatus.PENDING),
        ("c", TaskStatus.PENDING),
    ]


async def test_the_record_of_a_run_that_ends_as_it_is_created_is_the_run_as_stored(
    service: DurableRunService,
) -> None:
    created = await service.create_run(graph={"tasks": []}, inputs={}, tenant=TENANT)

    assert created == await service.get_run(created.run_id, tenant=TENANT)
    assert created.status == RunState.COMPLETED
    assert created.ended_at is not None
