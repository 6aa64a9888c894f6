"""Task completions per second of a 10,000-task graph through the durable Postgres runs.

The graph: 100 layers of 100 no-op tasks; each task of a layer takes the outputs of two
tasks of the layer above (a lattice, so every layer can run in parallel). One process runs
the service and a ``RunWorker`` (what ``PostgresRunService.open`` does) with every durable
write on: task rows, outputs, the event log (3 events per task), jobs and their fencing.
Timed from ``create_run`` until the run is COMPLETED (``create_run_s``: the part
``create_run`` took).

Reference, measured in the same run: the in-process ``TaskGraphRunner`` on the same graph.
This process stands for the orchestrator process, so it first tunes the garbage collector
as ``graphmesh serve orchestrator`` does (:func:`graphmesh.orchestrator.runtime.tune_gc`).
The database is created and dropped here, on the server the test suite finds
(``tests/support/postgres.py``). Prints one JSON line.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, and bench/queue.py would shadow the
# standard library's ``queue`` (which asyncio imports): drop the folder first.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import asyncio
import json
import time
from typing import Any

import psycopg
from support.postgres import fresh_database, postgres_server

from graphmesh.orchestrator.graph import graph_from_json
from graphmesh.orchestrator.queue.worker import WorkerOptions
from graphmesh.orchestrator.runner import TaskGraphRunner
from graphmesh.orchestrator.runs.durable.postgres import PostgresRunService
from graphmesh.orchestrator.runs.durable.worker import WorkerSettings
from graphmesh.orchestrator.runtime import tune_gc
from graphmesh.orchestrator.task import Port, Task, TaskContext, TaskInput, TaskOutput, ValueType

LAYERS = 100
WIDTH = 100
CONCURRENCY = 512


class BenchNoop(Task):
    """Passes its input on."""

    type = "BenchDagNoop"
    inputs = (Port(id="value", value_type=ValueType.ANY, default=0),)
    outputs = (Port(id="value", value_type=ValueType.ANY),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        return {"value": inputs["value"]}


def lattice(layers: int = LAYERS, width: int = WIDTH) -> dict[str, Any]:
    """Graph JSON: ``layers`` x ``width`` tasks, each fed by two tasks of the layer above."""
    tasks = [
        {"id": f"t{layer}_{index}", "type": BenchNoop.type, "defaults": {}, "config": {}}
        for layer in range(layers)
        for index in range(width)
    ]
    flows = [
        {
            "source_task": f"t{layer - 1}_{source}",
            "source_port": "value",
            "target_task": f"t{layer}_{index}",
            "target_port": "value",
        }
        for layer in range(1, layers)
        for index in range(width)
        for source in sorted({index, (index + 1) % width})
    ]
    return {"tasks": tasks, "dataflows": flows}


async def inprocess(graph: dict[str, Any]) -> float:
    """Tasks per second of the in-process runner (best of three)."""
    best = float("inf")
    for _ in range(3):
        runner = TaskGraphRunner(graph_from_json(graph))
        started = time.perf_counter()
        result = await runner.run()
        best = min(best, time.perf_counter() - started)
        result.raise_for_status()
    return len(graph["tasks"]) / best


async def durable(dsn: str, graph: dict[str, Any]) -> tuple[float, float]:
    """Tasks per second of the durable service, from create_run to COMPLETED, and the
    seconds create_run took (validating, storing 10,000 task rows, enqueueing the roots)."""
    settings = WorkerSettings(
        queues=("runs",),
        concurrency=CONCURRENCY,
        queue=WorkerOptions(batch_size=CONCURRENCY // 2, poll_interval_s=0.5),
    )
    async with PostgresRunService.open(dsn, worker=settings, max_pool_size=8) as service:
        started = time.perf_counter()
        run = await service.create_run(graph=graph, inputs={}, tenant="bench")
        created = time.perf_counter() - started
        status = await wait_for_end(dsn, run.run_id)
        elapsed = time.perf_counter() - started
    if status != "COMPLETED":
        raise RuntimeError(f"the benchmark run ended {status}")
    return len(graph["tasks"]) / elapsed, created


async def wait_for_end(dsn: str, run_id: str) -> str:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        while True:
            cursor = await connection.execute(
                "SELECT status FROM graphmesh_runs WHERE run_id = %s", (run_id,)
            )
            row = await cursor.fetchone()
            if row is not None and row[0] in ("COMPLETED", "FAILED", "CANCELLED"):
                return str(row[0])
            await asyncio.sleep(0.05)


def main() -> None:
    tune_gc()
    graph = lattice()
    reference = asyncio.run(inprocess(graph))
    with postgres_server() as server, fresh_database(server) as dsn:
        rate, created = asyncio.run(durable(dsn, graph))
    figures = {
        "bench": "dag",
        "tasks": len(graph["tasks"]),
        "tasks_per_s": round(rate),
        "inprocess_tasks_per_s": round(reference),
        "ratio": round(rate / reference, 3),
        "create_run_s": round(created, 2),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
