"""TaskGraphRunner when things go wrong: failures, error ports, deadlines and cancellation.

No test sleeps to order events: tasks wait on named asyncio.Events (``Signals``). Deadlines
are tiny and only ever hit tasks that wait forever, so no assertion depends on timing.
"""

from __future__ import annotations

import asyncio

import pytest
from tasks import (
    AddArray,
    Compound,
    Echo,
    Empty,
    Fail,
    Gate,
    Handler,
    Needs,
    NotDict,
    Recorder,
    Signals,
)

from graphmesh.orchestrator.graph import ERROR_PORT, DataFlow, TaskGraph
from graphmesh.orchestrator.runner import (
    RunFailedError,
    RunResult,
    RunStatus,
    TaskCall,
    TaskGraphRunner,
)
from graphmesh.orchestrator.runner.middleware import Handler as CallHandler
from graphmesh.orchestrator.task import TaskEvent, TaskOutput, TaskStatus

START, ERROR, ABORT, COMPLETE = (
    TaskEvent.START,
    TaskEvent.ERROR,
    TaskEvent.ABORT,
    TaskEvent.COMPLETE,
)
FOREVER = {"wait": "never"}  # nobody sets the "never" event
GUARD_S = 30  # only turns a hang into a failure; never reached by a passing test


def df(
    source: str, target: str, source_port: str = "output", target_port: str = "input"
) -> DataFlow:
    return DataFlow(
        source_task=source, source_port=source_port, target_task=target, target_port=target_port
    )


def statuses(result: RunResult) -> dict[str, TaskStatus]:
    return {task_id: task.status for task_id, task in result.tasks.items()}


async def run(runner: TaskGraphRunner, **kwargs: float) -> RunResult:
    async with asyncio.timeout(GUARD_S):
        return await runner.run(**kwargs)  # type: ignore[arg-type]


# -- a failing task ---------------------------------------------------------------------------


async def test_a_failing_task_fails_the_run(signals: Signals, recorder: Recorder) -> None:
    graph = TaskGraph([Fail(id="bad", config={"message": "kaput"})])
    result = await run(TaskGraphRunner(graph, resources={"signals": signals}, listener=recorder))
    assert result.status == RunStatus.FAILED and not result.ok
    assert result.error == "task 'bad': ValueError: kaput"
    assert result.tasks["bad"].status == TaskStatus.FAILED
    assert result.tasks["bad"].error == "task 'bad': ValueError: kaput"
    assert result.tasks["bad"].output == {}
    assert recorder.kinds("bad") == [START, ERROR]
    assert recorder.events[-1].error == "task 'bad': ValueError: kaput"
    with pytest.raises(RunFailedError, match=r"failed: task 'bad': ValueError: kaput"):
        result.raise_for_status()


async def test_running_siblings_are_aborted_and_pending_tasks_skipped(
    signals: Signals, recorder: Recorder
) -> None:
    graph = TaskGraph(
        [
            Gate(id="sibling", config=FOREVER),
            Fail(id="bad", config={"wait": "sibling.started"}),
            Gate(id="after_sibling"),
            Gate(id="after_bad"),
        ],
        [df("sibling", "after_sibling"), df("bad", "after_bad")],
    )
    result = await run(TaskGraphRunner(graph, resources={"signals": signals}, listener=recorder))
    assert result.status == RunStatus.FAILED
    assert result.error is not None and "ValueError: boom" in result.error
    assert statuses(result) == {
        "sibling": TaskStatus.FAILED,
        "bad": TaskStatus.FAILED,
        "after_sibling": TaskStatus.SKIPPED,
        "after_bad": TaskStatus.SKIPPED,
    }
    assert result.tasks["sibling"].error == "task 'sibling': aborted"
    assert signals.is_set("sibling.cancelled")  # its coroutine saw CancelledError
    # The failing task keeps its own error and status; only the sibling is aborted.
    assert recorder.kinds("bad") == [START, ERROR]
    sibling = [e for e in recorder.events if e.task_id == "sibling"]
    assert [e.kind for e in sibling] == [START, ABORT, ABORT]
    assert [e.status for e in sibling] == [
        TaskStatus.PROCESSING,
        TaskStatus.ABORTING,
        TaskStatus.FAILED,
    ]
    assert "boom" in sibling[1].message
    assert recorder.kinds("after_sibling") == recorder.kinds("after_bad") == [ABORT]


async def test_a_sibling_aborted_before_it_ever_ran_settles(
    signals: Signals, recorder: Recorder
) -> None:
    # "bad" fails before the loop has stepped "late" even once.
    graph = TaskGraph([Fail(id="bad"), Gate(id="late", config=FOREVER)])
    result = await run(TaskGraphRunner(graph, resources={"signals": signals}, listener=recorder))
    assert statuses(result) == {"bad": TaskStatus.FAILED, "late": TaskStatus.FAILED}
    assert result.tasks["late"].error == "task 'late': aborted"
    late = graph.get_task("late")
    assert isinstance(late, Gate)
    assert late.runs == 0
    assert recorder.kinds("late")[-1] == ABORT


async def test_the_run_can_be_repeated_after_a_failure(signals: Signals) -> None:
    graph = TaskGraph([Gate(id="g"), Fail(id="bad")], [df("g", "bad")])
    runner = TaskGraphRunner(graph, resources={"signals": signals})
    assert (await run(runner)).status == RunStatus.FAILED
    graph.remove_task("bad")
    result = await run(runner)
    assert result.ok
    assert statuses(result) == {"g": TaskStatus.COMPLETED}


# -- error ports ------------------------------------------------------------------------------


async def test_a_wired_error_port_keeps_the_run_going(signals: Signals, recorder: Recorder) -> None:
    graph = TaskGraph(
        [
            Fail(id="bad", config={"message": "kaput"}),
            Handler(id="handler"),
            Echo(id="after_handler"),
            Gate(id="after_bad"),
            Gate(id="unrelated"),
        ],
        [
            df("bad", "handler", ERROR_PORT, "error"),
            df("handler", "after_handler", "handled", "value"),
            df("bad", "after_bad"),
        ],
    )
    result = await run(TaskGraphRunner(graph, resources={"signals": signals}, listener=recorder))
    assert result.status == RunStatus.COMPLETED
    payload = {"type": "ValueError", "message": "kaput", "task_id": "bad"}
    assert result.outputs["handler"] == {"handled": payload}
    assert result.outputs["after_handler"] == {"value": payload}
    assert statuses(result) == {
        "bad": TaskStatus.FAILED,
        "handler": TaskStatus.COMPLETED,
        "after_handler": TaskStatus.COMPLETED,
        "after_bad": TaskStatus.SKIPPED,
        "unrelated": TaskStatus.COMPLETED,
    }
    assert recorder.kinds("bad") == [START, ERROR]
    assert recorder.kinds("after_bad") == [ABORT]


async def test_error_port_receives_a_timeout(signals: Signals) -> None:
    graph = TaskGraph(
        [Gate(id="slow", config={**FOREVER, "timeout": 0.01}), Handler(id="handler")],
        [df("slow", "handler", ERROR_PORT, "error")],
    )
    result = await run(TaskGraphRunner(graph, resources={"signals": signals}))
    assert result.ok
    error = result.outputs["handler"]["handled"]
    assert error["type"] == "TaskTimeoutError" and error["task_id"] == "slow"
    assert "timed out after 0.01 s" in error["message"]


async def test_an_error_handler_of_a_task_that_succeeded_is_skipped(signals: Signals) -> None:
    graph = TaskGraph(
        [Gate(id="fine"), Handler(id="handler"), Echo(id="after_handler")],
        [
            df("fine", "handler", ERROR_PORT, "error"),
            df("handler", "after_handler", "handled", "value"),
        ],
    )
    result = await run(TaskGraphRunner(graph, resources={"signals": signals}))
    assert result.status == RunStatus.COMPLETED
    assert statuses(result) == {
        "fine": TaskStatus.COMPLETED,
        "handler": TaskStatus.SKIPPED,
        "after_handler": TaskStatus.SKIPPED,
    }
    handler = graph.get_task("handler")
    assert isinstance(handler, Handler)
    assert handler.runs == 0


async def test_a_long_chain_below_a_handled_failure_is_skipped(signals: Signals) -> None:
    length = 3000  # deeper than the recursion limit
    tasks = [Fail(id="bad"), Handler(id="handler")] + [Gate(id=f"g{i}") for i in range(length)]
    flows = [df("bad", "handler", ERROR_PORT, "error"), df("bad", "g0")]
    flows += [df(f"g{i - 1}", f"g{i}") for i in range(1, length)]
    result = await run(TaskGraphRunner(TaskGraph(tasks, flows), resources={"signals": signals}))
    assert result.ok
    assert result.tasks[f"g{length - 1}"].status == TaskStatus.SKIPPED
    assert result.tasks["handler"].status == TaskStatus.COMPLETED


# -- bad task behaviour -----------------------------------------------------------------------


async def test_a_task_returning_a_non_dict_fails_clearly() -> None:
    result = await run(TaskGraphRunner(TaskGraph([NotDict(id="nd")])))
    assert result.status == RunStatus.FAILED
    assert result.tasks["nd"].error == "task 'nd': run() returned list, expected a dict of outputs"


async def test_a_missing_required_input_at_run_time_names_the_port(recorder: Recorder) -> None:
    # Wired, so validation passes, but the source never produces the value.
    graph = TaskGraph(
        [Empty(id="src"), Needs(id="dst")],
        [DataFlow(source_task="src", source_port="output", target_task="dst", target_port="text")],
    )
    result = await run(TaskGraphRunner(graph, listener=recorder))
    assert result.status == RunStatus.FAILED
    assert result.tasks["dst"].error == "task 'dst': missing required input(s) 'text'"
    assert result.tasks["src"].status == TaskStatus.COMPLETED
    assert recorder.kinds("dst") == [ERROR]


async def test_a_failing_middleware_fails_the_task(signals: Signals) -> None:
    async def broken(call: TaskCall, call_next: CallHandler) -> TaskOutput:
        raise RuntimeError("middleware broke")

    result = await run(TaskGraphRunner(TaskGraph([Gate(id="g")]), middleware=[broken]))
    assert result.tasks["g"].error == "task 'g': RuntimeError: middleware broke"


async def test_a_failure_inside_a_compound_fails_the_compound(recorder: Recorder) -> None:
    inner = TaskGraph([Fail(id="inner", config={"message": "deep"})])
    graph = TaskGraph(
        [Compound(id="comp", subgraph=inner), Echo(id="after")],
        [df("comp", "after", target_port="value")],
    )
    result = await run(TaskGraphRunner(graph, resources={"signals": Signals()}, listener=recorder))
    assert result.status == RunStatus.FAILED
    error = result.tasks["comp"].error
    assert error is not None
    assert error.startswith("task 'comp': subgraph failed: ") and "ValueError: deep" in error
    assert recorder.kinds("comp/inner") == [START, ERROR]
    assert recorder.kinds("comp") == [START, ERROR]
    assert result.tasks["after"].status == TaskStatus.SKIPPED


async def test_a_failing_array_child_fails_the_array_task() -> None:
    graph = TaskGraph([AddArray(id="arr", defaults={"a": [1, "x"], "b": [1]})])
    result = await run(TaskGraphRunner(graph))
    assert result.status == RunStatus.FAILED
    error = result.tasks["arr"].error
    assert error is not None and "TypeError" in error and "arr[1]" in error


# -- deadlines --------------------------------------------------------------------------------


async def test_task_timeout_from_config(signals: Signals) -> None:
    graph = TaskGraph(
        [Gate(id="stuck", config={**FOREVER, "timeout": 0.01}), Gate(id="after")],
        [df("stuck", "after")],
    )
    result = await run(TaskGraphRunner(graph, resources={"signals": signals}))
    assert result.status == RunStatus.FAILED
    assert result.tasks["stuck"].error == "task 'stuck': timed out after 0.01 s"
    assert result.tasks["after"].status == TaskStatus.SKIPPED
    assert signals.is_set("stuck.cancelled")


async def test_task_timeout_from_the_runner(signals: Signals) -> None:
    graph = TaskGraph([Gate(id="stuck", config=FOREVER)])
    result = await run(TaskGraphRunner(graph, resources={"signals": signals}, task_timeout=0.01))
    assert result.status == RunStatus.FAILED
    assert result.tasks["stuck"].error == "task 'stuck': timed out after 0.01 s"
    assert signals.is_set("stuck.cancelled")


async def test_graph_timeout_times_the_run_out(signals: Signals, recorder: Recorder) -> None:
    graph = TaskGraph(
        [Gate(id="stuck", config=FOREVER), Gate(id="done"), Gate(id="after")],
        [df("stuck", "after")],
    )
    runner = TaskGraphRunner(graph, resources={"signals": signals}, listener=recorder)
    result = await run(runner, timeout=0.01)
    assert result.status == RunStatus.TIMED_OUT
    assert result.error == "graph timed out after 0.01 s"
    assert statuses(result) == {
        "stuck": TaskStatus.FAILED,
        "done": TaskStatus.COMPLETED,
        "after": TaskStatus.SKIPPED,
    }
    assert result.tasks["stuck"].error == "task 'stuck': aborted"
    assert signals.is_set("stuck.cancelled")
    assert ABORT in recorder.kinds("stuck")
    with pytest.raises(RunFailedError, match="timed_out"):
        result.raise_for_status()


async def test_graph_timeout_reaches_tasks_inside_compounds(signals: Signals) -> None:
    graph = TaskGraph([Compound(id="comp", subgraph=TaskGraph([Gate(id="leaf", config=FOREVER)]))])
    result = await run(TaskGraphRunner(graph, resources={"signals": signals}), timeout=0.01)
    assert result.status == RunStatus.TIMED_OUT
    assert signals.is_set("leaf.cancelled")


# -- cancellation -----------------------------------------------------------------------------


async def test_runner_cancel_ends_the_run_as_cancelled(
    signals: Signals, recorder: Recorder
) -> None:
    graph = TaskGraph([Gate(id="stuck", config=FOREVER), Gate(id="after")], [df("stuck", "after")])
    runner = TaskGraphRunner(graph, resources={"signals": signals}, listener=recorder)
    running = asyncio.create_task(run(runner))
    await signals["stuck.started"].wait()
    runner.cancel()
    result = await running
    assert result.status == RunStatus.CANCELLED
    assert result.error == "the run was cancelled"
    assert statuses(result) == {"stuck": TaskStatus.FAILED, "after": TaskStatus.SKIPPED}
    assert signals.is_set("stuck.cancelled")
    assert recorder.kinds("stuck") == [START, ABORT, ABORT]
    assert recorder.kinds("after") == [ABORT]


async def test_the_run_can_be_repeated_after_a_cancel(signals: Signals) -> None:
    graph = TaskGraph([Gate(id="stuck", config=FOREVER), Gate(id="after")], [df("stuck", "after")])
    runner = TaskGraphRunner(graph, resources={"signals": signals})
    running = asyncio.create_task(run(runner))
    await signals["stuck.started"].wait()
    runner.cancel()
    assert (await running).status == RunStatus.CANCELLED
    signals["never"].set()
    result = await run(runner)
    assert result.ok
    assert result.outputs["after"] == {"output": "stuck"}


async def test_cancel_without_a_run_does_nothing() -> None:
    runner = TaskGraphRunner(TaskGraph([Echo(id="e")]))
    runner.cancel()
    assert (await run(runner)).ok


async def test_cancelling_the_caller_propagates_to_running_tasks(signals: Signals) -> None:
    graph = TaskGraph(
        [
            Gate(id="stuck", config=FOREVER),
            Compound(id="comp", subgraph=TaskGraph([Gate(id="leaf", config=FOREVER)])),
        ]
    )
    runner = TaskGraphRunner(graph, resources={"signals": signals})
    running = asyncio.create_task(runner.run())
    await signals["stuck.started"].wait()
    await signals["leaf.started"].wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    # Each task's coroutine saw the cancellation, as a remote call would.
    assert signals.is_set("stuck.cancelled")
    assert signals.is_set("leaf.cancelled")
    assert graph.get_task("stuck").status == TaskStatus.FAILED
    assert graph.get_task("comp").status == TaskStatus.FAILED
