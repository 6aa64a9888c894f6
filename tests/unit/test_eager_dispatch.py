"""Eager dispatch bookkeeping: which ready jobs start here, and that held worker slots are
always given back (the transaction failed, or its started jobs could not be read). A real
queue worker on the memory queue holds the slots; nothing runs."""

from __future__ import annotations

from typing import cast

import pytest

from graphmesh.orchestrator.queue.base import Job, JobSpec
from graphmesh.orchestrator.queue.memory import MemoryJobQueue
from graphmesh.orchestrator.queue.worker import JobContext, Worker
from graphmesh.orchestrator.runs.durable.dispatch import EagerDispatch
from graphmesh.orchestrator.runs.durable.plan import PlanCache
from graphmesh.orchestrator.runs.durable.scheduler_state import TxnState
from graphmesh.orchestrator.runs.durable.store import Tx


async def never_called(job: Job, context: JobContext) -> None:
    raise AssertionError("no job runs in these tests")


def worker(concurrency: int = 4) -> Worker:
    return Worker(MemoryJobQueue(), never_called, queues=["runs"], concurrency=concurrency)


def free_slots(of: Worker) -> int:
    return of.hold_slots(1_000)


def state_of(dispatch: EagerDispatch) -> TxnState:
    """The state of a transaction whose database these calls never touch."""
    return TxnState(cast(Tx, object()), PlanCache(), dispatch)


def specs(*queues: str) -> list[JobSpec]:
    return [JobSpec(task="t", queue=queue, key=f"k{i}") for i, queue in enumerate(queues)]


def test_only_served_queues_start_here_and_no_more_than_the_limit() -> None:
    dispatch = EagerDispatch(worker(concurrency=4), lease_s=30.0)
    ready = specs("runs", "runs.openai", "runs", "runs", "runs")
    started, rest = dispatch.split(ready, limit=2)
    assert [spec.key for spec in started] == ["k0", "k2"]
    assert [spec.key for spec in rest] == ["k1", "k3", "k4"]


def test_no_more_than_the_free_slots_start_here() -> None:
    slots = worker(concurrency=2)
    dispatch = EagerDispatch(slots, lease_s=30.0)
    started, rest = dispatch.split(specs("runs", "runs", "runs"), limit=3)
    assert len(started) == 2 and len(rest) == 1
    assert free_slots(slots) == 0


class Unreadable:
    """Started jobs whose rows cannot be read."""

    async def jobs(self) -> list[Job | None]:
        raise RuntimeError("the result was lost")


async def test_held_slots_come_back_when_the_started_jobs_cannot_be_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    slots = worker(concurrency=4)
    dispatch = EagerDispatch(slots, lease_s=30.0)
    state = state_of(dispatch)
    started, _ = dispatch.split(specs("runs", "runs"), limit=2)
    state.held, state.started = len(started), Unreadable()
    await state.hand_over()
    assert "reading the jobs started for this worker failed" in caplog.text
    assert free_slots(slots) == 4


def test_held_slots_come_back_when_the_transaction_fails() -> None:
    slots = worker(concurrency=4)
    dispatch = EagerDispatch(slots, lease_s=30.0)
    state = state_of(dispatch)
    started, _ = dispatch.split(specs("runs", "runs", "runs"), limit=3)
    state.held = len(started)
    state.release_held()
    assert free_slots(slots) == 4
