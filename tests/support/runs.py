"""Reading runs back in the run-service tests."""

from __future__ import annotations

from graphmesh.orchestrator.runs.records import RunEventRecord, RunService


async def events_upto(
    runs: RunService, run_id: str, last: int, *, tenant: str
) -> list[RunEventRecord]:
    """The run's events from the first through seq ``last`` (watching until it is there)."""
    found = []
    async for event in runs.watch_run(run_id, tenant=tenant):
        found.append(event)
        if event.seq == last:
            break
    return found
