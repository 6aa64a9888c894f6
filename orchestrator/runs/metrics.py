"""Prometheus metrics of runs: outcomes and starts, counted where events are logged.

``graphmesh_run_events_total{kind}`` counts the events this process logged, by kind: run
outcomes (``RUN_COMPLETED``, ``RUN_FAILED``, ``RUN_CANCELLED``), task starts and outcomes
(``TASK_STARTED``, ``TASK_COMPLETED``, ``TASK_FAILED``, ``TASK_ABORTED``, ``TASK_SKIPPED``)
and the rest of the lifecycle; progress reports are left out. Durable stores count an event
once its transaction committed, so summed over the replicas each event counts once. Run
ids are never labels.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter

from graphmesh.orchestrator.runs.records import RunEventKind

RUN_EVENTS = Counter(
    "graphmesh_run_events",
    "Run and task events logged by this process, by kind (outcomes, starts, lifecycle)",
    ["kind"],
)
_COUNTERS = {
    kind: RUN_EVENTS.labels(kind=kind.value)
    for kind in RunEventKind
    if kind is not RunEventKind.TASK_PROGRESS
}


def count_events(kinds: Iterable[RunEventKind]) -> None:
    """Count logged events (``TASK_PROGRESS`` is not counted)."""
    for kind in kinds:
        if kind is not RunEventKind.TASK_PROGRESS:
            _COUNTERS[kind].inc()
