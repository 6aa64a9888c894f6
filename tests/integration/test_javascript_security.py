"""Hostile JavaScript from a remote tenant, through a real ``graphmesh serve orchestrator``.

Each attack once ended or starved the server: a V8 out-of-memory abort killed the process
(and on Postgres came back with every restart until its job dead-lettered), limits came
from the caller, a cancelled script burned on, long scripts took every thread, and V8
could abort when a fresh process started many scripts at once. Now scripts run in sandbox
processes: the attack fails its own task, the server stays healthy, other work goes on.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.js_server import (
    Served,
    client,
    cpu_seconds,
    healthy,
    js_graph,
    js_task,
    run_js,
    sandboxes,
    serve,
    until,
)

from graphmesh.orchestrator.runs.records import RunState
from graphmesh.orchestrator.task.base import TaskStatus

V8_ABORT = "new Array(2**31).fill(0)"
STORES = ["memory", "sqlite", "postgres"]


@pytest.fixture(params=STORES)
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else None
    with serve(request.param, tmp_path, dsn=dsn) as started:
        yield started


async def test_a_v8_abort_fails_its_task_once_and_the_server_stays_up(served: Served) -> None:
    run = await run_js(served, js_graph(V8_ABORT))
    assert run.status == RunState.FAILED
    assert "JavaScriptMemoryError: JavaScript ran out of memory" in (run.error or "")
    (task,) = run.tasks
    assert (task.status, task.attempts) == (TaskStatus.FAILED, 1), "a permanent error"
    assert await healthy(served)
    after = await run_js(served, js_graph("input * 2", 21), tenant="b")
    assert after.status == RunState.COMPLETED, after.error


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"max_memory": 2 * 1024**3}, "config max_memory 2147483648 is more than this server"),
        ({"timeout_sec": 1e9}, "config timeout_sec 1e+09 is more than this server allows"),
    ],
)
async def test_limits_above_the_operators_maximum_are_refused(
    served: Served, config: dict[str, float], message: str
) -> None:
    run = await run_js(served, js_graph("1", **config))
    assert run.status == RunState.FAILED
    assert message in (run.error or "")
    assert run.tasks[0].attempts == 1


async def test_a_result_no_store_can_hold_fails_with_a_clear_error(served: Served) -> None:
    run = await run_js(served, js_graph("'a\\u0000b'"))
    assert run.status == RunState.FAILED
    assert "the JavaScript result holds a NUL character at output" in (run.error or "")
    assert run.tasks[0].attempts == 1
    assert "DETAIL" not in (run.error or "")


@pytest.mark.parametrize("store", ["memory"])
async def test_an_endless_loop_is_stopped_and_leaves_room_for_another_tenant(
    store: str, tmp_path: Path
) -> None:
    with serve(store, tmp_path) as served:
        stopped = await run_js(served, js_graph("while (true) {}", timeout_sec=0.5))
        assert "JavaScript ran longer than 0.5 s" in (stopped.error or "")
        # More endless loops than the old shared thread pool had threads.
        loops = min(32, (os.cpu_count() or 1) + 4) + 2
        async with client(served, "a") as tenant_a, client(served, "b") as tenant_b:
            graph = js_graph("while (true) {}", timeout_sec=25)
            runs = [await tenant_a.submit(graph) for _ in range(loops)]
            other = await tenant_b.submit(js_graph("'b ran'"))
            assert (await tenant_b.wait(other.run_id)).status == RunState.COMPLETED
            still = [(await tenant_a.get(run.run_id)).status for run in runs]
            assert not any(status.finished for status in still), "b waited for a's loops"
            for run in runs:
                await tenant_a.cancel(run.run_id)
        assert await healthy(served)


@pytest.mark.parametrize("store", STORES)
async def test_a_cancelled_run_ends_its_script(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    dsn = request.getfixturevalue("postgres_dsn") if store == "postgres" else None
    env = {"GRAPHMESH_JS_WARM_WORKERS": "0"}
    with serve(store, tmp_path, dsn=dsn, env=env) as served:
        async with client(served) as tenant:
            run = await tenant.submit(js_graph("while (true) {}", timeout_sec=25))
            await until(lambda: len(sandboxes(served)) == 1)
            (pid,) = sandboxes(served)
            await until(lambda: cpu_seconds(pid) > 0.5)  # well into the loop
            await tenant.cancel(run.run_id)
            assert (await tenant.wait(run.run_id)).status == RunState.CANCELLED
            await until(lambda: pid not in sandboxes(served), within=10)
        assert await healthy(served)


@pytest.mark.parametrize("attempt", range(8))  # it failed for 1 fresh server in 4
async def test_sixteen_parallel_js_tasks_on_a_fresh_server(attempt: int, tmp_path: Path) -> None:
    tasks = [js_task(f"js{i}", "input * input", i) for i in range(16)]
    with serve("memory", tmp_path, env={"GRAPHMESH_JS_WORKERS": "16"}) as served:
        run = await run_js(served, {"tasks": tasks, "dataflows": []})
        assert run.status == RunState.COMPLETED, run.error
        async with client(served) as tenant:
            outputs = await asyncio.gather(*(tenant.output(run.run_id, t["id"]) for t in tasks))
        assert [output["output"] for output in outputs] == [i * i for i in range(16)]
        assert await healthy(served)
