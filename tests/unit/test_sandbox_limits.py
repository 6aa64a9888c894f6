"""The operator's JavaScript limits (GRAPHMESH_JS_*) and what a task's config may ask;
how a script's result is decoded."""

from __future__ import annotations

import re
from typing import Any

import pytest

from graphmesh.orchestrator.catalog.errors import JavaScriptError, TaskInputError
from graphmesh.orchestrator.sandbox import SandboxLimits, SandboxSettings
from graphmesh.orchestrator.sandbox.result import decode_result

MIB = 1024 * 1024


def test_defaults_are_safe_for_a_shared_server() -> None:
    settings = SandboxSettings()
    assert settings.max_memory == 256 * MIB
    assert settings.max_timeout_s == 30
    assert settings.workers >= 2
    assert settings.per_tenant == settings.workers - 1
    assert settings.limits({}) == SandboxLimits(timeout_s=1.0, max_memory=64 * MIB)


def test_the_operator_sets_them_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHMESH_JS_MAX_MEMORY", str(32 * MIB))
    monkeypatch.setenv("GRAPHMESH_JS_MAX_TIMEOUT_S", "5")
    monkeypatch.setenv("GRAPHMESH_JS_WORKERS", "4")
    monkeypatch.setenv("GRAPHMESH_JS_TENANT_CONCURRENCY", "2")
    settings = SandboxSettings()
    assert (settings.max_memory, settings.max_timeout_s) == (32 * MIB, 5)
    assert (settings.workers, settings.per_tenant) == (4, 2)
    # A default above the maximum is lowered to it.
    assert settings.limits({}) == SandboxLimits(timeout_s=1.0, max_memory=32 * MIB)


def test_a_task_may_ask_for_less() -> None:
    limits = SandboxSettings().limits({"timeout_sec": 0.25, "max_memory": 16 * MIB})
    assert limits == SandboxLimits(timeout_s=0.25, max_memory=16 * MIB)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"max_memory": 2 * 1024 * MIB}, "config max_memory 2147483648 is more than this server"),
        ({"timeout_sec": 1e9}, "config timeout_sec 1e+09 is more than this server allows (30 s"),
        ({"timeout_sec": float("inf")}, "timeout_sec must be a positive number"),
        ({"timeout_sec": float("nan")}, "timeout_sec must be a positive number"),
        ({"timeout_sec": True}, "timeout_sec must be a positive number"),
        ({"timeout_sec": -1}, "timeout_sec must be a positive number"),
        ({"max_memory": 1.5}, "max_memory must be a positive integer"),
        ({"max_memory": "1GB"}, "max_memory must be a positive integer"),
    ],
)
def test_asking_for_more_than_the_maximum_or_nonsense_is_refused(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(TaskInputError, match=re.escape(message)):
        SandboxSettings().limits(config)


def test_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="CPU_BUDGET_S"):
        SandboxSettings(max_timeout_s=100, cpu_budget_s=50)
    with pytest.raises(ValueError):
        SandboxSettings(workers=0)


@pytest.mark.parametrize(
    ("text", "value"),
    [("42", 42), ('{"a": [1, "x\\u0001"]}', {"a": [1, "x\x01"]}), ('"\\ud83d\\ude00"', "😀")],
)
def test_results_decode_from_json(text: str, value: Any) -> None:
    assert decode_result(text) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('"a\\u0000"', "holds a NUL character at output;"),
        ('{"k": ["ok", "\\ud800"]}', 'holds an unpaired surrogate at output["k"][1]'),
        ('{"\\u0000": 1}', "holds a NUL character at output (a key)"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ("{", "is not JSON"),
    ],
)
def test_results_no_store_could_hold_are_refused(text: str, message: str) -> None:
    with pytest.raises(JavaScriptError, match=re.escape(message)):
        decode_result(text)
