"""JavaScriptTask: real V8 (mini-racer) with its input, limits and sandbox."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from graphmesh.embedded import EmbeddedEngine
from graphmesh.orchestrator.catalog.errors import (
    JavaScriptError,
    JavaScriptMemoryError,
    JavaScriptTimeoutError,
)
from graphmesh.orchestrator.catalog.javascript import JavaScriptTask
from graphmesh.orchestrator.graph import DataFlow, TaskGraph
from graphmesh.orchestrator.runner import RunResult, TaskGraphRunner
from graphmesh.settings import EmbeddedSettings


async def run_js(code: str, input: Any = None, **config: Any) -> RunResult:
    task = JavaScriptTask(id="js", defaults={"code": code, "input": input}, config=config)
    return await TaskGraphRunner(TaskGraph([task])).run()


async def js_output(code: str, input: Any = None, **config: Any) -> Any:
    return (await run_js(code, input, **config)).raise_for_status().outputs["js"]["output"]


@pytest.mark.parametrize(
    ("code", "input", "expected"),
    [
        ("input * 2", 21, 42),
        ("input.a + input.b", {"a": 1, "b": 2}, 3),
        ("(input) => input.map(x => x * x)", [1, 2, 3], [1, 4, 9]),
        (
            "const n = input.length;\nreturn {n, upper: input.toUpperCase()};",
            "abc",
            {"n": 3, "upper": "ABC"},
        ),
        ("function main(input) { return input.filter(x => x > 1); }", [1, 2, 3], [2, 3]),
        ("input // a trailing comment", "kept", "kept"),
        ("undefined", None, None),
    ],
)
async def test_code_conventions_use_the_input(code: str, input: Any, expected: Any) -> None:
    assert await js_output(code, input) == expected


async def test_input_is_data_never_code() -> None:
    sneaky = '"); throw new Error("injected"); ("'
    assert await js_output("input + '!'", sneaky) == sneaky + "!"
    assert await js_output("typeof input", "globalThis.x = 1") == "string"


async def test_input_arrives_from_an_upstream_task() -> None:
    upstream = JavaScriptTask(id="a", defaults={"code": "[3, 4]"})
    square = JavaScriptTask(id="b", defaults={"code": "input.map(x => x * x)"})
    flow = DataFlow(source_task="a", source_port="output", target_task="b", target_port="input")
    result = await TaskGraphRunner(TaskGraph([upstream, square], [flow])).run()
    assert result.raise_for_status().output == {"output": [9, 16]}


async def test_each_run_gets_a_fresh_context() -> None:
    assert await js_output("globalThis.leak = 1; return 1") == 1
    assert await js_output("typeof globalThis.leak") == "undefined"


@pytest.mark.parametrize(
    "name", ["require", "fetch", "process", "XMLHttpRequest", "Deno", "Bun", "importScripts"]
)
async def test_no_host_apis_are_exposed(name: str) -> None:
    assert await js_output(f"typeof {name}") == "undefined"


@pytest.mark.parametrize("code", ["import('fs')", "async (input) => input"])
async def test_promises_are_refused_so_import_cannot_load_modules(code: str) -> None:
    result = await run_js(code)
    assert "the code returned a Promise" in (result.error or "")


async def test_a_js_exception_fails_the_task_with_the_js_message() -> None:
    result = await run_js("throw new Error('boom ' + input)", "7")
    assert not result.ok
    assert "JavaScriptError: Error: boom 7" in (result.error or "")


async def test_a_syntax_error_is_reported() -> None:
    result = await run_js("function (")
    assert "SyntaxError" in (result.error or "")


async def test_a_non_json_result_is_reported() -> None:
    result = await run_js("10n")
    assert "BigInt" in (result.error or "")


async def test_an_endless_loop_is_stopped_at_the_time_limit() -> None:
    started = time.perf_counter()
    result = await run_js("while (true) {}", timeout_sec=0.3)
    elapsed = time.perf_counter() - started
    assert "JavaScriptTimeoutError: JavaScript ran longer than 0.3 s" in (result.error or "")
    assert elapsed < 3


async def test_an_allocation_storm_is_stopped_at_the_memory_limit() -> None:
    code = "const a = []; while (true) { a.push(new Array(100000).fill(1)); }"
    result = await run_js(code, max_memory=32 * 1024 * 1024, timeout_sec=10)
    assert "JavaScriptMemoryError: JavaScript used more than 33554432 bytes" in (result.error or "")


async def test_the_event_loop_keeps_running_while_javascript_runs() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    await run_js("while (true) {}", timeout_sec=0.3)
    ticking.cancel()
    assert ticks >= 10


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"timeout_sec": 0}, "timeout_sec must be a positive number"),
        ({"max_memory": "1GB"}, "max_memory"),
    ],
)
async def test_bad_limits_are_refused(config: dict[str, Any], message: str) -> None:
    result = await run_js("1", **config)
    assert message in (result.error or "")


def test_error_types_form_a_tree() -> None:
    assert issubclass(JavaScriptTimeoutError, JavaScriptError)
    assert issubclass(JavaScriptMemoryError, JavaScriptError)


async def test_the_embedded_engine_runs_scripts_in_its_own_sandboxes(tmp_path: Path) -> None:
    settings = EmbeddedSettings(state_dir=tmp_path, cache=False)
    abort = JavaScriptTask(id="js", defaults={"code": "new Array(2**31).fill(0)"})
    async with EmbeddedEngine(settings) as engine:
        assert engine.sandbox is not None
        result = await engine.run(TaskGraph([abort]))
        assert "JavaScriptMemoryError: JavaScript ran out of memory" in (result.error or "")
        square = JavaScriptTask(id="js", defaults={"code": "input * input", "input": 9})
        assert (await engine.run(TaskGraph([square]))).raise_for_status().output == {"output": 81}
        assert engine.sandbox.pids(), "the engine's pool served the scripts"
        pids = engine.sandbox.pids()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids), "closed with the engine"  # noqa: ASYNC240
