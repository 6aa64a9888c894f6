"""The run sweep: what no task handler is left to notice.

- Runs past their deadline fail ("timed out"); the signal of that change stops their
  running tasks wherever they run.
- Open tasks whose job ended without them: the queue dead-lettered it (its worker died on
  the last attempt, or it never started in time) or cancelled it (a cancel request that
  found no live worker). The task fails (or, in a stopping run, counts as aborted).

Every run worker sweeps now and then; the work is idempotent, so sweeps of several
processes may overlap.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from graphmesh.orchestrator.runs.durable.scheduler import Scheduler
from graphmesh.orchestrator.runs.durable.scheduler_state import TxnState
from graphmesh.orchestrator.runs.durable.store import RunStore

SWEEP_BATCH = 100


async def sweep(store: RunStore) -> None:
    """One sweep (see the module docs)."""
    for (run_id,) in await store.fetch("overdue_runs", {"limit": SWEEP_BATCH}):
        await _time_out(store, run_id)
    orphans = await store.fetch("orphaned_tasks", {"limit": SWEEP_BATCH})
    if orphans:
        await _settle_orphans(store, orphans)


async def _time_out(store: RunStore, run_id: str) -> None:
    async with store.transaction() as tx:
        state = TxnState(tx, store.plans)
        run = (await state.lock([run_id])).get(run_id)
        if run is not None:
            await Scheduler(state).time_out(run)
            await state.write()


async def _settle_orphans(store: RunStore, orphans: Sequence[Sequence[Any]]) -> None:
    async with store.transaction() as tx:
        state = TxnState(tx, store.plans)
        runs = await state.lock(row[0] for row in orphans)
        scheduler = Scheduler(state)
        for run_id, task_id, job_id, job_status, history in orphans:
            run = runs.get(run_id)
            if run is None:
                continue
            reason = _last_error(history)
            if job_status == "cancelled" and not run.active:
                await scheduler.abort(run, task_id, job_id, f"aborted: {reason}")
                continue
            message = f"task {task_id!r}: its job ended without it ({job_status}: {reason})"
            payload = {"type": "JobEnded", "message": reason, "task_id": task_id}
            await scheduler.fail(run, task_id, job_id, message, payload)
        await state.write()


def _last_error(history: str | None) -> str:
    entries = json.loads(history) if history else []
    if not entries:
        return "no error recorded"
    error = entries[-1].get("error") or {}
    return str(error.get("message") or error.get("kind") or "no error recorded")
