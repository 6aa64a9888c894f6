"""Durable runs whose AI tasks go through the gRPC ModelClient to a ModelService.

A model server that is out of capacity answers RESOURCE_EXHAUSTED with a retry delay: the
job goes back to the queue for then, and the worker's slot serves other tasks meanwhile
(it is not held sleeping), after which the task completes on its second attempt.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from support.model_service import retry_info_abort, start_fake_model_server
from support.run_tasks import sleep_task

from graphmesh.orchestrator.models import GrpcModelClient, parse_routes
from graphmesh.orchestrator.runs.durable.sqlite import SqliteRunService
from graphmesh.orchestrator.runs.durable.worker import WorkerSettings
from graphmesh.orchestrator.runs.records import RunRecord, RunService, RunState

TENANT = "acme"
DELAY = 1.5


async def finished(runs: RunService, run_id: str) -> RunRecord:
    async for _ in runs.watch_run(run_id, tenant=TENANT):
        pass
    return await runs.get_run(run_id, tenant=TENANT)


async def test_a_rate_limited_model_call_is_rescheduled_not_waited_for(tmp_path: Path) -> None:
    fake, address, server = await start_fake_model_server(
        "a", fail={"Summarize": [retry_info_abort(DELAY), None]}
    )
    summary = {"model": "hf:m", "text": "one two"}
    graph = {"tasks": [{"id": "sum", "type": "TextSummaryTask", "defaults": summary}]}
    other = {"tasks": [sleep_task("other", value="done")]}
    try:
        async with (
            GrpcModelClient(parse_routes(f"hf:={address}")) as models,
            SqliteRunService.open(
                tmp_path / "runs.sqlite", worker=WorkerSettings(models=models, concurrency=1)
            ) as runs,
        ):
            started = time.monotonic()
            limited = await runs.create_run(
                graph=graph | {"dataflows": []}, inputs={}, tenant=TENANT
            )
            for _ in range(200):
                if fake.calls:
                    break
                await asyncio.sleep(0.02)
            refused_at = time.monotonic()
            quick = await runs.create_run(graph=other | {"dataflows": []}, inputs={}, tenant=TENANT)
            quick_done = await finished(runs, quick.run_id)
            quick_at = time.monotonic()
            done = await finished(runs, limited.run_id)
    finally:
        await server.stop(None)
    assert quick_done.status == RunState.COMPLETED
    assert quick_at - refused_at < DELAY  # the one worker slot was free during the delay
    assert done.status == RunState.COMPLETED, done.error
    assert [task.attempts for task in done.tasks] == [2]
    assert len(fake.calls) == 2
    assert time.monotonic() - started >= DELAY
    assert done.usage.input_tokens == 7 and done.usage.output_tokens == 3
