"""Task types for the run-service and orchestrator API tests.

They are driven by graph JSON alone (no Python objects), so they behave the same whether a
run executes in this process or in a worker: ``journal`` names a file each run of the task
appends a line to (``ran``, ``cancelled``), ``unless_exists`` a file whose absence makes
the task fail. Type names start with ``RunTest``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from graphmesh.orchestrator.task import Port, Task, TaskContext, TaskInput, TaskOutput, ValueType


def journal(path: Path) -> list[str]:
    """The lines tasks wrote to ``path`` (empty when none ran)."""
    return path.read_text().split() if path.exists() else []


def _note(config: dict[str, Any], line: str) -> None:
    if config.get("journal"):
        with Path(config["journal"]).open("a") as file:
            file.write(line + "\n")


class SleepTask(Task):
    """Waits ``seconds``, then outputs ``value``; reports progress halfway (with config
    ``details`` as the report's details). With config ``until_exists`` it first waits for
    that file to appear."""

    type = "RunTestSleep"
    inputs = (
        Port(id="value", value_type=ValueType.ANY, default=None),
        Port(id="seconds", value_type=ValueType.NUMBER, default=0),
    )
    outputs = (Port(id="value", value_type=ValueType.ANY),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        _note(self.config, f"ran:{self.id}")
        try:
            flag = self.config.get("until_exists")
            # A file, not an asyncio.Event: a worker in another process must see it too.
            while flag and not _exists(flag):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            await asyncio.sleep(float(inputs["seconds"]) / 2)
            ctx.progress(50, "halfway", self.config.get("details"))
            await asyncio.sleep(float(inputs["seconds"]) / 2)
        except asyncio.CancelledError:
            _note(self.config, f"cancelled:{self.id}")
            raise
        return {"value": inputs["value"]}


class FlakyTask(Task):
    """Fails unless the file named by config ``unless_exists`` exists; else passes ``value``."""

    type = "RunTestFlaky"
    inputs = (Port(id="value", value_type=ValueType.ANY, default=None),)
    outputs = (Port(id="value", value_type=ValueType.ANY),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        _note(self.config, f"ran:{self.id}")
        if not _exists(self.config["unless_exists"]):
            raise RuntimeError("the flag file is missing")
        return {"value": inputs["value"]}


class TenantTask(Task):
    """Outputs the tenant its task context names (``None`` for the local user)."""

    type = "RunTestTenant"
    outputs = (Port(id="tenant", value_type=ValueType.ANY),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        return {"tenant": ctx.tenant}


class UnstorableTask(Task):
    """Outputs a ``value`` no run store can keep, of config ``kind``: ``nul`` (a string
    with NUL), ``nul_key``, ``surrogate`` (a lone surrogate), ``nan``,
    ``infinity_in_list``, ``deep`` (nested 40 levels)."""

    type = "RunTestUnstorable"
    outputs = (Port(id="value", value_type=ValueType.ANY),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        _note(self.config, f"ran:{self.id}")
        deep: Any = 1
        for _ in range(40):
            deep = {"a": deep}
        values = {
            "nul": "a\x00b",
            "nul_key": {"k\x00": 1},
            "surrogate": "\ud800",
            "nan": float("nan"),
            "infinity_in_list": [float("inf")],
            "deep": deep,
        }
        return {"value": values[self.config["kind"]]}


def _exists(path: str) -> bool:
    return Path(path).exists()


def sleep_task(
    task_id: str, seconds: float = 0, value: Any = None, **config: Any
) -> dict[str, Any]:
    """Graph JSON of one RunTestSleep task."""
    return {
        "id": task_id,
        "type": "RunTestSleep",
        "defaults": {"seconds": seconds, "value": value},
        "config": config,
    }


def flow(source: str, target: str, port: str = "value") -> dict[str, str]:
    return {
        "source_task": source,
        "source_port": "value",
        "target_task": target,
        "target_port": port,
    }
