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
in a dict and the killed tasks in a set, the durable scheduler (``runs/scheduler.py``) both
in task rows; both ask :meth:`Progression.settle` what a settled task does, and carry the
answer out their own way (start an asyncio task, enqueue a job, write a skip). No asyncio,
no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Sequence
from typing import Any, NamedTuple, Protocol

from graphmesh.orchestrator.errors import TaskError
from graphmesh.orchestrator.graph.dataflow import DataFlow


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
RUN_FAILED = Step(run_failed=True)

# One precomputed dataflow out of a task: its target, whether this outcome kills the target,
# and whether it is the last of the task's dataflows into that target (when to look at the
# target's count: a target fed twice by one task is ready once, after both).
_Edge = tuple[str, bool, bool]
# What settle needs of one task and outcome, built once: its edges (``None``: an unhandled
# failure), the step when no target is ready yet, the step when every target is ready and
# none is dead (``None`` where that cannot be prebuilt), and the number of targets.
_Plan = tuple[tuple[_Edge, ...] | None, Step, Step | None, int]


class Progression:
    """The run rules over one graph's dataflows, precomputed once per graph (the graph's
    :meth:`~graphmesh.orchestrator.graph.task_graph.TaskGraph.progression` caches it)."""

    __slots__ = ("_counts", "_handlers", "_incoming", "_plans", "_targets", "task_ids")

    def __init__(self, task_ids: Iterable[str], dataflows: Iterable[DataFlow]) -> None:
        self.task_ids: tuple[str, ...] = tuple(task_ids)
        incoming: dict[str, list[DataFlow]] = {task_id: [] for task_id in self.task_ids}
        outgoing: dict[str, list[DataFlow]] = {task_id: [] for task_id in self.task_ids}
        for flow in dataflows:
            outgoing[flow.source_task].append(flow)
            incoming[flow.target_task].append(flow)
        self._incoming: dict[str, tuple[DataFlow, ...]] = {
            task_id: tuple(flows) for task_id, flows in incoming.items()
        }
        self._counts = {task_id: len(flows) for task_id, flows in incoming.items()}
        self._handlers: dict[str, tuple[str, ...]] = {}
        self._targets: dict[str, tuple[str, ...]] = {}
        self._plans: dict[Outcome, dict[str, _Plan]] = {outcome: {} for outcome in Outcome}
        for task_id, flows in outgoing.items():
            handlers = tuple(dict.fromkeys(f.target_task for f in flows if f.carries_error))
            if handlers:
                self._handlers[task_id] = handlers
            targets = self._targets[task_id] = tuple(dict.fromkeys(f.target_task for f in flows))
            last = {flow.target_task: index for index, flow in enumerate(flows)}
            for outcome in Outcome:
                edges = tuple(
                    (flow.target_task, _kills(flow, outcome), last[flow.target_task] == index)
                    for index, flow in enumerate(flows)
                )
                if outcome is Outcome.FAILED:
                    plan: _Plan = (edges, Step(handlers=handlers), None, len(targets))
                    self._plans[outcome][task_id] = (
                        plan if handlers else (None, RUN_FAILED, None, 0)
                    )
                else:
                    # The common answer (a chain's link, a fan-out) then costs no allocation.
                    every = Step(ready=targets) if outcome is Outcome.COMPLETED else None
                    self._plans[outcome][task_id] = (edges, NOTHING, every, len(targets))

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
        return self._targets[task_id]

    # -- the rules -----------------------------------------------------------------------
    def settle(self, task_id: str, outcome: Outcome, remaining: Remaining, dead: Dead) -> Step:
        """``task_id`` settled with ``outcome``: count it off the tasks it feeds in
        ``remaining``, add those it kills to ``dead`` (both must hold :meth:`targets`), and
        say what follows."""
        edges, quiet, every, n_targets = self._plans[outcome][task_id]
        if edges is None:
            return quiet  # an unhandled failure: nothing is counted off
        n_ready = n_skipped = 0
        for target, kills, last in edges:
            count = remaining[target] - 1
            remaining[target] = count
            if kills:
                dead.add(target)
            if last and count == 0:
                if target in dead:
                    n_skipped += 1
                else:
                    n_ready += 1
        if not n_skipped:
            if not n_ready:
                return quiet
            if n_ready == n_targets and every is not None:
                return every
        # Which ones: every target was counted off just now, so one at zero got there now.
        now_ready: list[str] = []
        now_skipped: list[str] = []
        for target in self._targets[task_id]:
            if remaining[target] == 0:
                (now_skipped if target in dead else now_ready).append(target)
        return Step(now_ready, now_skipped, quiet.handlers)

    def resumed(self, task_id: str, completed: Collection[str]) -> tuple[int, bool]:
        """The count of a task that did not complete and whether it is dead, when its run
        resumes with the tasks in ``completed`` (their outputs kept): it waits for its
        other sources, and a completed source's ``[error]`` branch stays dead, as it was in
        the first attempt."""
        remaining, dead = 0, False
        for flow in self._incoming[task_id]:
            if flow.source_task not in completed:
                remaining += 1
            elif flow.carries_error:
                dead = True
        return remaining, dead


def _kills(flow: DataFlow, outcome: Outcome) -> bool:
    """Whether a source settling with ``outcome`` kills the target of ``flow``: a success
    kills its ``[error]`` branches, a handled failure the others, a skip every one."""
    if outcome is Outcome.SKIPPED:
        return True
    return flow.carries_error != (outcome is Outcome.FAILED)


def error_payload(task_id: str, error: BaseException) -> dict[str, Any]:
    """What a failed task's ``[error]`` dataflows deliver: the original exception's type
    and message (for a :class:`TaskError` wrapping another exception, that one's), and the
    task's id."""
    cause = error.__cause__ if isinstance(error, TaskError) and error.__cause__ else error
    return {"type": type(cause).__name__, "message": str(cause), "task_id": task_id}
