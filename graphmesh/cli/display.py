"""Rich rendering for the CLI: live per-task progress bars and the result table."""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any, Self

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from graphmesh.orchestrator.graph.task_graph import TaskGraph
from graphmesh.orchestrator.runner import RunnerEvent, RunResult
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
    """One progress bar per top-level task; nested tasks count toward their parent."""

    def __init__(self, graph: TaskGraph, console: Console) -> None:
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
            task.id: self.progress.add_task(task.id, total=100, status="PENDING", note="")
            for task in graph
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
        top, _, child = event.task_id.partition("/")
        bar = self.bars.get(top)
        if bar is None:
            return
        if child:
            if event.kind == TaskEvent.COMPLETE:
                done = self.children_done[top] = self.children_done.get(top, 0) + 1
                self.progress.update(bar, note=f"{done} sub-tasks done")
            return
        self.progress.update(
            bar,
            completed=event.progress,
            status=f"[{_STATUS_STYLE.get(event.status, '')}]{event.status}",
            note=event.message or (event.error or "")[:60],
        )


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
