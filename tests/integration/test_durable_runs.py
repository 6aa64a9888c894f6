"""Durable runs on real Postgres (and SQLite): the semantics the RunService contract cannot
see from outside — transactions, fencing, several workers, a worker that dies.

Tasks record every execution in a side table keyed by idempotency key
(``support.durable_tasks``), so "ran exactly once" is checked, not assumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.durable_tasks import (
    BoomTask,
    ChattyTask,
    CollectTask,
    OverloadedTask,
    RecordTask,
    create_executions_table,
    execution_counts,
    executions,
    flow,
    record,
)
from support.runs import events_upto

import graphmesh.orchestrator.catalog  # noqa: F401  (registers the model tasks)
from graphmesh.orchestrator.ai.testing import FakeModelClient
from graphmesh.orchestrator.events.bus import MemoryEventBus
from graphmesh.orchestrator.events.postgres import PostgresOutbox
from graphmesh.orchestrator.events.relay import OutboxRelay
from graphmesh.orchestrator.queue.base import JobError
from graphmesh.orchestrator.queue.worker import WorkerOptions
from graphmesh.orchestrator.runs.durable.batch import Complete, Start, apply_ops
from graphmesh.orchestrator.runs.durable.plan import TASK_QUEUE
from graphmesh.orchestrator.runs.durable.postgres import PostgresRunService, PostgresRunStore
from graphmesh.orchestrator.runs.durable.service import DurableRunService
from graphmesh.orchestrator.runs.durable.sqlite import SqliteRunService
from graphmesh.orchestrator.runs.durable.worker import RunWorker, WorkerSettings
from graphmesh.orchestrator.runs.records import RunEventKind, RunEventRecord, RunRecord, RunState
from graphmesh.orchestrator.task.base import TaskStatus
from graphmesh.orchestrator.task.registry import TaskRegistry

TENANT = "acme"
FAST = WorkerSettings(sweep_interval_s=0.2)


def worker_settings(name: str, *, lease_s: float = 30.0, concurrency: int = 64) -> WorkerSettings:
    options = WorkerOptions(lease_s=lease_s, maintenance_interval_s=0.2, shutdown_grace_s=0.2)
    return WorkerSettings(
        resources={"worker": name}, queue=options, sweep_interval_s=0.2, concurrency=concurrency
    )


@pytest.fixture
async def dsn(postgres_dsn: str) -> str:
    await create_executions_table(postgres_dsn)
    return postgres_dsn


@pytest.fixture(params=["postgres", "sqlite"])
async def service(
    request: pytest.FixtureRequest, dsn: str, tmp_path: Path
) -> AsyncIterator[DurableRunService]:
    opened: Any
    if request.param == "postgres":
        opened = PostgresRunService.open(dsn, worker=FAST)
    else:
        opened = SqliteRunService.open(tmp_path / "runs.sqlite", worker=FAST)
    async with opened as runs:
        yield runs


@asynccontextmanager
async def worker(dsn: str, settings: WorkerSettings) -> AsyncIterator[PostgresRunStore]:
    """A run worker with a pool of its own, as another orchestrator replica has."""
    async with PostgresRunStore.open(dsn) as store, RunWorker(store, store.queue, settings):
        yield store


async def events_of(runs: DurableRunService, run_id: str) -> list[RunEventRecord]:
    return [event async for event in runs.watch_run(run_id, tenant=TENANT)]


async def finished(runs: DurableRunService, run_id: str) -> RunRecord:
    await events_of(runs, run_id)
    return await runs.get_run(run_id, tenant=TENANT)


async def until_started(runs: DurableRunService, run_id: str, task_id: str) -> None:
    async for event in runs.watch_run(run_id, tenant=TENANT):
        if event.kind == RunEventKind.TASK_STARTED and event.task_id == task_id:
            return
    raise AssertionError(f"the run ended before {task_id} started")


def statuses(run: RunRecord) -> dict[str, TaskStatus]:
    return {task.task_id: task.status for task in run.tasks}


async def test_a_dag_completes_with_outputs_and_a_gap_free_event_log(
    service: DurableRunService, dsn: str
) -> None:
    # b is slower than c, yet collect gathers in dataflow order, not completion order.
    graph = {
        "tasks": [
            record("b", dsn, seconds=0.2, value=1),
            record("c", dsn, value=2),
            {"id": "collect", "type": CollectTask.type},
            record("d", dsn),
        ],
        "dataflows": [
            flow("b", "collect", port="items"),
            flow("c", "collect", port="items"),
            flow("collect", "d", source_port="items"),
        ],
    }
    run = await finished(
        service, (await service.create_run(graph=graph, inputs={}, tenant=TENANT)).run_id
    )
    assert run.status == RunState.COMPLETED and set(statuses(run).values()) == {
        TaskStatus.COMPLETED
    }
    assert await service.get_task_output(run.run_id, "collect", tenant=TENANT) == {"items": [1, 2]}
    assert await service.get_task_output(run.run_id, "d", tenant=TENANT) == {"value": [1, 2]}
    events = await events_of(service, run.run_id)
    assert [event.seq for event in events] == list(range(1, run.last_seq + 1))
    per_task = Counter((event.kind, event.task_id) for event in events if event.task_id)
    assert set(per_task.values()) == {1} and len(per_task) == 8  # started + completed each
    assert (
        events[0].kind == RunEventKind.RUN_CREATED and events[-1].kind == RunEventKind.RUN_COMPLETED
    )
    assert await execution_counts(dsn) == Counter({"b": 1, "c": 1, "d": 1})


async def test_dependents_are_enqueued_by_the_completing_transaction_and_stale_tokens_write_nothing(
    dsn: str,
) -> None:
    graph = {"tasks": [record("a", dsn, value=7), record("b", dsn)], "dataflows": [flow("a", "b")]}
    async with PostgresRunService.open(dsn, run_tasks=False) as runs:
        store = runs.store
        assert isinstance(store, PostgresRunStore)
        run = await runs.create_run(graph=graph, inputs={}, tenant=TENANT)
        (first,) = await store.queue.claim([TASK_QUEUE])
        await store.queue.release([first.token])  # the attempt is lost; a new one takes over
        (second,) = await store.queue.claim([TASK_QUEUE])
        assert second.attempt == first.attempt + 1
        stale = await apply_ops(
            store, [Start(job=first), Complete(job=first, output={"value": 7}, provenance={})]
        )
        assert stale.results == [False, False]
        assert await job_of(dsn, run.run_id, "b") is None
        # The stale attempt wrote nothing: no start, no attempt counted, no event.
        before = await runs.get_run(run.run_id, tenant=TENANT)
        assert statuses(before)["a"] == TaskStatus.PENDING
        assert [t.attempts for t in before.tasks if t.task_id == "a"] == [0]
        assert before.last_seq == 1  # RUN_CREATED only
        done = await apply_ops(
            store, [Start(job=second), Complete(job=second, output={"value": 7}, provenance={})]
        )
        assert done.results == [True, True]
        # One snapshot after that one commit: a completed, its job done, b's job waiting.
        assert await job_of(dsn, run.run_id, "a") == "succeeded"
        assert await job_of(dsn, run.run_id, "b") == "pending"
        record_now = await runs.get_run(run.run_id, tenant=TENANT)
        assert statuses(record_now) == {"a": TaskStatus.COMPLETED, "b": TaskStatus.PENDING}
        kinds = [
            event.kind
            for event in await events_upto(runs, run.run_id, record_now.last_seq, tenant=TENANT)
        ]
        assert kinds[-1] == RunEventKind.TASK_COMPLETED


async def test_a_completion_whose_start_was_not_written_starts_the_task_itself(
    dsn: str,
) -> None:
    # The start never reached the database (lost with its transaction): the completion
    # writes it, so the task and the run do not wait for good behind a completed job.
    graph = {"tasks": [record("a", dsn, value=1), record("b", dsn)], "dataflows": [flow("a", "b")]}
    async with PostgresRunService.open(dsn, run_tasks=False) as runs:
        store = runs.store
        assert isinstance(store, PostgresRunStore)
        run = await runs.create_run(graph=graph, inputs={}, tenant=TENANT)
        (job,) = await store.queue.claim([TASK_QUEUE])
        done = await apply_ops(store, [Complete(job=job, output={"value": 1}, provenance={})])
        assert done.results == [True]
        late = await apply_ops(store, [Start(job=job)])  # a start arriving after its outcome
        assert late.results == [False]
        record_now = await runs.get_run(run.run_id, tenant=TENANT)
        events = await events_upto(runs, run.run_id, record_now.last_seq, tenant=TENANT)
    assert statuses(record_now) == {"a": TaskStatus.COMPLETED, "b": TaskStatus.PENDING}
    assert [t.attempts for t in record_now.tasks if t.task_id == "a"] == [1]
    assert [(event.kind, event.task_id) for event in events] == [
        (RunEventKind.RUN_CREATED, ""),
        (RunEventKind.RUN_STARTED, ""),
        (RunEventKind.TASK_STARTED, "a"),
        (RunEventKind.TASK_COMPLETED, "a"),
    ]


async def job_of(dsn: str, run_id: str, task_id: str) -> str | None:
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        cursor = await connection.execute(
            "SELECT job.status FROM graphmesh_run_tasks AS task"
            " JOIN graphmesh_jobs AS job ON job.id = task.job_id"
            " WHERE task.run_id = %s AND task.task_id = %s",
            (run_id, task_id),
        )
        row = await cursor.fetchone()
    return None if row is None else str(row[0])


async def test_a_permanent_failure_fails_the_run_and_stops_everything_else(
    service: DurableRunService, dsn: str
) -> None:
    graph = {
        "tasks": [
            record("slow", dsn, seconds=30),
            record("first", dsn),
            {"id": "boom", "type": BoomTask.type, "config": {"message": "it broke"}},
            record("after", dsn),
        ],
        "dataflows": [flow("first", "boom"), flow("boom", "after")],
    }
    run = await service.create_run(graph=graph, inputs={}, tenant=TENANT)
    done = await asyncio.wait_for(finished(service, run.run_id), 10)
    assert done.status == RunState.FAILED and "ValueError: it broke" in (done.error or "")
    assert statuses(done) == {
        "slow": TaskStatus.FAILED,  # aborted while running
        "first": TaskStatus.COMPLETED,
        "boom": TaskStatus.FAILED,
        "after": TaskStatus.SKIPPED,
    }
    kinds = [event.kind for event in await events_of(service, run.run_id)]
    assert RunEventKind.TASK_ABORTED in kinds and kinds[-1] == RunEventKind.RUN_FAILED
    assert "after" not in await execution_counts(dsn)


async def test_a_wired_error_port_gets_the_error_and_the_run_completes(
    service: DurableRunService, dsn: str
) -> None:
    graph = {
        "tasks": [
            {"id": "boom", "type": BoomTask.type, "config": {"message": "handled"}},
            record("handler", dsn),
            record("after", dsn),
        ],
        "dataflows": [flow("boom", "handler", source_port="[error]"), flow("boom", "after")],
    }
    run = await finished(
        service, (await service.create_run(graph=graph, inputs={}, tenant=TENANT)).run_id
    )
    assert run.status == RunState.COMPLETED
    assert statuses(run) == {
        "boom": TaskStatus.FAILED,
        "handler": TaskStatus.COMPLETED,
        "after": TaskStatus.SKIPPED,
    }
    payload = {"type": "ValueError", "message": "handled", "task_id": "boom"}
    assert await service.get_task_output(run.run_id, "handler", tenant=TENANT) == {"value": payload}


async def test_concurrent_creates_with_one_key_make_one_run(
    service: DurableRunService, dsn: str
) -> None:
    graph = {"tasks": [record("a", dsn)], "dataflows": []}
    created = await asyncio.gather(
        *(
            service.create_run(graph=graph, inputs={}, tenant=TENANT, idempotency_key="once")
            for _ in range(5)
        )
    )
    assert len({run.run_id for run in created}) == 1
    assert [run.deduplicated for run in created].count(False) == 1
    await finished(service, created[0].run_id)
    assert await execution_counts(dsn) == Counter({"a": 1})


async def test_cancel_reaches_a_task_running_in_another_replica(dsn: str) -> None:
    graph = {
        "tasks": [record("slow", dsn, seconds=30), record("next", dsn)],
        "dataflows": [flow("slow", "next")],
    }
    async with (
        PostgresRunService.open(dsn, run_tasks=False) as api,
        worker(dsn, worker_settings("other")),  # heartbeats every 10 s: the NOTIFY must do it
    ):
        run = await api.create_run(graph=graph, inputs={}, tenant=TENANT)
        await until_started(api, run.run_id, "slow")
        await api.cancel_run(run.run_id, tenant=TENANT, reason="stop")
        done = await asyncio.wait_for(finished(api, run.run_id), 5)
    assert done.status == RunState.CANCELLED and done.error == "stop"
    assert statuses(done) == {"slow": TaskStatus.FAILED, "next": TaskStatus.SKIPPED}


def lattice(dsn: str, width: int, depth: int) -> dict[str, Any]:
    tasks = [
        record(f"t{layer}_{i}", dsn, seconds=0.02) for layer in range(depth) for i in range(width)
    ]
    flows = [
        flow(f"t{layer - 1}_{source}", f"t{layer}_{i}")
        for layer in range(1, depth)
        for i in range(width)
        for source in {i, (i + 1) % width}
    ]
    return {"tasks": tasks, "dataflows": flows}


async def test_two_replicas_share_a_run_and_run_each_task_once(dsn: str) -> None:
    graph = lattice(dsn, width=8, depth=5)
    async with (
        PostgresRunService.open(dsn, run_tasks=False) as api,
        # Each holds half a layer at a time: neither can keep the run to itself.
        worker(dsn, worker_settings("A", concurrency=4)),
        worker(dsn, worker_settings("B", concurrency=4)),
    ):
        run = await api.create_run(graph=graph, inputs={}, tenant=TENANT)
        done = await finished(api, run.run_id)
    assert done.status == RunState.COMPLETED
    ran = await executions(dsn)
    assert Counter(key for key, _, _, _ in ran) == Counter(
        {f"{run.run_id}:{t['id']}": 1 for t in graph["tasks"]}
    )
    assert {worker_name for _, _, _, worker_name in ran} == {"A", "B"}


async def test_a_replica_dying_mid_task_loses_nothing(dsn: str) -> None:
    graph = {
        "tasks": [
            record("t1", dsn),
            {**record("t2", dsn), "config": {"dsn": dsn, "hang_in": "A"}},
            record("t3", dsn),
        ],
        "dataflows": [flow("t1", "t2"), flow("t2", "t3")],
    }
    async with PostgresRunService.open(dsn, run_tasks=False) as api:
        async with AsyncExitStack() as dying:
            store_a = await dying.enter_async_context(
                worker(dsn, worker_settings("A", lease_s=1.0))
            )
            run = await api.create_run(graph=graph, inputs={}, tenant=TENANT)
            await until_started(api, run.run_id, "t2")
            # A "dies": its database connections go, so its heartbeats and writes stop.
            await store_a.pool.close()
            before = statuses(await api.get_run(run.run_id, tenant=TENANT))
            # t1's completion started t2 on A (eager dispatch): it is A's lease that lapses.
            assert (await started_at_enqueue(dsn, run.run_id))["t2"] is True
            async with worker(dsn, worker_settings("B", lease_s=1.0)):
                done = await asyncio.wait_for(finished(api, run.run_id), 20)
            with contextlib.suppress(Exception):
                await dying.aclose()  # A's shutdown fails on its closed pool, as a crash would
    assert before == {
        "t1": TaskStatus.COMPLETED,
        "t2": TaskStatus.PROCESSING,
        "t3": TaskStatus.PENDING,
    }
    assert done.status == RunState.COMPLETED
    ran = [(task, worker_name) for _, task, _, worker_name in await executions(dsn)]
    assert ran == [("t1", "A"), ("t2", "A"), ("t2", "B"), ("t3", "B")]
    assert {task.task_id: task.attempts for task in done.tasks} == {"t1": 1, "t2": 2, "t3": 1}


async def test_a_retryable_failure_is_retried_by_the_queue(
    service: DurableRunService, dsn: str
) -> None:
    flaky = {"id": "flaky", "type": OverloadedTask.type, "config": {"dsn": dsn, "failures": 2}}
    graph = {
        "tasks": [{**flaky, "defaults": {"value": 3}}, record("after", dsn)],
        "dataflows": [flow("flaky", "after")],
    }
    run = await finished(
        service, (await service.create_run(graph=graph, inputs={}, tenant=TENANT)).run_id
    )
    assert run.status == RunState.COMPLETED
    assert {task.task_id: task.attempts for task in run.tasks} == {"flaky": 3, "after": 1}
    assert await service.get_task_output(run.run_id, "after", tenant=TENANT) == {"value": 3}
    started = [
        e.task_id
        for e in await events_of(service, run.run_id)
        if e.kind == RunEventKind.TASK_STARTED
    ]
    assert started == ["flaky", "flaky", "flaky", "after"]


async def test_a_rate_limited_model_call_waits_in_the_queue_without_using_attempts(
    service: DurableRunService, dsn: str
) -> None:
    # Seven refusals with a retry_after (a gateway's RESOURCE_EXHAUSTED), more than the
    # five attempts a task has: each sends the job back to the queue for the wait, never
    # as a failed attempt, and the run completes.
    limited = {"id": "limited", "type": OverloadedTask.type, "config": {"dsn": dsn, "failures": 7}}
    graph = {"tasks": [{**limited, "defaults": {"value": 4}}], "dataflows": []}
    created = await service.create_run(graph=graph, inputs={}, tenant=TENANT)
    run = await finished(service, created.run_id)
    assert run.status == RunState.COMPLETED, run.error
    assert (await execution_counts(dsn))["limited"] == 8
    assert await service.get_task_output(run.run_id, "limited", tenant=TENANT) == {"value": 4}


async def test_the_sweep_fails_a_task_whose_job_died_without_it(dsn: str) -> None:
    # A worker that died on the job's last attempt leaves it dead-lettered by the queue,
    # with no handler left to record it: the sweep of any replica does.
    graph = {"tasks": [record("a", dsn), record("b", dsn)], "dataflows": [flow("a", "b")]}
    async with PostgresRunService.open(dsn, run_tasks=False) as api:
        store = api.store
        assert isinstance(store, PostgresRunStore)
        run = await api.create_run(graph=graph, inputs={}, tenant=TENANT)
        (job,) = await store.queue.claim([TASK_QUEUE])
        await store.queue.fail(
            job.token, JobError(kind="lease_expired", message="lease lost", retryable=False)
        )
        async with worker(dsn, worker_settings("sweeper")):
            done = await asyncio.wait_for(finished(api, run.run_id), 5)
    assert done.status == RunState.FAILED and "lease lost" in (done.error or "")
    assert statuses(done) == {"a": TaskStatus.FAILED, "b": TaskStatus.SKIPPED}
    assert await execution_counts(dsn) == Counter()


async def test_a_resumed_run_gets_new_jobs_and_keeps_completed_outputs(
    service: DurableRunService, dsn: str
) -> None:
    graph = {
        "tasks": [
            record("first", dsn, value=5),
            {"id": "boom", "type": BoomTask.type},
            record("last", dsn),
        ],
        "dataflows": [flow("first", "boom"), flow("boom", "last")],
    }
    run = await finished(
        service, (await service.create_run(graph=graph, inputs={}, tenant=TENANT)).run_id
    )
    assert run.status == RunState.FAILED
    await service.resume_run(run.run_id, tenant=TENANT)
    again = await finished(service, run.run_id)
    assert again.status == RunState.FAILED  # boom fails again; its new job ran it
    assert {task.task_id: task.attempts for task in again.tasks} == {
        "first": 1,
        "boom": 2,
        "last": 0,
    }
    assert await execution_counts(dsn) == Counter({"first": 1})
    assert await service.get_task_output(run.run_id, "first", tenant=TENANT) == {"value": 5}
    kinds = [event.kind for event in await events_of(service, run.run_id)]
    assert kinds.count(RunEventKind.RUN_FAILED) == 2 and RunEventKind.RUN_RESUMED in kinds


async def test_model_tasks_queue_by_provider_and_array_tasks_run_their_children(
    dsn: str, tmp_path: Path
) -> None:
    settings = WorkerSettings(models=FakeModelClient(), sweep_interval_s=0.2)
    graph = {
        "tasks": [
            {
                "id": "one",
                "type": "TextGenerationTask",
                "defaults": {"model": "openai:gpt-test", "prompt": "hi"},
            },
            {
                "id": "each",
                "type": "TextGenerationMultiPromptTask",
                "defaults": {"model": "openai:gpt-test", "prompt": ["a", "b"]},
            },
        ],
        "dataflows": [],
    }
    async with SqliteRunService.open(tmp_path / "runs.sqlite", worker=settings) as runs:
        run = await finished(
            runs, (await runs.create_run(graph=graph, inputs={}, tenant=TENANT)).run_id
        )
        queued = await runs.store.queue.list_jobs(queue="runs.openai")  # type: ignore[attr-defined]
        events = await events_of(runs, run.run_id)
        each = await runs.get_task_output(run.run_id, "each", tenant=TENANT)
    # A model task waits on its provider's queue; an array task runs its children in its job.
    assert run.status == RunState.COMPLETED
    assert [job.payload["task_id"] for job in queued] == ["one"]
    assert each == {"text": ["generated: a", "generated: b"]}
    children = {e.task_id for e in events if e.kind == RunEventKind.TASK_COMPLETED}
    assert {"each/each[0]", "each/each[1]", "each", "one"} <= children


async def test_a_replica_that_cannot_load_the_graph_fails_the_run_clearly(dsn: str) -> None:
    graph = {"tasks": [record("a", dsn), record("b", dsn)], "dataflows": [flow("a", "b")]}
    bare = TaskRegistry()  # a replica deployed without the modules of these task types
    async with (
        PostgresRunService.open(dsn, run_tasks=False) as api,
        PostgresRunStore.open(dsn, registry=bare) as store,
        RunWorker(store, store.queue, worker_settings("bare")),
    ):
        run = await api.create_run(graph=graph, inputs={}, tenant=TENANT)
        done = await asyncio.wait_for(finished(api, run.run_id), 5)
    assert done.status == RunState.FAILED
    assert "cannot load the run's graph" in (done.error or "") and RecordTask.type in done.error
    assert statuses(done) == {"a": TaskStatus.FAILED, "b": TaskStatus.SKIPPED}


async def test_the_outbox_relay_publishes_a_runs_events_in_order(dsn: str) -> None:
    graph = lattice(dsn, width=3, depth=3)
    bus = MemoryEventBus()
    async with (
        PostgresRunService.open(dsn, worker=FAST) as runs,
        PostgresOutbox.open(dsn) as outbox,
        OutboxRelay(outbox, bus),
    ):
        run = await runs.create_run(graph=graph, inputs={}, tenant=TENANT)
        done = await finished(runs, run.run_id)
        while len(bus.accepted) < done.last_seq:
            bus.changed.clear()
            await asyncio.wait_for(bus.changed.wait(), 5)
    assert [(e.run_id, e.seq) for e in bus.accepted] == [
        (run.run_id, seq) for seq in range(1, done.last_seq + 1)
    ]
    assert bus.accepted[-1].kind == RunEventKind.RUN_COMPLETED


async def test_progress_reports_waiting_to_be_written_collapse_to_the_latest(
    service: DurableRunService,
) -> None:
    graph = {"tasks": [{"id": "chatty", "type": ChattyTask.type}], "dataflows": []}
    run = await finished(
        service, (await service.create_run(graph=graph, inputs={}, tenant=TENANT)).run_id
    )
    progress = [
        e for e in await events_of(service, run.run_id) if e.kind == RunEventKind.TASK_PROGRESS
    ]
    assert run.status == RunState.COMPLETED
    assert 1 <= len(progress) < 200 and (progress[-1].progress, progress[-1].message) == (
        100,
        "step 200",
    )


# -- eager dispatch -----------------------------------------------------------------------

EAGER_FLAGS = (
    "SELECT task.task_id, job.started_at = job.created_at"
    " FROM graphmesh_run_tasks AS task JOIN graphmesh_jobs AS job ON job.id = task.job_id"
    " WHERE task.run_id = {mark}"
)


async def started_at_enqueue(dsn: str, run_id: str) -> dict[str, bool]:
    """Per task, whether its job started in the transaction that enqueued it (eager
    dispatch) rather than by a later claim."""
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        cursor = await connection.execute(EAGER_FLAGS.format(mark="%s"), (run_id,))
        return {task: bool(eager) for task, eager in await cursor.fetchall()}


def chain_then_fan_out(dsn: str) -> dict[str, Any]:
    """a -> b -> c, then c feeds d1, d2 and d3."""
    fan = [f"d{i}" for i in (1, 2, 3)]
    return {
        "tasks": [record(task, dsn) for task in ["a", "b", "c", *fan]],
        "dataflows": [flow("a", "b"), flow("b", "c"), *(flow("c", d) for d in fan)],
    }


async def test_a_completion_starts_the_task_it_makes_ready_here_without_a_claim(
    dsn: str,
) -> None:
    async with PostgresRunService.open(dsn, worker=FAST) as runs:
        run = await runs.create_run(graph=chain_then_fan_out(dsn), inputs={}, tenant=TENANT)
        done = await finished(runs, run.run_id)
    assert set(statuses(done).values()) == {TaskStatus.COMPLETED}
    eager = await started_at_enqueue(dsn, run.run_id)
    assert eager["a"] is False  # a root: enqueued by create_run, then claimed
    assert eager["b"] and eager["c"]  # each took the slot of the task before it
    # c's completion frees one slot: one of its dependents starts here, the fan-out's
    # growth goes to the queue for any replica.
    assert sorted(eager[d] for d in ("d1", "d2", "d3")) == [False, False, True]
    assert await execution_counts(dsn) == Counter({t: 1 for t in eager})


async def test_without_eager_dispatch_every_task_is_claimed(dsn: str) -> None:
    settings = WorkerSettings(sweep_interval_s=0.2, eager_dispatch=False)
    async with PostgresRunService.open(dsn, worker=settings) as runs:
        run = await runs.create_run(graph=chain_then_fan_out(dsn), inputs={}, tenant=TENANT)
        await finished(runs, run.run_id)
    assert set((await started_at_enqueue(dsn, run.run_id)).values()) == {False}


async def test_sqlite_runs_start_ready_tasks_eagerly_too(dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    async with SqliteRunService.open(path, worker=FAST) as runs:
        run = await runs.create_run(graph=chain_then_fan_out(dsn), inputs={}, tenant=TENANT)
        done = await finished(runs, run.run_id)
    assert set(statuses(done).values()) == {TaskStatus.COMPLETED}
    with contextlib.closing(sqlite3.connect(path)) as connection:
        rows = connection.execute(EAGER_FLAGS.format(mark="?"), (run.run_id,)).fetchall()
    eager = {task: bool(flag) for task, flag in rows}
    assert (eager["a"], eager["b"], eager["c"]) == (False, True, True)
    assert sum(eager[d] for d in ("d1", "d2", "d3")) == 1
