"""Kill -9 of a model server replica mid-run: the run completes through the other one.

Two real model server processes (``graphmesh serve model-server``, the packaged embedding
model) serve the ``hf:`` route of a real orchestrator process (``GRAPHMESH_MODEL_ROUTES``,
Postgres store). A run of many embedding tasks starts; once some have completed, one
replica is SIGKILLed. Every task must still complete, with the vectors the model gives,
and the run's usage counts the tokens of every task.
"""

from __future__ import annotations

import asyncio
import math
import signal
from pathlib import Path
from typing import Any

import pytest
from support.model_server_process import EMBEDDER, model_server_process
from support.orchestrator_process import orchestrator_process, task_statuses, until_completed

from graphmesh.client import Client
from graphmesh.orchestrator.runs.model import RunState

pytestmark = pytest.mark.slow

TASKS = 80


def embedding_graph(count: int) -> dict[str, Any]:
    return {
        "tasks": [
            {
                "id": f"e{i}",
                "type": "TextEmbeddingTask",
                "defaults": {"model": EMBEDDER, "text": f"sentence number {i} about graphs"},
            }
            for i in range(count)
        ],
        "dataflows": [],
    }


async def test_a_killed_replica_leaves_the_run_to_the_other(
    postgres_dsn: str, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        model_server_process(tmp_path / "a") as (first, first_address),
        model_server_process(tmp_path / "b") as (_, second_address),
    ):
        routes = {"GRAPHMESH_MODEL_ROUTES": f"hf:={first_address},{second_address}"}
        with orchestrator_process(postgres_dsn, concurrency=2, env=routes) as (_, address):
            async with Client(address, timeout=10) as client:
                run = await client.submit(embedding_graph(TASKS))
                await asyncio.wait_for(until_completed(postgres_dsn, run.run_id, 10), 120)
                first.send_signal(signal.SIGKILL)
                assert first.wait(timeout=10) == -signal.SIGKILL
                at_kill = await task_statuses(postgres_dsn, run.run_id)
                done = await asyncio.wait_for(client.wait(run.run_id), 120)
                output = await client.output(run.run_id, f"e{TASKS - 1}")
    left_at_kill = [task for task, status in at_kill.items() if status != "COMPLETED"]
    assert left_at_kill, "the run ended before the kill: nothing was left to fail over"
    assert done.status == RunState.COMPLETED, done.error
    assert all(task.status == "COMPLETED" for task in done.tasks)
    vector = output["vector"]
    assert len(vector) == 384 and math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-4)
