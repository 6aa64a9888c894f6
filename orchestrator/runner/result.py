"""What a run hands back: every task's status, output, error and provenance."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from graphmesh.orchestrator.ai.usage import NO_TASK_USAGE, TaskUsage, total_usage
from graphmesh.orchestrator.errors import GraphmeshError
from graphmesh.orchestrator.task.base import TaskEvent, TaskOutput, TaskStatus


class RunStatus(StrEnum):
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskResult:
    task_id: str
    type: str
    status: TaskStatus
    output: TaskOutput
    error: str | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    # Tokens and estimated cost of the task's model calls (empty for tasks that call none).
    usage: TaskUsage = NO_TASK_USAGE


TaskRow = tuple[
    str, str, TaskStatus, TaskOutput, "str | None", Mapping[str, Any], "TaskUsage | None"
]


class TaskResults(Mapping[str, TaskResult]):
    """Every task's result by task id, each built on first access: a 10,000-task run does
    not pay for 10,000 result objects that nobody reads."""

    __slots__ = ("_built", "_rows")

    def __init__(self, rows: Mapping[str, TaskRow]) -> None:
        self._rows = rows
        self._built: dict[str, TaskResult] = {}

    def __getitem__(self, task_id: str) -> TaskResult:
        result = self._built.get(task_id)
        if result is None:
            task, kind, status, output, error, provenance, usage = self._rows[task_id]
            result = TaskResult(
                task_id=task,
                type=kind,
                status=status,
                output=output,
                error=error,
                provenance=provenance,
                usage=usage or NO_TASK_USAGE,
            )
            self._built[task_id] = result
        return result

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"<TaskResults of {len(self)} tasks>"


class RunFailedError(GraphmeshError):
    """Raised by :meth:`RunResult.raise_for_status` when a run did not complete."""


@dataclass(frozen=True, kw_only=True)
class RunResult:
    run_id: str
    status: RunStatus
    tasks: Mapping[str, TaskResult]
    sink_ids: tuple[str, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.COMPLETED

    @property
    def outputs(self) -> dict[str, TaskOutput]:
        """Every task's output by task id."""
        return {task_id: result.output for task_id, result in self.tasks.items()}

    @property
    def output(self) -> TaskOutput:
        """The graph's output: the sink tasks' outputs merged in graph order."""
        merged: TaskOutput = {}
        for task_id in self.sink_ids:
            merged.update(self.tasks[task_id].output)
        return merged

    @property
    def usage(self) -> TaskUsage:
        """Every task's usage summed: the run's tokens and estimated cost."""
        return total_usage([result.usage for result in self.tasks.values()])

    def raise_for_status(self) -> RunResult:
        if not self.ok:
            raise RunFailedError(f"run {self.run_id} {self.status.lower()}: {self.error}")
        return self


@dataclass(frozen=True, kw_only=True)
class RunnerEvent:
    """One task event as seen by a run listener (CLI progress bars, the event outbox).

    Tasks inside compound tasks report ``task_id`` as a path: ``parent/child``.
    """

    run_id: str
    kind: TaskEvent
    task_id: str
    status: TaskStatus
    progress: float = 0.0
    message: str = ""
    details: Mapping[str, Any] | None = None
    error: str | None = None
    # On a task's last event (complete, error, abort): what its model calls used.
    usage: TaskUsage | None = None

    def details_with_usage(self) -> Mapping[str, Any] | None:
        """The details, with the task's usage under ``usage`` when it used any: what the
        run services store with the event."""
        if self.usage is None or self.usage.empty:
            return self.details
        return {**(self.details or {}), "usage": self.usage.to_json()}
