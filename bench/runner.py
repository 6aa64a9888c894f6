"""Per-task overhead of the in-process runner on a 10,000-node no-op graph.

The graph has a deep part (a 5,000-task chain) and a wide part (one task fanning out to
4,998 tasks that join into one). Three ways run the same no-op function over it:

- ``baseline``: a plain Python loop in topological order (the limit);
- ``graphmesh``: ``TaskGraphRunner`` (dependency-driven asyncio scheduling, events, results);
- ``dask``: dask's local threaded scheduler (``dask.threaded.get``), a peer.

Prints one JSON line. Overhead = graphmesh time per task minus the baseline's.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, and bench/queue.py would shadow the
# standard library's ``queue`` (which dask and asyncio import): drop the folder first.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import dask.threaded

from graphmesh.orchestrator.graph import DataFlow, TaskGraph
from graphmesh.orchestrator.runner import TaskGraphRunner
from graphmesh.orchestrator.task import Port, Task, TaskContext, TaskInput, TaskOutput

DEEP = 5_000
WIDE = 4_998  # + the fan-out root and the join = 10,000 tasks in all
REPEATS = 5


def noop(*values: Any) -> int:
    return len(values)


class NoopTask(Task):
    type = "BenchNoopTask"
    inputs = (Port(id="input", is_array=True, optional=True),)
    outputs = (Port(id="output"),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        return {"output": noop(*inputs.get("input", ()))}


def edges() -> list[tuple[str, str]]:
    chain = [(f"d{i - 1}", f"d{i}") for i in range(1, DEEP)]
    fan_out = [("w_root", f"w{i}") for i in range(WIDE)]
    fan_in = [(f"w{i}", "w_join") for i in range(WIDE)]
    return chain + fan_out + fan_in


def task_ids() -> list[str]:
    return [f"d{i}" for i in range(DEEP)] + ["w_root"] + [f"w{i}" for i in range(WIDE)] + ["w_join"]


def build_graph() -> TaskGraph:
    graph = TaskGraph(NoopTask(id=task_id) for task_id in task_ids())
    for source, target in edges():
        graph.add_dataflow(
            DataFlow(
                source_task=source, source_port="output", target_task=target, target_port="input"
            )
        )
    return graph


def run_baseline() -> None:
    upstream: dict[str, list[str]] = {task_id: [] for task_id in task_ids()}
    for source, target in edges():
        upstream[target].append(source)
    results: dict[str, int] = {}
    for task_id in task_ids():  # already a topological order
        results[task_id] = noop(*(results[s] for s in upstream[task_id]))


async def graphmesh_us(graph: TaskGraph) -> float:
    """Time ``runner.run()`` inside one event loop (``asyncio.run`` set-up is not the runner's)."""
    runner = TaskGraphRunner(graph)
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = await runner.run()
        samples.append(time.perf_counter() - start)
        result.raise_for_status()
    return statistics.median(samples) / len(graph) * 1e6


def run_dask() -> None:
    upstream: dict[str, list[str]] = {task_id: [] for task_id in task_ids()}
    for source, target in edges():
        upstream[target].append(source)
    dsk = {task_id: (noop, *upstream[task_id]) for task_id in task_ids()}
    dask.threaded.get(dsk, [f"d{DEEP - 1}", "w_join"])


def per_task_us(fn: Callable[[], None]) -> float:
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) / len(task_ids()) * 1e6


def main() -> None:
    graph = build_graph()
    baseline = per_task_us(run_baseline)
    graphmesh = asyncio.run(graphmesh_us(graph))
    dask_us = per_task_us(run_dask)
    print(
        json.dumps(
            {
                "bench": "runner",
                "tasks": len(task_ids()),
                "overhead_us_per_task": round(graphmesh - baseline, 2),
                "graphmesh_us_per_task": round(graphmesh, 2),
                "baseline_us_per_task": round(baseline, 3),
                "dask_us_per_task": round(dask_us, 2),
                "dask_ratio": round(dask_us / graphmesh, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
