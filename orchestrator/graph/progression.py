"""The run rules: how a run moves through a graph, one copy for every engine.

A task is *ready* once every incoming dataflow's source has settled. When a task settles:

- **completed**: each dataflow it feeds is counted off; its ``[error]`` dataflows kill
  their targets (there is no error to handle);
- **failed** with its ``[error]`` port wired: every dataflow is counted off, the handlers
  (targets of ``[error]`` dataflows) get the failure's :func:`error_payload`, the other
  targets are killed;
- **failed** with no ``[error]`` port wired: nothing is counted off, the run fails;
- **skipped**: every target is killed and counted off.

A target whose count reaches zero starts, unless it was killed: then it is skipped, and
that skip settles it in turn (so a dead branch is skipped to its end). A target fed by
several dataflows (a diamond's join) starts once, when the last of them is counted off.

This module only decides. The in-process runner (``runner/graph_run.py``) keeps the counts
in a dict and the killed tasks in a set, the durable scheduler (``runs/durable/scheduler.py``) both
in task rows; both ask :meth:`Progression.settle` what a settled task does, and carry the
answer out their own way (start an asyncio task, enqueue a job, write a skip). No asyncio,
no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Sequence
from typing import Any, NamedTuple, Protocol

from graphmesh.orchestrator.errors import TaskError
from graphmesh.orchestrator.graph.dataflow import ERROR_PORT, DataFlow


class Outcome(enum.Enum):
    """How a task settled, as far as the tasks it feeds are concerned."""

    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


class Remaining(Protocol):
    """Each task's incoming dataflows not counted off yet (a ``dict[str, int]`` will do)."""

    def __getitem__(self, task_id: str, /) -> int: ...

    def __setitem__(self, task_id: str, count: int, /) -> None: ...


class Dead(Protocol):
    """The tasks a settled source killed (a ``set[str]`` will do)."""

    def __contains__(self, task_id: object, /) -> bool: ...

    def add(self, task_id: str, /) -> None: ...


class Step(NamedTuple):
    """What one settled task does to the run.

    ``ready``: tasks whose last input just arrived, to start (in dataflow order);
    ``skipped``: tasks whose last input just arrived but that were killed, to skip (each
    then settles as :attr:`Outcome.SKIPPED`); ``handlers``: the targets of a handled
    failure's ``[error]`` dataflows, which receive its :func:`error_payload`;
    ``run_failed``: an unhandled failure, the run fails (nothing was counted off).
    """

    ready: Sequence[str] = ()
    skipped: Sequence[str] = ()
    handlers: tuple[str, ...] = ()
    run_failed: bool = False


NOTHING = Step()
NOT_REACHED = "not reached: an upstream task failed, or had no error to handle"
"""Why a skipped task was skipped (its event's message, in every engine)."""
RUN_FAILED = Step(run_failed=True)


class Progression:
    """The run rules over one graph's dataflows (the graph's
    :meth:`~graphmesh.orchestrator.graph.task_graph.TaskGraph.progression` caches it).

    Built for every run of a new graph, so kept lean: each task's outgoing dataflows, its
    incoming count and its ``[error]`` handlers. The step of a completion that makes every
    target ready (a chain's link, a fan-out) is kept once made, so a graph run again
    allocates nothing for it."""

    __slots__ = ("_counts", "_every", "_handlers", "_incoming", "_outgoing", "task_ids")

    def __init__(self, task_ids: Iterable[str], dataflows: Iterable[DataFlow]) -> None:
        self.task_ids: tuple[str, ...] = tuple(task_ids)
        outgoing: dict[str, list[DataFlow]] = {task_id: [] for task_id in self.task_ids}
        counts = dict.fromkeys(self.task_ids, 0)
        handlers: dict[str, list[str]] = {}
        for flow in dataflows:
            outgoing[flow.source_task].append(flow)
            counts[flow.target_task] += 1
            if flow.source_port == ERROR_PORT:
                targets = handlers.setdefault(flow.source_task, [])
                if flow.target_task not in targets:
                    targets.append(flow.target_task)
        self._outgoing = outgoing
        self._counts = counts
        self._handlers = {task_id: tuple(targets) for task_id, targets in handlers.items()}
        self._every: dict[str, Step] = {}
        self._incoming: dict[str, tuple[DataFlow, ...]] | None = None  # for resumed()

    # -- the plan ----------------------------------------------------------------------
    def incoming_count(self, task_id: str) -> int:
        """A task's count before anything settled: its incoming dataflows."""
        return self._counts[task_id]

    def counts(self) -> dict[str, int]:
        """Fresh counts for one run of the whole graph (no task killed yet)."""
        return self._counts.copy()

    def handles_errors(self, task_id: str) -> bool:
        """Whether the task's ``[error]`` port is wired (its failure does not fail the run)."""
        return task_id in self._handlers

    def handlers(self, task_id: str) -> tuple[str, ...]:
        """The tasks the task's ``[error]`` port feeds."""
        return self._handlers.get(task_id, ())

    def targets(self, task_id: str, outcome: Outcome) -> tuple[str, ...]:
        """The tasks whose counts and kills :meth:`settle` reads and changes for this
        outcome (an engine that loads them on demand loads these first)."""
        if outcome is Outcome.FAILED and task_id not in self._handlers:
            return ()
        return tuple(dict.fromkeys(flow.target_task for flow in self._outgoing[task_id]))

    # -- the rules -----------------------------------------------------------------------
    def settle(self, task_id: str, outcome: Outcome, remaining: Remaining, dead: Dead) -> Step:
        """``task_id`` settled with ``outcome``: count it off the tasks it feeds in
        ``remaining``, add those it kills to ``dead`` (both must hold :meth:`targets`), and
        say what follows."""
        flows = self._outgoing[task_id]
        handlers: tuple[str, ...] = ()
        if outcome is Outcome.COMPLETED:
            kill_error, kill_other = True, False  # a success kills its [error] branches
        elif outcome is Outcome.SKIPPED:
            kill_error = kill_other = True
        else:
            handlers = self._handlers.get(task_id, ())
            if not handlers:
                return RUN_FAILED  # an unhandled failure: nothing is counted off
            kill_error, kill_other = False, True  # a handled failure kills the others
        ready: list[str] | None = None
        skipped: list[str] | None = None
        for flow in flows:
            target = flow.target_task
            count = remaining[target] - 1
            remaining[target] = count
            if kill_error if flow.source_port == ERROR_PORT else kill_other:
                dead.add(target)
            # At zero, this was the target's last input (one fed twice by this task reaches
            # zero at the second): every kill of it is in by now.
            if count == 0:
                if target in dead:
                    if skipped is None:
                        skipped = [target]
                    else:
                        skipped.append(target)
                elif ready is None:
                    ready = [target]
                else:
                    ready.append(target)
        if skipped is None:
            if ready is None:
                return Step(handlers=handlers) if handlers else NOTHING
            if not handlers and len(ready) == len(flows):  # every target, each fed once
                every = self._every.get(task_id)
                if every is None:
                    every = self._every[task_id] = Step(ready=tuple(ready))
                return every
        return Step(ready or (), skipped or (), handlers)

    def resumed(self, task_id: str, completed: Collection[str]) -> tuple[int, bool]:
        """The count of a task that did not complete and whether it is dead, when its run
        resumes with the tasks in ``completed`` (their outputs kept): it waits for its
        other sources, and a completed source's ``[error]`` branch stays dead, as it was in
        the first attempt."""
        if self._incoming is None:
            incoming: dict[str, list[DataFlow]] = {task_id: [] for task_id in self.task_ids}
            for flows in self._outgoing.values():
                for flow in flows:
                    incoming[flow.target_task].append(flow)
            self._incoming = {key: tuple(flows) for key, flows in incoming.items()}
        remaining, dead = 0, False
        for flow in self._incoming[task_id]:
            if flow.source_task not in completed:
                remaining += 1
            elif flow.carries_error:
                dead = True
        return remaining, dead


def error_payload(task_id: str, error: BaseException) -> dict[str, Any]:
    """What a failed task's ``[error]`` dataflows deliver: the original exception's type
    and message (for a :class:`TaskError` wrapping another exception, that one's), and the
    task's id."""
    cause = error.__cause__ if isinstance(error, TaskError) and error.__cause__ else error
    return {"type": type(cause).__name__, "message": str(cause), "task_id": task_id}
