"""The run rules (graph/progression.py): what a settled task does to the rest of its run.

Graphs are written as edges: ``"a>b"`` is a dataflow ``a.output -> b.input``, ``"a!>b"`` an
``[error]`` dataflow ``a.[error] -> b.error``.
"""

from __future__ import annotations

from collections import deque

import pytest
from tasks import Square

from graphmesh.orchestrator.errors import TaskFailedError, TaskTimeoutError
from graphmesh.orchestrator.graph import ERROR_PORT, DataFlow, TaskGraph
from graphmesh.orchestrator.graph.progression import (
    NOTHING,
    Outcome,
    Progression,
    Step,
    error_payload,
)

COMPLETED, FAILED, SKIPPED = Outcome.COMPLETED, Outcome.FAILED, Outcome.SKIPPED


def rules(*edges: str, tasks: str = "") -> Progression:
    flows = []
    for edge in edges:
        if "!>" in edge:
            source, target = edge.split("!>")
            ports = (ERROR_PORT, "error")
        else:
            source, target = edge.split(">")
            ports = ("output", "input")
        flows.append(
            DataFlow(
                source_task=source, source_port=ports[0], target_task=target, target_port=ports[1]
            )
        )
    ids = dict.fromkeys(
        [*tasks.split(), *(t for f in flows for t in (f.source_task, f.target_task))]
    )
    return Progression(ids, flows)


def decided(step: Step) -> tuple[list[str], list[str], tuple[str, ...], bool]:
    return list(step.ready), list(step.skipped), step.handlers, step.run_failed


def run(progression: Progression, outcomes: dict[str, Outcome]) -> tuple[dict[str, str], bool]:
    """Drive a whole run as an engine does: start the roots, settle each started task with
    its outcome (default COMPLETED), start what becomes ready, skip what becomes ready dead.
    Returns each task's end ("ran", "failed", "skipped", or "pending": never reached) and
    whether the run failed."""
    remaining, dead = progression.counts(), set[str]()
    ended = dict.fromkeys(progression.task_ids, "pending")
    ready = deque(t for t, count in remaining.items() if count == 0)
    failed_run = False
    while ready and not failed_run:
        task_id = ready.popleft()
        outcome = outcomes.get(task_id, COMPLETED)
        ended[task_id] = "failed" if outcome is FAILED else "ran"
        step = progression.settle(task_id, outcome, remaining, dead)
        failed_run = step.run_failed
        ready.extend(step.ready)
        skipping = list(step.skipped)
        while skipping:
            skipped = skipping.pop()
            ended[skipped] = "skipped"
            below = progression.settle(skipped, SKIPPED, remaining, dead)
            assert not below.ready, "a skip kills every task it feeds"
            skipping.extend(below.skipped)
    return ended, failed_run


# -- one step ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edges", "counters", "task_id", "outcome", "expected"),
    [
        pytest.param(["a>b"], {"b": 1}, "a", COMPLETED, Step(ready=["b"]), id="chain"),
        pytest.param(
            ["a>b", "a>c"], {"b": 1, "c": 1}, "a", COMPLETED, Step(["b", "c"]), id="fan-out"
        ),
        pytest.param(["a>c", "b>c"], {"c": 2}, "a", COMPLETED, NOTHING, id="join waits"),
        pytest.param(
            ["a>b", "a>c", "x>c"],
            {"b": 1, "c": 2},
            "a",
            COMPLETED,
            Step(["b"]),
            id="fan-out into a join: only the free target",
        ),
        pytest.param(["a>c", "b>c"], {"c": 1}, "b", COMPLETED, Step(["c"]), id="join ready"),
        pytest.param(
            ["a>b", "a!>h"],
            {"b": 1, "h": 1},
            "a",
            COMPLETED,
            Step(["b"], ["h"]),
            id="success kills its error handler",
        ),
        pytest.param(
            ["a>b", "a!>h"],
            {"b": 1, "h": 1},
            "a",
            FAILED,
            Step(["h"], ["b"], ("h",)),
            id="handled failure routes to the handler",
        ),
        pytest.param(["a>b"], {"b": 1}, "a", FAILED, Step(run_failed=True), id="unhandled failure"),
        pytest.param(["a>b"], {"b": 1}, "a", SKIPPED, Step([], ["b"]), id="skip kills"),
        pytest.param(["a>c", "b>c"], {"c": 2}, "a", SKIPPED, NOTHING, id="dead join waits"),
        pytest.param(["t>e"], {"e": 1}, "e", COMPLETED, NOTHING, id="a sink"),
        pytest.param(
            ["a!>h", "a>b"],
            {"h": 0, "b": 1},
            "a",
            COMPLETED,
            Step(["b"]),
            id="a resumed run: a target that ran already is not made ready again",
        ),
    ],
)
def test_one_settled_task(
    edges: list[str],
    counters: dict[str, int],
    task_id: str,
    outcome: Outcome,
    expected: Step,
) -> None:
    progression = rules(*edges)
    assert decided(progression.settle(task_id, outcome, dict(counters), set())) == decided(expected)


def test_counters_record_the_count_and_the_kill() -> None:
    progression = rules("a>c", "b>c", "a!>h")
    remaining, dead = progression.counts(), set[str]()
    assert remaining == {"a": 0, "c": 2, "b": 0, "h": 1}
    assert progression.counts() is not remaining  # fresh for every run
    progression.settle("a", FAILED, remaining, dead)
    assert (remaining["c"], "c" in dead) == (1, True)
    assert (remaining["h"], "h" in dead) == (0, False)
    # The other source's success does not revive a killed task: it is skipped when ready.
    step = progression.settle("b", COMPLETED, remaining, dead)
    assert decided(step) == decided(Step((), ["c"]))


def test_two_dataflows_from_one_task_into_one_target_make_it_ready_once() -> None:
    flows = [  # two ports of a feeding two ports of b
        DataFlow(source_task="a", source_port=p, target_task="b", target_port=p) for p in ("x", "y")
    ]
    progression = Progression(["a", "b"], flows)
    remaining = progression.counts()
    assert remaining["b"] == 2
    assert list(progression.settle("a", COMPLETED, remaining, set()).ready) == ["b"]
    assert remaining["b"] == 0


def test_targets_are_what_settle_reads() -> None:
    progression = rules("a>b", "a>c", "a>b2", "h!>x", "h>y", tasks="lone")
    assert progression.targets("a", COMPLETED) == ("b", "c", "b2")
    assert progression.targets("a", FAILED) == ()  # unhandled: nothing is counted off
    assert progression.targets("h", FAILED) == ("x", "y")
    assert progression.targets("lone", SKIPPED) == ()
    assert (progression.handles_errors("h"), progression.handles_errors("a")) == (True, False)
    assert progression.handlers("h") == ("x",)


# -- whole runs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edges", "outcomes", "ends", "run_failed"),
    [
        pytest.param(
            ["a>b", "a>c", "b>d", "c>d"],
            {},
            {"a": "ran", "b": "ran", "c": "ran", "d": "ran"},
            False,
            id="diamond",
        ),
        pytest.param(
            ["a>b", "a>c", "b>d", "c>d", "b!>h"],
            {"b": FAILED},
            {"a": "ran", "b": "failed", "c": "ran", "d": "skipped", "h": "ran"},
            False,
            id="diamond with a handled failure on one side: the join is dead",
        ),
        pytest.param(
            ["a>b", "a>c", "b>d", "c>d"],
            {"b": FAILED},
            {"a": "ran", "b": "failed", "c": "pending", "d": "pending"},
            True,
            id="diamond with an unhandled failure fails the run (c, queued after b, never starts)",
        ),
        pytest.param(
            ["a>b", "b>c", "c>d", "a!>h", "h>i"],
            {"a": FAILED},
            {"a": "failed", "b": "skipped", "c": "skipped", "d": "skipped", "h": "ran", "i": "ran"},
            False,
            id="a handled failure skips the whole normal branch and runs the handler's",
        ),
        pytest.param(
            ["a>b", "a!>h", "h>i", "i>j"],
            {},
            {"a": "ran", "b": "ran", "h": "skipped", "i": "skipped", "j": "skipped"},
            False,
            id="a success skips the whole error branch",
        ),
        pytest.param(
            ["a!>h", "b>h"],
            {"a": FAILED},
            {"a": "failed", "b": "ran", "h": "ran"},
            False,
            id="a handler joining a live branch runs once both arrived",
        ),
        pytest.param(
            ["a!>h", "b>h"],
            {},
            {"a": "ran", "b": "ran", "h": "skipped"},
            False,
            id="a dead task becomes ready and is skipped, though its other source completed",
        ),
        pytest.param(
            ["a>b", "b!>h", "h>x", "c>x"],
            {"b": FAILED, "h": FAILED},
            {"a": "ran", "b": "failed", "h": "failed", "c": "ran", "x": "pending"},
            True,
            id="a handler's own unhandled failure fails the run",
        ),
    ],
)
def test_whole_runs(
    edges: list[str], outcomes: dict[str, Outcome], ends: dict[str, str], run_failed: bool
) -> None:
    assert run(rules(*edges), outcomes) == (ends, run_failed)


def test_a_long_dead_chain_is_skipped_without_recursion() -> None:
    edges = [f"t{i}>t{i + 1}" for i in range(5_000)]
    ends, failed = run(rules("root!>t0", *edges), {})
    assert not failed
    assert ends["root"] == "ran"
    assert {ends[f"t{i}"] for i in range(5_001)} == {"skipped"}


# -- resuming ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edges", "task_id", "completed", "remaining", "dead"),
    [
        pytest.param(["a>c", "b>c"], "c", {"a"}, 1, False, id="waits for the others"),
        pytest.param(["a>c", "b>c"], "c", {"a", "b"}, 0, False, id="ready at once"),
        pytest.param(["a!>h"], "h", {"a"}, 0, True, id="a completed source's handler stays dead"),
        pytest.param(["a!>h"], "h", set(), 1, False, id="a failed source's handler waits"),
    ],
)
def test_a_resumed_task_counts_only_the_sources_that_must_run_again(
    edges: list[str], task_id: str, completed: set[str], remaining: int, dead: bool
) -> None:
    assert rules(*edges).resumed(task_id, completed) == (remaining, dead)


# -- the error payload -----------------------------------------------------------------------


def test_the_error_payload_names_the_original_exception() -> None:
    cause = ValueError("bad value")
    wrapped = TaskFailedError("t", "ValueError: bad value")
    wrapped.__cause__ = cause
    assert error_payload("t", wrapped) == {
        "type": "ValueError",
        "message": "bad value",
        "task_id": "t",
    }
    timeout = TaskTimeoutError("t", "timed out after 1 s")
    assert error_payload("t", timeout)["type"] == "TaskTimeoutError"
    # Not a task error: the exception itself, whatever it was raised from.
    try:
        try:
            raise KeyError("k")
        except KeyError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as raw:
        assert error_payload("t", raw)["type"] == "RuntimeError"


def test_the_plan_is_cached_per_graph_revision() -> None:
    graph = TaskGraph([Square(id="a"), Square(id="b")])
    first = graph.progression()
    assert graph.progression() is first
    graph.add_dataflow(
        DataFlow(source_task="a", source_port="output", target_task="b", target_port="input")
    )
    assert graph.progression() is not first
    assert graph.progression().incoming_count("b") == 1
