"""Run events on the wire (WatchRun, NATS): what goes in comes back, integers included."""

from __future__ import annotations

from datetime import UTC, datetime

from graphmesh.orchestrator.api.convert_events import event_from_proto, event_to_proto
from graphmesh.orchestrator.runs.model import RunEventKind, RunEventRecord, RunState
from graphmesh.orchestrator.task.base import TaskStatus


def test_an_event_round_trips_with_integer_details_kept_integers() -> None:
    event = RunEventRecord(
        run_id="r1",
        seq=7,
        time=datetime(2026, 12, 5, 12, 0, 1, 250000, tzinfo=UTC),
        kind=RunEventKind.TASK_PROGRESS,
        run_status=RunState.RUNNING,
        task_id="embed",
        status=TaskStatus.PROCESSING,
        progress=50.0,
        message="halfway",
        details={"done": 3, "of": 6, "ratio": 0.5, "nested": {"batch": [1, 2]}},
    )
    back = event_from_proto(event_to_proto(event))
    assert back.details == event.details
    assert type(back.details["done"]) is int and type(back.details["nested"]["batch"][0]) is int
    assert (back.time, back.seq, back.kind, back.status) == (
        event.time,
        7,
        event.kind,
        event.status,
    )
