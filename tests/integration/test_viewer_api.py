"""The viewer's Connect API against the gRPC API: the same requests, made both ways on the
same orchestrator, give the same results (code, message, ``google.rpc`` details,
responses), on every store. Then what only HTTP has: the Connect protocol's HTTP status
for each code, bodies that cannot be read, security headers, no CORS, loopback hosts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.orchestrator import Served
from support.run_tasks import flow, sleep_task
from support.viewer import Outcome, by_connect, by_grpc, viewer_on

from graphmesh.orchestrator.api.settings import EdgeSettings
from graphmesh.v1 import common_pb2
from graphmesh.v1 import orchestrator_pb2 as pb

GRAPH = {"tasks": [sleep_task("a", value=3), sleep_task("b")], "dataflows": [flow("a", "b")]}
BAD_GRAPH = {
    "tasks": [sleep_task("a"), {"id": "b", "type": "RunTestSleep"}],
    "dataflows": [flow("a", "b", "nope")],
}
API = "graphmesh.v1.OrchestratorService"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def served(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Served]:
    store = request.param
    location = ""
    if store == "sqlite":
        location = str(tmp_path / "viewer.sqlite")
    elif store == "postgres":
        location = request.getfixturevalue("postgres_dsn")
    edge = EdgeSettings(quota_request_bytes=20_000)
    async with viewer_on(store, location=location, edge=edge) as started:
        yield started


async def both(served: Served, name: str, request: Any, token: str | None = "token-a") -> Outcome:
    """The outcome of one call, asserted equal over gRPC and over Connect."""
    assert served.server.viewer is not None
    grpc_outcome = await by_grpc(served.server.target, name, request, token)
    connect_outcome = await by_connect(served.server.viewer.url, name, request, token)
    assert connect_outcome == grpc_outcome
    assert connect_outcome.responses == grpc_outcome.responses
    return connect_outcome


async def finished_run(served: Served) -> str:
    outcome = await by_grpc(
        served.server.target,
        "CreateRun",
        pb.CreateRunRequest(graph_json=json.dumps(GRAPH)),
        "token-a",
    )
    run_id: str = outcome.responses[0].run.run_id
    await by_grpc(served.server.target, "WatchRun", pb.WatchRunRequest(run_id=run_id), "token-a")
    return run_id


CASES: dict[str, tuple[str, Callable[[str], Any], str | None, str]] = {
    # name: (method, request from a finished run's id, token, expected code)
    "catalog": ("ListTaskTypes", lambda _: pb.ListTaskTypesRequest(), "token-a", "OK"),
    "violations": (
        "ValidateGraph",
        lambda _: pb.ValidateGraphRequest(graph_json=json.dumps(BAD_GRAPH)),
        "token-a",
        "OK",
    ),
    "invalid graph": (
        "CreateRun",
        lambda _: pb.CreateRunRequest(graph_json=json.dumps(BAD_GRAPH)),
        "token-a",
        "INVALID_ARGUMENT",
    ),
    "unparsable graph": (
        "ValidateGraph",
        lambda _: pb.ValidateGraphRequest(graph_json="{oops"),
        "token-a",
        "INVALID_ARGUMENT",
    ),
    "the run": ("GetRun", lambda run: pb.GetRunRequest(run_id=run), "token-a", "OK"),
    "its events": ("WatchRun", lambda run: pb.WatchRunRequest(run_id=run), "token-a", "OK"),
    "its output": (
        "GetTaskOutput",
        lambda run: pb.GetTaskOutputRequest(run_id=run, task_id="b"),
        "token-a",
        "OK",
    ),
    "unknown run": ("GetRun", lambda _: pb.GetRunRequest(run_id="nope"), "token-a", "NOT_FOUND"),
    "another tenant's run": (
        "GetRun",
        lambda run: pb.GetRunRequest(run_id=run),
        "token-b",
        "NOT_FOUND",
    ),
    "another tenant's events": (
        "WatchRun",
        lambda run: pb.WatchRunRequest(run_id=run),
        "token-b",
        "NOT_FOUND",
    ),
    "another tenant's list": ("ListRuns", lambda _: pb.ListRunsRequest(), "token-b", "OK"),
    "no token": ("ListRuns", lambda _: pb.ListRunsRequest(), None, "UNAUTHENTICATED"),
    "unknown token": ("ListRuns", lambda _: pb.ListRunsRequest(), "forged", "UNAUTHENTICATED"),
    "forged page token": (
        "ListRuns",
        lambda _: pb.ListRunsRequest(page_token="forged"),
        "token-a",
        "INVALID_ARGUMENT",
    ),
    "NUL in an id": (
        "GetRun",
        lambda _: pb.GetRunRequest(run_id="a\x00b"),
        "token-a",
        "INVALID_ARGUMENT",
    ),
    "ended run cancelled": (
        "CancelRun",
        lambda run: pb.CancelRunRequest(run_id=run),
        "token-a",
        "FAILED_PRECONDITION",
    ),
    "over the request quota": (
        "ValidateGraph",
        lambda _: pb.ValidateGraphRequest(graph_json=" " * 30_000 + "{}"),
        "token-a",
        "RESOURCE_EXHAUSTED",
    ),
    "completed run resumed": (
        "ResumeRun",
        lambda run: pb.ResumeRunRequest(run_id=run),
        "token-a",
        "FAILED_PRECONDITION",
    ),
}


@pytest.mark.parametrize("case", CASES)
async def test_connect_and_grpc_give_the_same_result(served: Served, case: str) -> None:
    method, request, token, code = CASES[case]
    run_id = await finished_run(served)
    outcome = await both(served, method, request(run_id), token)
    assert outcome.code == code
    if code == "INVALID_ARGUMENT" and case != "forged page token":
        assert any(url.endswith("google.rpc.BadRequest") for url, _ in outcome.details)
    if case == "another tenant's list":
        assert not outcome.responses[0].runs  # tenant b sees none of a's runs
    if case == "the run":
        assert outcome.responses[0].run.task_counts.completed == 2


async def _post(url: str, body: bytes, **headers: str) -> tuple[int, Any, Any]:
    headers.setdefault("content-type", "application/json")
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        text = await response.text()
        try:
            return response.status, json.loads(text), response.headers
        except ValueError:
            return response.status, text, response.headers


@pytest.fixture
async def viewer() -> AsyncIterator[Served]:
    async with viewer_on(edge=EdgeSettings(quota_request_bytes=50_000)) as started:
        yield started


def _api(served: Served, method: str) -> str:
    assert served.server.viewer is not None
    return f"{served.server.viewer.url}{API}/{method}"


@pytest.mark.parametrize(
    ("method", "body", "token", "status", "code"),
    [
        ("GetRun", {"runId": "nope"}, "token-a", 404, "not_found"),
        ("ListRuns", {}, None, 401, "unauthenticated"),
        ("GetRun", {"runId": "a\u0000"}, "token-a", 400, "invalid_argument"),
        ("ValidateGraph", {"graphJson": " " * 60_000}, "token-a", 429, "resource_exhausted"),
    ],
)
async def test_each_code_has_the_connect_protocols_http_status(
    viewer: Served, method: str, body: Any, token: str | None, status: int, code: str
) -> None:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    got, answer, _ = await _post(_api(viewer, method), json.dumps(body).encode(), **headers)
    assert (got, answer["code"]) == (status, code)


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b'{"runId": ', "Failed to load JSON"),
        (b'{"runId": "\\ud800"}', "Unpaired surrogate"),
        (b"[" * 200_000, "nested too deeply"),
        (b'{"runId": 5, "view": "RUN_VIEW_NOPE"}', "runId"),
        (b'{"noSuchField": 1}', "noSuchField"),
    ],
)
async def test_a_body_that_cannot_be_read_is_invalid_argument_and_the_server_stays_up(
    viewer: Served, body: bytes, complaint: str
) -> None:
    status, answer, _ = await _post(_api(viewer, "GetRun"), body, authorization="Bearer token-a")
    assert status == 400 and answer["code"] == "invalid_argument"
    assert "GetRunRequest" in answer["message"] and complaint in answer["message"]
    status, answer, _ = await _post(_api(viewer, "ListRuns"), b"{}", authorization="Bearer token-a")
    assert status == 200 and answer == {}


async def test_a_cross_site_form_cannot_call_the_api(viewer: Served) -> None:
    """Forms and no-CORS fetches can only send these types; Connect takes none of them, so
    even without auth another site's page cannot create runs here."""
    body = json.dumps({"graphJson": json.dumps(GRAPH)}).encode()
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        status, _, _ = await _post(_api(viewer, "CreateRun"), body, **{"content-type": kind})
        assert status == 415


async def test_a_body_past_the_size_bound_is_refused_unread(viewer: Served) -> None:
    huge = json.dumps({"graphJson": "x" * 300_000}).encode()
    status, answer, _ = await _post(
        _api(viewer, "ValidateGraph"), huge, authorization="Bearer token-a"
    )
    assert status == 429 and answer["code"] == "resource_exhausted"


async def test_the_page_comes_with_security_headers_and_no_cors(viewer: Served) -> None:
    assert viewer.server.viewer is not None
    url = viewer.server.viewer.url
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as page:
            html = await page.text()
            assert page.status == 200 and '<div id="app">' in html
            policy = page.headers["content-security-policy"]
            assert "script-src 'self'" in policy and "unsafe-inline" not in policy
            assert "frame-ancestors 'none'" in policy
            assert page.headers["x-content-type-options"] == "nosniff"
            assert "server" not in page.headers
        script = html.split('src="')[1].split('"')[0]
        async with session.get(url.rstrip("/") + script) as asset:
            assert asset.status == 200 and "immutable" in asset.headers["cache-control"]
        preflight_headers = {
            "origin": "http://evil.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type",
        }
        async with session.options(
            _api(viewer, "ListRuns"), headers=preflight_headers
        ) as preflight:
            assert "access-control-allow-origin" not in preflight.headers
        async with session.get(url + "viewer-config.json") as config:
            assert await config.json() == {"traceUrlTemplate": None}


async def test_a_loopback_viewer_answers_only_to_loopback_host_names(viewer: Served) -> None:
    """A page of another site that rebinds its name to 127.0.0.1 sends its own Host."""
    status, _, _ = await _post(
        _api(viewer, "ListRuns"), b"{}", authorization="Bearer token-a", host="evil.example:8080"
    )
    assert status == 421
    status, _, _ = await _post(
        _api(viewer, "ListRuns"), b"{}", authorization="Bearer token-a", host="localhost:8080"
    )
    assert status == 200


async def test_the_trace_link_template_reaches_the_page_and_runs_carry_their_trace_id() -> None:
    template = "http://jaeger.example:16686/trace/{trace_id}"
    async with viewer_on(trace_url_template=template) as served:
        assert served.server.viewer is not None
        async with aiohttp.ClientSession() as session:
            async with session.get(served.server.viewer.url + "viewer-config.json") as config:
                assert await config.json() == {"traceUrlTemplate": template}
        parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        request = {"graphJson": json.dumps(GRAPH)}
        _, answer, _ = await _post(
            _api(served, "CreateRun"),
            json.dumps(request).encode(),
            authorization="Bearer token-a",
            traceparent=parent,
        )
        assert answer["run"]["traceId"] == "0af7651916cd43dd8448eb211c80319c"


async def test_watch_run_streams_live_events_until_the_run_ends(viewer: Served) -> None:
    assert viewer.server.viewer is not None
    url = viewer.server.viewer.url
    graph = {"tasks": [sleep_task("slow", 0.5)], "dataflows": []}
    created = await by_connect(
        url, "CreateRun", pb.CreateRunRequest(graph_json=json.dumps(graph)), "token-a"
    )
    run_id = created.responses[0].run.run_id
    watched = await by_connect(url, "WatchRun", pb.WatchRunRequest(run_id=run_id), "token-a")
    events = [response.event for response in watched.responses]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[-1].run_status == common_pb2.RUN_STATUS_COMPLETED
    assert any(e.task_id == "slow" and e.progress == 50 for e in events)


async def test_the_viewer_is_off_when_its_address_is_off() -> None:
    from support.orchestrator import orchestrator

    async with orchestrator() as server:
        assert server.viewer is None
