"""DebugLogTask, LambdaTask and JsonTask through the real runner."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from graphmesh.orchestrator.ai.testing import FakeModelClient
from graphmesh.orchestrator.catalog.utility import DebugLogTask, JsonTask, LambdaTask
from graphmesh.orchestrator.graph import DataFlow, TaskGraph, graph_from_json, graph_to_json
from graphmesh.orchestrator.runner import RunResult, RunStatus, TaskGraphRunner
from graphmesh.orchestrator.storage.memory import MemoryOutputRepository
from graphmesh.orchestrator.task import Task

LOGGER = "graphmesh.orchestrator.catalog.utility"


async def run(*tasks: Task, flows: tuple[DataFlow, ...] = (), **kwargs: Any) -> RunResult:
    return await TaskGraphRunner(TaskGraph(tasks, flows), **kwargs).run()


# -- DebugLogTask -----------------------------------------------------------------------
async def test_debug_log_logs_at_its_level_and_passes_the_message_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    message = {"rows": 3, "ok": True}
    task = DebugLogTask(id="log", defaults={"message": message, "level": "warning"})
    result = (await run(task)).raise_for_status()
    assert result.outputs["log"] == {"message": message}
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == '[log] {"rows": 3, "ok": true}'


async def test_debug_log_defaults_to_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    (await run(DebugLogTask(id="log", defaults={"message": "hi"}))).raise_for_status()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.INFO, "[log] hi")]


async def test_debug_log_refuses_an_unknown_level() -> None:
    result = await run(DebugLogTask(id="log", defaults={"message": "x", "level": "loud"}))
    assert result.status == RunStatus.FAILED
    assert "'loud' is not one of debug, info, warning, error" in (result.error or "")


async def test_debug_log_always_runs_even_with_a_cache(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    runner = TaskGraphRunner(
        TaskGraph([DebugLogTask(id="log", defaults={"message": "x"})]),
        repository=MemoryOutputRepository(),
    )
    for _ in range(2):
        (await runner.run()).raise_for_status()
    assert len(caplog.records) == 2


# -- LambdaTask -------------------------------------------------------------------------
async def test_lambda_calls_a_sync_function_on_its_input() -> None:
    result = await run(LambdaTask(id="fn", defaults={"fn": lambda x: x * 2, "input": 21}))
    assert result.raise_for_status().outputs["fn"] == {"output": 42}


async def test_lambda_awaits_an_async_function() -> None:
    async def shout(text: str) -> str:
        await asyncio.sleep(0)
        return text.upper()

    result = await run(LambdaTask(id="fn", defaults={"fn": shout, "input": "hi"}))
    assert result.raise_for_status().outputs["fn"] == {"output": "HI"}


async def test_lambda_gets_its_input_from_upstream() -> None:
    source = LambdaTask(id="a", defaults={"fn": lambda _: [1, 2, 3]})
    total = LambdaTask(id="b", defaults={"fn": sum})
    flow = DataFlow(source_task="a", source_port="output", target_task="b", target_port="input")
    result = await run(source, total, flows=(flow,))
    assert result.raise_for_status().output == {"output": 6}


@pytest.mark.parametrize("fn", ["os.system", None, 3])
async def test_lambda_refuses_anything_but_a_callable(fn: object) -> None:
    result = await run(LambdaTask(id="fn", defaults={"fn": fn, "input": 1}))
    assert result.status == RunStatus.FAILED
    assert "fn must be a Python callable given in process" in (result.error or "")


async def test_lambda_without_fn_is_an_invalid_graph() -> None:
    issues = TaskGraph([LambdaTask(id="fn")]).validate()
    assert [(i.code, i.port) for i in issues] == [("missing_input", "fn")]


async def test_lambda_errors_propagate_with_their_message() -> None:
    def boom(_: object) -> None:
        raise ValueError("bad input 7")

    result = await run(LambdaTask(id="fn", defaults={"fn": boom}))
    assert result.status == RunStatus.FAILED
    assert "ValueError: bad input 7" in (result.error or "")


async def test_lambda_is_never_cached() -> None:
    calls: list[int] = []
    task = LambdaTask(id="fn", defaults={"fn": lambda x: calls.append(x), "input": 1})
    runner = TaskGraphRunner(TaskGraph([task]), repository=MemoryOutputRepository())
    for _ in range(2):
        (await runner.run()).raise_for_status()
    assert calls == [1, 1]


# -- JsonTask ---------------------------------------------------------------------------
SUMMARY_THEN_TRANSLATION = {
    "tasks": [
        {"id": "sum", "type": "TextSummaryTask", "defaults": {}, "config": {}},
        {"id": "tr", "type": "TextTranslationTask", "defaults": {"target": "de"}, "config": {}},
    ],
    "dataflows": [
        {"source_task": "sum", "source_port": "text", "target_task": "tr", "target_port": "text"}
    ],
}


@pytest.mark.parametrize("form", ["object", "string"])
async def test_json_task_runs_graph_json_with_its_input(form: str) -> None:
    graph_json = (
        SUMMARY_THEN_TRANSLATION if form == "object" else json.dumps(SUMMARY_THEN_TRANSLATION)
    )
    task = JsonTask(id="j", defaults={"json": graph_json, "input": {"text": "story"}})
    result = await run(task, models=FakeModelClient())
    assert result.raise_for_status().outputs["j"] == {"output": {"text": "[en->de] summary: story"}}


async def test_json_task_runs_dependency_json() -> None:
    items = [
        {"id": "sum", "type": "TextSummaryTask", "input": {"text": "story"}},
        {
            "id": "tr",
            "type": "TextTranslationTask",
            "input": {},
            "dependencies": {"text": {"id": "sum", "output": "text"}},
        },
    ]
    result = await run(JsonTask(id="j", defaults={"json": items}), models=FakeModelClient())
    assert result.raise_for_status().outputs["j"] == {"output": {"text": "[en->fr] summary: story"}}


async def test_json_task_reports_an_invalid_graph() -> None:
    bad = {"tasks": [{"id": "x", "type": "NoSuchTask"}], "dataflows": []}
    result = await run(JsonTask(id="j", defaults={"json": bad}))
    assert result.status == RunStatus.FAILED
    assert "unknown task type 'NoSuchTask'" in (result.error or "")


async def test_json_task_reports_a_failing_subtask() -> None:
    graph_json = {"tasks": [{"id": "s", "type": "TextSummaryTask", "defaults": {"text": "x"}}]}
    result = await run(JsonTask(id="j", defaults={"json": graph_json}))
    assert result.status == RunStatus.FAILED
    assert "subgraph failed" in (result.error or "")
    assert "no ModelClient" in (result.error or "")


async def test_json_task_cannot_smuggle_python_in() -> None:
    graph_json = {"tasks": [{"id": "f", "type": "LambdaTask", "defaults": {"fn": "os.system"}}]}
    result = await run(JsonTask(id="j", defaults={"json": graph_json}))
    assert result.status == RunStatus.FAILED
    assert "fn must be a Python callable" in (result.error or "")


async def test_json_task_has_fixed_ports_and_round_trips() -> None:
    task = JsonTask(id="j", defaults={"json": SUMMARY_THEN_TRANSLATION})
    assert [p.id for p in task.input_ports] == ["json", "input"]
    assert [p.id for p in task.output_ports] == ["output"]
    graph = graph_from_json(graph_to_json(TaskGraph([task])))
    assert graph.get_task("j").defaults == {"json": SUMMARY_THEN_TRANSLATION}
