"""SandboxPool with real worker processes: OS limits, deaths replaced, cancellation and
deadlines that kill, fairness between tenants, worker reuse and retirement."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support.js_server import until

from graphmesh.orchestrator.catalog.errors import (
    JavaScriptError,
    JavaScriptMemoryError,
    JavaScriptSandboxError,
    JavaScriptTimeoutError,
)
from graphmesh.orchestrator.catalog.javascript import JavaScriptTask
from graphmesh.orchestrator.graph import TaskGraph
from graphmesh.orchestrator.runner import TaskGraphRunner
from graphmesh.orchestrator.sandbox import (
    SANDBOX_RESOURCE,
    SandboxLimits,
    SandboxPool,
    SandboxSettings,
    Script,
)

MIB = 1024 * 1024
LIMITS = SandboxLimits(timeout_s=1.0, max_memory=64 * MIB)
V8_ABORT = "new Array(2**31).fill(0)"


def script(code: str, input: str = "null", **limits: Any) -> Script:
    return Script(code=code, input_json=input, limits=SandboxLimits(**{**vars(LIMITS), **limits}))


@pytest.fixture
async def pool() -> AsyncIterator[SandboxPool]:
    async with SandboxPool(SandboxSettings(workers=2, max_memory=128 * MIB)) as opened:
        yield opened


def alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def proc_limits(pid: int) -> dict[str, tuple[str, str]]:
    rows = Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]
    return {row[:26].strip(): (row[26:47].strip(), row[47:68].strip()) for row in rows}


async def test_a_warm_worker_runs_scripts_one_after_another(pool: SandboxPool) -> None:
    assert pool.counts()["idle"] == 1
    first = pool.pids()
    assert [await pool.run(script("input + 1", str(i)), tenant="a") for i in range(5)] == [
        1, 2, 3, 4, 5,
    ]  # fmt: skip
    assert pool.pids() == first, "the same warm worker served them all"


async def test_every_worker_is_locked_down(
    pool: SandboxPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPHMESH_TOKENS", '{"secret-token": "a"}')
    monkeypatch.setenv("PGPASSWORD", "secret")
    await pool.run(script("1"), tenant="a")
    pool.close()
    async with SandboxPool(SandboxSettings(workers=1)) as fresh:
        (pid,) = fresh.pids()
        assert_locked_down(pid)


def assert_locked_down(pid: int) -> None:
    limits = proc_limits(pid)
    assert limits["Max core file size"] == ("0", "0")
    assert limits["Max file size"] == ("0", "0")
    assert limits["Max open files"][1] == str(len(os.listdir(f"/proc/{pid}/fd")))
    for name in ("Max address space", "Max data size", "Max cpu time"):
        assert limits[name][1] != "unlimited", name
    targets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    assert all(t.startswith(("pipe:", "socket:", "anon_inode:")) for t in targets), targets
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except PermissionError:
        return  # not dumpable: not even its own user may read it
    assert b"secret" not in environ
    assert sorted(e.split(b"=")[0] for e in environ.split(b"\0") if e) == [b"LC_ALL", b"PATH"]


async def test_a_running_script_has_a_cpu_limit_near_its_timeout(pool: SandboxPool) -> None:
    running = asyncio.create_task(pool.run(script("while (true) {}", timeout_s=3), tenant="a"))
    await until(lambda: pool.counts()["busy"] == 1)
    (pid,) = pool.pids(busy=True)
    soft, hard = proc_limits(pid)["Max cpu time"]
    assert int(soft) <= 3 + 2 + 1 and int(hard) > int(soft)
    with pytest.raises(JavaScriptTimeoutError, match="longer than 3 s and was stopped"):
        await running


async def test_a_v8_abort_fails_its_script_and_the_worker_is_replaced(pool: SandboxPool) -> None:
    (first,) = pool.pids()
    with pytest.raises(JavaScriptMemoryError, match=r"ran out of memory .* sandbox was stopped"):
        await pool.run(script(V8_ABORT), tenant="a")
    assert not alive(first)
    await until(lambda: pool.counts()["idle"] == 1)
    assert await pool.run(script("'still here'"), tenant="a") == "still here"


async def test_a_crashed_worker_fails_its_script_only(pool: SandboxPool) -> None:
    running = asyncio.create_task(pool.run(script("while (true) {}", timeout_s=20), tenant="a"))
    await until(lambda: pool.counts()["busy"] == 1)
    (pid,) = pool.pids(busy=True)
    os.kill(pid, signal.SIGSEGV)
    with pytest.raises(JavaScriptSandboxError, match=r"process died \(SIGSEGV\)") as caught:
        await running
    assert caught.value.retryable is False
    assert await pool.run(script("2 + 2"), tenant="a") == 4


async def test_an_allocation_storm_stops_at_the_heap_limit_and_keeps_the_worker(
    pool: SandboxPool,
) -> None:
    storm = "const a = []; while (true) { a.push(new Array(100000).fill(1)); }"
    pids = pool.pids()
    with pytest.raises(JavaScriptMemoryError, match="more than 33554432 bytes"):
        await pool.run(script(storm, max_memory=32 * MIB, timeout_s=10), tenant="a")
    assert pool.pids() == pids


async def test_cancelling_a_script_kills_its_worker_at_once(pool: SandboxPool) -> None:
    running = asyncio.create_task(pool.run(script("while (true) {}", timeout_s=20), tenant="a"))
    await until(lambda: pool.counts()["busy"] == 1)
    (pid,) = pool.pids(busy=True)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert pool.slots.holders("a") == 0, "the slot is free as soon as the cancel lands"
    await until(lambda: not alive(pid))
    assert await pool.run(script("'next'"), tenant="a") == "next"


async def test_a_worker_that_stops_answering_is_killed_at_its_deadline() -> None:
    settings = SandboxSettings(workers=1, kill_grace_s=0.5)
    async with SandboxPool(settings) as pool:
        running = asyncio.create_task(pool.run(script("while (true) {}"), tenant="a"))
        await until(lambda: pool.counts()["busy"] == 1)
        (pid,) = pool.pids(busy=True)
        os.kill(pid, signal.SIGSTOP)  # V8 cannot stop the script; the pool must
        with pytest.raises(JavaScriptTimeoutError, match="its sandbox was stopped"):
            await running
        assert not alive(pid)


async def test_one_tenants_long_scripts_leave_room_for_another() -> None:
    async with SandboxPool(SandboxSettings(workers=2)) as pool:
        assert pool.slots.per_tenant == 1
        loops = [
            asyncio.create_task(pool.run(script("while (true) {}", timeout_s=20), tenant="a"))
            for _ in range(4)
        ]
        await until(lambda: pool.slots.waiting("a") == 3)
        assert await pool.run(script("'b ran'"), tenant="b") == "b ran"
        assert not any(loop.done() for loop in loops), "b did not wait for a's scripts"
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)


async def test_a_worker_retires_after_its_task_count() -> None:
    async with SandboxPool(SandboxSettings(workers=1, tasks_per_worker=2)) as pool:
        (first,) = pool.pids()
        for _ in range(2):
            await pool.run(script("1"), tenant=None)
        await until(lambda: first not in pool.pids() and pool.counts()["idle"] == 1)
        await until(lambda: not alive(first))
        assert await pool.run(script("3"), tenant=None) == 3


@pytest.mark.parametrize("attempt", range(3))
async def test_sixteen_scripts_at_once_on_a_fresh_pool(attempt: int) -> None:
    async with SandboxPool(SandboxSettings(workers=4, warm_workers=0)) as pool:
        scripts = [script("input * 2", str(i)) for i in range(16)]
        results = await asyncio.gather(*(pool.run(s, tenant=None) for s in scripts))
    assert results == [i * 2 for i in range(16)]


async def test_a_result_bigger_than_the_operator_allows_is_refused() -> None:
    async with SandboxPool(SandboxSettings(workers=1, max_output_bytes=4096)) as pool:
        with pytest.raises(JavaScriptError, match="more than this server allows \\(4096"):
            await pool.run(script("'x'.repeat(5000)"), tenant="a")
        assert await pool.run(script("'x'.repeat(100).length"), tenant="a") == 100


async def test_a_sandbox_that_cannot_start_is_a_retryable_error() -> None:
    pool = SandboxPool(SandboxSettings(workers=1, warm_workers=0, start_timeout_s=0.001))
    try:
        with pytest.raises(JavaScriptSandboxError, match="could not start") as caught:
            await pool.run(script("1"), tenant="a")
        assert caught.value.retryable is True
    finally:
        pool.close()


async def test_a_closed_pool_refuses_scripts() -> None:
    pool = SandboxPool(SandboxSettings(workers=1, warm_workers=0))
    pool.close()
    with pytest.raises(JavaScriptSandboxError, match="pool is closed"):
        await pool.run(script("1"), tenant="a")


async def test_a_task_uses_the_pool_its_runner_names_and_runs_as_its_tenant() -> None:
    async with SandboxPool(SandboxSettings(workers=1, max_timeout_s=5)) as pool:
        task = JavaScriptTask(id="js", defaults={"code": "2 * 21"}, config={"timeout_sec": 6})
        result = await TaskGraphRunner(TaskGraph([task]), resources={SANDBOX_RESOURCE: pool}).run()
        assert "config timeout_sec 6 is more than this server allows (5 s" in (result.error or "")
        task = JavaScriptTask(id="js", defaults={"code": "2 * 21"})
        runner = TaskGraphRunner(TaskGraph([task]), resources={SANDBOX_RESOURCE: pool})
        assert (await runner.run()).raise_for_status().outputs["js"]["output"] == 42
