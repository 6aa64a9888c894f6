"""The edge's rules without a server: storable values, request limits, page tokens,
quotas and their settings."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct

from graphmesh.orchestrator.api.settings import EdgeSettings
from graphmesh.orchestrator.errors import GraphIssue, GraphValidationError, TaskFailedError
from graphmesh.orchestrator.runs.paging import PageTokens, default_page_tokens
from graphmesh.orchestrator.runs.quotas import QuotaExceededError, QuotaPolicy, count_tasks
from graphmesh.orchestrator.runs.records import InvalidPageTokenError, TenantUsage
from graphmesh.orchestrator.runs.storable import (
    check_output,
    storable_text,
    value_problems,
)
from graphmesh.orchestrator.wire import convert
from graphmesh.orchestrator.wire.errors import to_status
from graphmesh.orchestrator.wire.validation import (
    InvalidRequestError,
    RequestLimits,
    check_graph_shape,
    check_request,
    parse_json,
)
from graphmesh.orchestrator.wire.values import struct_to_dict
from graphmesh.v1 import common_pb2
from graphmesh.v1 import orchestrator_pb2 as pb

LIMITS = RequestLimits()


def problems(value: Any, depth: int = 5) -> list[tuple[str, str]]:
    return [(p.path, p.reason) for p in value_problems(value, "v", max_depth=depth)]


def violations(error: pytest.ExceptionInfo[InvalidRequestError]) -> dict[str, str]:
    return {v.field: v.reason for v in error.value.violations}


def test_value_problems_name_every_offending_value_by_path() -> None:
    value = {"ok": [1, "x"], "a b": {"\x00": 1}, "n": [float("nan"), 2**64], "s": "\ud800"}
    assert problems(value) == [
        ('v["a b"]["\\u0000"]', "NUL"),
        ("v.n[0]", "NOT_FINITE"),
        ("v.n[1]", "NUMBER_RANGE"),
        ("v.s", "INVALID_UTF8"),
    ]
    assert problems({"x": object()}) == [("v.x", "NOT_JSON")]
    assert problems([[[[[[1]]]]]]) == [("v[0][0][0][0][0]", "TOO_DEEP")]
    assert problems([[[[[1]]]]]) == []


def test_a_very_deep_value_is_walked_without_recursion() -> None:
    value: Any = 1
    for _ in range(100_000):
        value = [value]
    assert [p.reason for p in value_problems(value, "", max_depth=64)] == ["TOO_DEEP"]


def test_storable_text_escapes_what_stores_and_utf8_refuse() -> None:
    assert storable_text("plain ü") == "plain ü"
    assert storable_text("a\x00b\ud800") == "a\\x00b\\ud800"
    storable_text("a\x00b\ud800").encode("utf-8")


def test_check_output_fails_the_task_naming_the_port() -> None:
    check_output("t", {"x": [1, {"y": "ok"}]})
    with pytest.raises(TaskFailedError, match=r"outputs\.x\[1\]\.y: text must not contain NUL"):
        check_output("t", {"x": [1, {"y": "\x00"}]})


def test_check_request_walks_every_field_by_its_descriptor() -> None:
    request = pb.CreateRunRequest(
        graph_id="g\x01", idempotency_key="k" * 300, labels={"k": "v\x00"}
    )
    with pytest.raises(InvalidRequestError) as caught:
        check_request(request, LIMITS)
    assert violations(caught) == {
        "graph_id": "CONTROL_CHARACTER",
        "idempotency_key": "TOO_LONG",
        'labels["k"]': "NUL",
    }
    many = pb.ListGraphsRequest(labels={str(i): "v" for i in range(65)})
    with pytest.raises(InvalidRequestError, match="more than 64 entries"):
        check_request(many, LIMITS)
    check_request(pb.CancelRunRequest(run_id="r", reason="line one\nline two"), LIMITS)


def test_graph_messages_name_tasks_by_id() -> None:
    graph = common_pb2.Graph(
        tasks=[common_pb2.Task(id="a", type="T\x00"), common_pb2.Task(id="b\x00", type="T")]
    )
    with pytest.raises(InvalidRequestError) as caught:
        check_request(pb.ValidateGraphRequest(graph=graph), LIMITS)
    assert violations(caught) == {"tasks[a].type": "NUL", "tasks[1].id": "NUL"}


def test_parse_json_refuses_constants_depth_and_long_numbers() -> None:
    for text in ('{"a": NaN}', '{"a": -Infinity}', "1" * 5000):
        with pytest.raises(InvalidRequestError) as caught:
            parse_json(text, "graph_json", LIMITS)
        assert violations(caught) == {"graph_json": "BAD_JSON"}
        assert "sys." not in str(caught.value)
    with pytest.raises(InvalidRequestError) as caught:
        parse_json("[" * 50_000 + "]" * 50_000, "graph_json", LIMITS)
    assert set(violations(caught).values()) == {"TOO_DEEP"}
    for number in ("1e999", "-1e999", str(2**63)):
        with pytest.raises(InvalidRequestError, match="out of range") as caught:
            parse_json('{"tasks": [{"id": "a", "x": ' + number + "}]}", "graph_json", LIMITS)
        assert violations(caught) == {"graph_json": "BAD_JSON"}
    assert parse_json(str(2**63 - 1), "graph_json", LIMITS) == 2**63 - 1
    with pytest.raises(InvalidRequestError) as caught:
        parse_json('{"tasks": [{"id": "a", "x": "\\u0000"}]}', "graph_json", LIMITS)
    assert violations(caught) == {"tasks[a].x": "NUL"}


def test_graph_shape_in_both_json_forms() -> None:
    deep: Any = 1
    for _ in range(LIMITS.json_depth):
        deep = {"d": deep}
    graph = {"tasks": [{"id": "a", "type": "T", "defaults": {"v": deep}}]}
    with pytest.raises(InvalidRequestError) as caught:
        check_graph_shape(graph, LIMITS)
    assert list(violations(caught)) == ["tasks[a].defaults.v" + ".d" * (LIMITS.json_depth - 1)]
    dependency = [{"id": "a", "type": "T", "dependencies": {"in\x00": {"id": "b", "output": "o"}}}]
    with pytest.raises(InvalidRequestError) as caught:
        check_graph_shape(dependency, LIMITS)
    assert violations(caught) == {'tasks[a].dependencies["in\\u0000"]': "NUL"}


def test_limits_refuse_depths_protobuf_cannot_carry() -> None:
    with pytest.raises(ValueError, match="parsers stop at 100"):
        RequestLimits(json_depth=64)
    with pytest.raises(ValueError):
        EdgeSettings(max_json_depth=30, max_graph_depth=8).request_limits()


@pytest.mark.parametrize(
    ("seconds", "nanos", "ok"),
    [
        (1, 0, True),
        (0, 500, True),
        (0, 0, False),
        (-1, 0, False),
        (1, -1, False),
        (2**63 - 1, 0, False),
    ],
)
def test_run_timeouts(seconds: int, nanos: int, ok: bool) -> None:
    request = pb.CreateRunRequest(timeout=Duration(seconds=seconds, nanos=nanos))
    if ok:
        assert convert.timeout_from_request(request, LIMITS) == seconds + nanos / 1e9
        return
    with pytest.raises(InvalidRequestError) as caught:
        convert.timeout_from_request(request, LIMITS)
    assert violations(caught) == {"timeout": "OUT_OF_RANGE"}
    assert convert.timeout_from_request(pb.CreateRunRequest(), LIMITS) is None


def test_struct_values_keep_non_finite_numbers_for_the_check() -> None:
    struct = Struct()
    struct.update({"n": float("nan"), "i": 3.0, "l": [1.5, None, True, "s"]})
    value = struct_to_dict(struct)
    assert value["i"] == 3 and value["l"] == [1.5, None, True, "s"]
    assert value["n"] != value["n"]  # NaN, reported by path rather than raised


def test_page_tokens_are_bound_and_tamper_evident() -> None:
    tokens = PageTokens(b"k" * 32)
    token = tokens.encode(listing="runs", tenant="a", scope=[[], []], position=[7])
    assert tokens.decode(token, listing="runs", tenant="a", scope=[[], []]) == [7]
    for listing, tenant, scope in (("graphs", "a", [[], []]), ("runs", "b", [[], []])):
        with pytest.raises(InvalidPageTokenError):
            tokens.decode(token, listing=listing, tenant=tenant, scope=scope)
    with pytest.raises(InvalidPageTokenError):
        tokens.decode(token, listing="runs", tenant="a", scope=[["FAILED"], []])
    body, _, mac = token.partition(".")
    forged = json.dumps([0]).encode()
    forged_body = base64.urlsafe_b64encode(forged).decode().rstrip("=")
    for bad in (f"{forged_body}.{mac}", body, "", "é", "a.b.c"):
        with pytest.raises(InvalidPageTokenError):
            tokens.decode(bad, listing="runs", tenant="a", scope=[[], []])
    with pytest.raises(InvalidPageTokenError):
        PageTokens(b"other key").decode(token, listing="runs", tenant="a", scope=[[], []])


def test_quotas_per_tenant_with_overrides() -> None:
    settings = EdgeSettings(
        quota_concurrent_runs=2, quota_overrides={"big": {"concurrent_runs": 10}}
    )
    policy = settings.quota_policy()
    busy = TenantUsage(active_runs=2, open_tasks=0)
    with pytest.raises(QuotaExceededError) as caught:
        policy.check_run("small", busy, 1)
    assert caught.value.quota == "concurrent_runs" and caught.value.retry_after == 5.0
    policy.check_run("big", busy, 1)
    assert policy.of("big").graph_tasks == policy.default.graph_tasks


def test_quota_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHMESH_QUOTA_TASKS_IN_FLIGHT", "7")
    monkeypatch.setenv("GRAPHMESH_MAX_JSON_DEPTH", "16")
    monkeypatch.setenv("GRAPHMESH_QUOTA_OVERRIDES", '{"t": {"request_bytes": 100}}')
    settings = EdgeSettings()
    assert settings.request_limits().json_depth == 16
    policy = settings.quota_policy()
    assert policy.default.tasks_in_flight == 7 and policy.of("t").request_bytes == 100
    assert policy.largest_request == QuotaPolicy().default.request_bytes


def test_count_tasks_in_both_forms() -> None:
    graph = {"tasks": [{"id": "a", "subgraph": {"tasks": [{"id": "b"}, {"id": "c"}]}}, "junk"]}
    assert count_tasks(graph) == 4
    assert count_tasks([{"id": "a", "subtasks": [{"id": "b"}]}]) == 2
    assert count_tasks({"tasks": "nope"}) == 0


def test_a_status_never_carries_a_lone_surrogate() -> None:
    issue = GraphIssue(code="unknown_type", message="bad \ud800", task_id="t\ud800")
    status = to_status(GraphValidationError([issue]))
    assert "\\ud800" in status.details
    status.details.encode("utf-8")
    for _, value in status.trailing_metadata:
        assert isinstance(value, bytes | str)


def test_replicas_of_one_database_share_page_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    def codec(**environ: str) -> PageTokens:
        for name in ("GRAPHMESH_PAGE_TOKEN_KEY", "GRAPHMESH_DATABASE_URL"):
            monkeypatch.delenv(name, raising=False)
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        default_page_tokens.cache_clear()
        return default_page_tokens()

    place = {"listing": "runs", "tenant": "a", "scope": [[], []]}
    token = codec(GRAPHMESH_DATABASE_URL="postgresql://db/runs").encode(**place, position=[3])
    assert codec(GRAPHMESH_DATABASE_URL="postgresql://db/runs").decode(token, **place) == [3]
    with pytest.raises(InvalidPageTokenError):
        codec(GRAPHMESH_DATABASE_URL="postgresql://other/runs").decode(token, **place)
    with pytest.raises(InvalidPageTokenError):
        codec().decode(token, **place)  # a process of its own: a key of its own
    keyed = codec(GRAPHMESH_PAGE_TOKEN_KEY="s3cret").encode(**place, position=[1])
    assert codec(GRAPHMESH_PAGE_TOKEN_KEY="s3cret").decode(keyed, **place) == [1]
    default_page_tokens.cache_clear()
