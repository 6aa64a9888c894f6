"""Rich rendering for the CLI: live per-task progress bars and the result table."""

from __future__ import annotations

import json
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from graphmesh.orchestrator.ai.usage import TaskUsage
from graphmesh.orchestrator.runner import RunnerEvent, RunResult
from graphmesh.orchestrator.runs.records import RunEventKind, RunEventRecord
from graphmesh.orchestrator.task import TaskEvent

_STATUS_STYLE = {
    "COMPLETED": "green",
    "FAILED": "red",
    "SKIPPED": "yellow",
    "PROCESSING": "cyan",
    "PENDING": "dim",
    "ABORTING": "red",
}


class RunProgress:
    """One progress bar per top-level task, fed by the in-process runner's events
    (:meth:`on_event`) or by a remote run's events (:meth:`on_run_event`). Tasks inside
    compound tasks (``parent/child`` ids) count toward their parent's note; a task's last
    event shows the tokens its model calls used."""

    def __init__(self, task_ids: Iterable[str], console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.fields[status]:<10}"),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.bars: dict[str, TaskID] = {
            task_id: self.progress.add_task(task_id, total=100, status="PENDING", note="")
            for task_id in task_ids
        }
        self.children_done: dict[str, int] = {}

    def __enter__(self) -> Self:
        self.progress.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.__exit__(exc_type, exc, tb)

    def on_event(self, event: RunnerEvent) -> None:
        """An in-process runner's event."""
        self._show(
            event.task_id,
            status=event.status,
            completed=event.progress,
            done=event.kind == TaskEvent.COMPLETE,
            note=event.message or (event.error or ""),
            usage=event.usage,
        )

    def on_run_event(self, event: RunEventRecord) -> None:
        """A remote run's event (``graphmesh submit --follow``, ``graphmesh watch``)."""
        if event.status is None:
            return
        done = event.kind == RunEventKind.TASK_COMPLETED
        self._show(
            event.task_id,
            status=event.status,
            completed=100.0 if done else event.progress,
            done=done,
            note=event.message or (event.error or ""),
            usage=TaskUsage.from_json((event.details or {}).get("usage")),
        )

    def _show(
        self,
        task_id: str,
        *,
        status: str,
        completed: float,
        done: bool,
        note: str,
        usage: TaskUsage | None,
    ) -> None:
        top, _, child = task_id.partition("/")
        bar = self.bars.get(top)
        if bar is None:
            return
        if child:
            if done:
                count = self.children_done[top] = self.children_done.get(top, 0) + 1
                self.progress.update(bar, note=f"{count} sub-tasks done")
            return
        if usage is not None and not usage.empty:
            note = describe_usage(usage)
        self.progress.update(
            bar,
            completed=completed,
            status=f"[{_STATUS_STYLE.get(status, '')}]{status}",
            note=note[:60],
        )


def describe_usage(usage: TaskUsage) -> str:
    """``12 in + 34 out tokens, ~$0.000123`` (the cost only when a price was known)."""
    text = f"{usage.input_tokens} in + {usage.output_tokens} out tokens"
    return text if usage.cost_usd is None else f"{text}, ~${usage.cost_usd:.6f}"


def result_table(result: RunResult) -> Table:
    usage = result.usage
    caption = None
    if not usage.empty:
        caption = f"usage: {usage.input_tokens} in + {usage.output_tokens} out tokens"
        if usage.cost_usd is not None:
            caption += f", ~${usage.cost_usd:.6f}"
    table = Table(title=f"run {result.run_id}: {result.status}", caption=caption, show_lines=False)
    for column in ("task", "type", "status", "output"):
        table.add_column(column, overflow="fold")
    for task in result.tasks.values():
        style = _STATUS_STYLE.get(task.status, "")
        detail = summarize(task.output) if task.error is None else f"[red]{task.error}"
        table.add_row(task.task_id, task.type, f"[{style}]{task.status}", detail)
    return table


def summarize(value: Any, width: int = 120) -> str:
    """A short, human-readable rendering of an output (vectors are abbreviated)."""
    text = json.dumps(_abbreviate(value), ensure_ascii=False, default=repr)
    return text if len(text) <= width else text[: width - 1] + "…"


def _abbreviate(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _abbreviate(item) for key, item in value.items()}
    if isinstance(value, list):
        if len(value) > 8 and all(isinstance(item, float) for item in value):
            head = ", ".join(f"{item:.4f}" for item in value[:4])
            return f"vector[{len(value)}] [{head}, …]"
        return [_abbreviate(item) for item in value]
    return value
