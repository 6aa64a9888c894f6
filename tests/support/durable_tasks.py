"""Task types for the durable-run tests and benchmarks, driven by graph JSON alone.

``DurableTestRecord`` records every execution in a side table, ``durable_test_executions``
(idempotency key, task, process, worker name) of the Postgres database named by its config
``dsn``, then sleeps ``seconds`` and passes ``value`` on. ``DurableTestCollect`` gathers
its array input. ``DurableTestBoom`` raises; ``DurableTestOverloaded`` fails with a
retryable error a given number of times. Worker processes import this module through
``GRAPHMESH_TASK_MODULES=support.durable_tasks`` (with ``tests`` on ``PYTHONPATH``).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import Any

import psycopg

from graphmesh.orchestrator.ai.client import ModelError
from graphmesh.orchestrator.task import Port, Task, TaskContext, TaskInput, TaskOutput, ValueType

EXECUTIONS = "durable_test_executions"
CREATE_EXECUTIONS = f"""
    CREATE TABLE IF NOT EXISTS {EXECUTIONS} (
        idempotency_key text NOT NULL,
        task_id text NOT NULL,
        pid integer NOT NULL,
        worker text NOT NULL,
        at timestamptz NOT NULL DEFAULT clock_timestamp()
    )
"""


class RecordTask(Task):
    """Records its execution, sleeps ``seconds``, outputs ``value``."""

    type = "DurableTestRecord"
    inputs = (
        Port(id="value", value_type=ValueType.ANY, default=None),
        Port(id="seconds", value_type=ValueType.NUMBER, default=0),
    )
    outputs = (Port(id="value", value_type=ValueType.ANY),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        worker = str(ctx.resources.get("worker", ""))
        await record_execution(self.config["dsn"], ctx.idempotency_key, self.id, worker)
        # config "hang_in": the worker this task never finishes in (one that will "die").
        hang = worker and self.config.get("hang_in") == worker
        await asyncio.sleep(3600.0 if hang else float(inputs["seconds"]))
        return {"value": inputs["value"]}


class CollectTask(Task):
    """Outputs its array input ``items`` (values arriving over dataflows are appended)."""

    type = "DurableTestCollect"
    inputs = (Port(id="items", value_type=ValueType.ANY, is_array=True, default=[]),)
    outputs = (Port(id="items", value_type=ValueType.ANY, is_array=True),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        return {"items": inputs["items"]}


class OverloadedTask(Task):
    """Records its execution, then fails with a retryable model error (retry after 50 ms)
    until it has run config ``failures`` times; then outputs ``value``."""

    type = "DurableTestOverloaded"
    inputs = (Port(id="value", value_type=ValueType.ANY, default=None),)
    outputs = (Port(id="value", value_type=ValueType.ANY),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        dsn = self.config["dsn"]
        await record_execution(dsn, ctx.idempotency_key, self.id, "")
        if (await execution_counts(dsn))[self.id] <= int(self.config["failures"]):
            raise ModelError("overloaded", retryable=True, retry_after=0.05)
        return {"value": inputs["value"]}


class ChattyTask(Task):
    """Reports progress 200 times in a row, then outputs nothing."""

    type = "DurableTestChatty"

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        for step in range(1, 201):
            ctx.progress(step / 2, f"step {step}")
        return {}


class BoomTask(Task):
    """Raises ``ValueError(message)``."""

    type = "DurableTestBoom"
    inputs = (Port(id="value", value_type=ValueType.ANY, default=None),)
    outputs = (Port(id="value", value_type=ValueType.ANY),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        raise ValueError(self.config.get("message", "boom"))


async def create_executions_table(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        await connection.execute(CREATE_EXECUTIONS)


async def record_execution(dsn: str, key: str, task_id: str, worker: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        await connection.execute(
            f"INSERT INTO {EXECUTIONS} (idempotency_key, task_id, pid, worker)"
            " VALUES (%s, %s, %s, %s)",
            (key, task_id, os.getpid(), worker),
        )


async def executions(dsn: str) -> list[tuple[str, str, int, str]]:
    """Every recorded execution: (idempotency key, task id, pid, worker), in order."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        cursor = await connection.execute(
            f"SELECT idempotency_key, task_id, pid, worker FROM {EXECUTIONS} ORDER BY at"
        )
        return [(key, task, pid, worker) for key, task, pid, worker in await cursor.fetchall()]


async def execution_counts(dsn: str) -> Counter[str]:
    """How often each task ran, by task id."""
    return Counter(task for _, task, _, _ in await executions(dsn))


def record(task_id: str, dsn: str, seconds: float = 0, value: Any = None) -> dict[str, Any]:
    """Graph JSON of one DurableTestRecord task."""
    return {
        "id": task_id,
        "type": RecordTask.type,
        "defaults": {"seconds": seconds, "value": value},
        "config": {"dsn": dsn},
    }


def flow(
    source: str, target: str, source_port: str = "value", port: str = "value"
) -> dict[str, str]:
    return {
        "source_task": source,
        "source_port": source_port,
        "target_task": target,
        "target_port": port,
    }
