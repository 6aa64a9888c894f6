"""Kill -9 of a model server replica mid-run: the run completes through the other one.

Two real model server processes (``graphmesh serve model-server``, the packaged embedding
model) serve the ``hf:`` route of a real orchestrator process (``GRAPHMESH_MODEL_ROUTES``,
Postgres store). A run of many embedding tasks starts; once some have completed, one
replica is SIGKILLed. Every task must still complete, with the vectors the model gives;
GetRun and ``graphmesh watch`` show the tokens of every task and of the run.
"""

from __future__ import annotations

import asyncio
import math
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.model_server import MINILM, model_server_process
from support.orchestrator_process import orchestrator_process, task_statuses, until_completed

from graphmesh.client import Client
from graphmesh.orchestrator.runs.records import RunState

pytestmark = pytest.mark.slow

TASKS = 80
GRAPHMESH = str(Path(sys.executable).parent / "graphmesh")


def watch(run_id: str, address: str) -> subprocess.CompletedProcess[str]:
    """``graphmesh watch`` of a run, as a user types it."""
    command = [GRAPHMESH, "watch", run_id, "--address", address]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def embedding_graph(count: int) -> dict[str, Any]:
    return {
        "tasks": [
            {
                "id": f"e{i}",
                "type": "TextEmbeddingTask",
                "defaults": {"model": MINILM, "text": f"sentence number {i} about graphs"},
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
        model_server_process(tmp_path / "a") as first,
        model_server_process(tmp_path / "b") as second,
    ):
        routes = {"GRAPHMESH_MODEL_ROUTES": f"hf:={first.address},{second.address}"}
        with orchestrator_process(postgres_dsn, concurrency=2, env=routes) as (_, address):
            async with Client(address, timeout=10) as client:
                run = await client.submit(embedding_graph(TASKS))
                await asyncio.wait_for(until_completed(postgres_dsn, run.run_id, 10), 120)
                first.process.send_signal(signal.SIGKILL)
                assert first.process.wait(timeout=10) == -signal.SIGKILL
                at_kill = await task_statuses(postgres_dsn, run.run_id)
                done = await asyncio.wait_for(client.wait(run.run_id), 120)
                output = await client.output(run.run_id, f"e{TASKS - 1}")
            watched = await asyncio.to_thread(watch, run.run_id, address)
    left_at_kill = [task for task, status in at_kill.items() if status != "COMPLETED"]
    assert left_at_kill, "the run ended before the kill: nothing was left to fail over"
    assert done.status == RunState.COMPLETED, done.error
    assert all(task.status == "COMPLETED" for task in done.tasks)
    # Usage: the server's token counts, per task and summed per run, in GetRun and watch.
    tokens = [task.usage.input_tokens for task in done.tasks]
    assert all(count >= 6 for count in tokens)  # five words and the special tokens
    assert done.usage.input_tokens == sum(tokens) and done.usage.output_tokens == 0
    assert watched.returncode == 0, watched.stderr
    assert f"usage: {sum(tokens)} in + 0 out tokens" in watched.stdout
    vector = output["vector"]
    assert len(vector) == 384 and math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-4)
