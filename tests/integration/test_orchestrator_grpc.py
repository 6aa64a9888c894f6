"""OrchestratorService over real gRPC on loopback: every RPC through the generated stub,
status codes with rich details, streaming, deadlines, auth, health, reflection, TLS, and
``buf curl`` as an outside client."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from support.orchestrator import bearer, orchestrator
from support.run_tasks import flow, sleep_task

from graphmesh.orchestrator.api.server import OrchestratorServer
from graphmesh.orchestrator.builder import code_to_graph
from graphmesh.orchestrator.graph import graph_to_json
from graphmesh.orchestrator.runs.memory import MemoryRunService
from graphmesh.orchestrator.storage.memory import MemoryGraphRepository
from graphmesh.orchestrator.wire.convert import graph_to_proto
from graphmesh.orchestrator.wire.errors import to_status
from graphmesh.services.kit.server import TlsFiles
from graphmesh.v1 import common_pb2, events_pb2
from graphmesh.v1 import orchestrator_pb2 as pb
from graphmesh.v1.orchestrator_pb2_grpc import OrchestratorServiceStub

A, B = bearer("token-a"), bearer("token-b")
GRAPH = {"tasks": [sleep_task("a", value=3), sleep_task("b")], "dataflows": [flow("a", "b")]}
SLOW = {"tasks": [sleep_task("slow", 30)], "dataflows": []}
Stub = Any  # OrchestratorServiceAsyncStub (typing-only in the generated stubs)


@pytest.fixture
async def server() -> AsyncIterator[OrchestratorServer]:
    async with orchestrator() as started:
        yield started


@pytest.fixture
async def channel(server: OrchestratorServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(server.target) as opened:
        yield opened


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Stub:
    return OrchestratorServiceStub(channel)


async def create(stub: Stub, graph: dict[str, Any], **fields: Any) -> pb.Run:
    metadata = fields.pop("metadata", A)
    request = pb.CreateRunRequest(graph_json=json.dumps(graph), **fields)
    return (await stub.CreateRun(request, metadata=metadata, timeout=5)).run


async def events(stub: Stub, run_id: str, from_seq: int = 0) -> list[events_pb2.RunEvent]:
    request = pb.WatchRunRequest(run_id=run_id, from_seq=from_seq)
    return [item.event async for item in stub.WatchRun(request, metadata=A, timeout=10)]


async def until_started(stub: Stub, run_id: str, task_id: str) -> None:
    request = pb.WatchRunRequest(run_id=run_id)
    async for item in stub.WatchRun(request, metadata=A, timeout=10):
        if item.event.kind == events_pb2.RUN_EVENT_KIND_TASK_STARTED:
            if item.event.task_id == task_id:
                return


async def failure(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        result = await call if not hasattr(call, "__aiter__") else [x async for x in call]
        raise AssertionError(f"expected an error, got {result}")
    return caught.value


def details(error: grpc.aio.AioRpcError, kind: type[Any]) -> Any:
    status = rpc_status.from_call(error)
    assert status is not None
    found = [kind.FromString(d.value) for d in status.details if d.Is(kind.DESCRIPTOR)]
    assert found, f"no {kind.__name__} in the status"
    return found[0]


async def test_list_task_types_describes_each_type_and_its_ports(stub: Stub) -> None:
    response = await stub.ListTaskTypes(pb.ListTaskTypesRequest(), metadata=A, timeout=5)
    types = {task_type.type: task_type for task_type in response.task_types}
    assert [t.type for t in response.task_types] == sorted(types)
    sleep = types["RunTestSleep"]
    assert [port.id for port in sleep.inputs] == ["value", "seconds"]
    seconds = sleep.inputs[1]
    assert not seconds.required and seconds.default.number_value == 0
    assert json.loads(seconds.json_schema)["type"] == "number"
    assert types["JsonTask"].compound and types["DebugLogTask"].side_effects
    utility = await stub.ListTaskTypes(
        pb.ListTaskTypesRequest(category="Utility"), metadata=A, timeout=5
    )
    assert utility.task_types and {t.category for t in utility.task_types} == {"Utility"}


async def test_validate_graph_reports_violations_with_status_ok(stub: Stub) -> None:
    bad = json.loads(json.dumps(GRAPH))
    bad["dataflows"][0]["target_port"] = "nope"
    response = await stub.ValidateGraph(
        pb.ValidateGraphRequest(graph_json=json.dumps(bad)), metadata=A, timeout=5
    )
    assert not response.valid
    assert [(v.field, v.task_id) for v in response.violations] == [("tasks[b].nope", "b")]
    good = await stub.ValidateGraph(
        pb.ValidateGraphRequest(graph=graph_to_proto(GRAPH)), metadata=A, timeout=5
    )
    assert good.valid and not good.violations and [t.id for t in good.graph.tasks] == ["a", "b"]
    dependency_form = [{"id": "x", "type": "RunTestSleep", "input": {"value": 1}}]
    converted = await stub.ValidateGraph(
        pb.ValidateGraphRequest(graph_json=json.dumps(dependency_form)), metadata=A, timeout=5
    )
    assert converted.valid and converted.graph.tasks[0].defaults["value"] == 1
    error = await failure(
        stub.ValidateGraph(pb.ValidateGraphRequest(graph_json="{oops"), metadata=A, timeout=5)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_invalid_graph_is_invalid_argument_naming_task_and_port(stub: Stub) -> None:
    graph = {
        "tasks": [sleep_task("a"), {"id": "js", "type": "JavaScriptTask"}],
        "dataflows": [flow("a", "js", "nope")],
    }
    error = await failure(create(stub, graph))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = details(error, error_details_pb2.BadRequest).field_violations
    assert {(v.field, v.reason) for v in violations} == {
        ("tasks[js].nope", "UNKNOWN_INPUT_PORT"),
        ("tasks[js].code", "MISSING_INPUT"),
    }
    assert all(v.description for v in violations)
    assert details(error, error_details_pb2.ErrorInfo).reason == "INVALID_GRAPH"
    typo = await failure(create(stub, GRAPH, inputs={"*": _struct({"typo": 1})}))
    assert details(typo, error_details_pb2.BadRequest).field_violations[0].field == "inputs[typo]"


async def test_a_run_from_a_graph_message_streams_events_and_stores_outputs(stub: Stub) -> None:
    request = pb.CreateRunRequest(
        graph=graph_to_proto(GRAPH), labels={"team": "x"}, inputs={"a": _struct({"value": 5})}
    )
    created = await stub.CreateRun(request, metadata=A, timeout=5)
    run = created.run
    assert run.run_id and not created.deduplicated and run.labels["team"] == "x"
    stream = await events(stub, run.run_id)
    assert [e.seq for e in stream] == list(range(1, len(stream) + 1))
    assert stream[0].kind == events_pb2.RUN_EVENT_KIND_RUN_CREATED
    assert stream[-1].kind == events_pb2.RUN_EVENT_KIND_RUN_COMPLETED
    assert stream[-1].run_status == common_pb2.RUN_STATUS_COMPLETED
    full = (await stub.GetRun(pb.GetRunRequest(run_id=run.run_id), metadata=A, timeout=5)).run
    assert full.status == common_pb2.RUN_STATUS_COMPLETED and full.progress == 100
    assert [t.task_id for t in full.tasks] == ["a", "b"] and full.graph.tasks[0].id == "a"
    assert full.last_seq == len(stream) and full.HasField("end_time")
    basic = await stub.GetRun(
        pb.GetRunRequest(run_id=run.run_id, view=pb.RUN_VIEW_BASIC), metadata=A, timeout=5
    )
    assert not basic.run.tasks and not basic.run.HasField("graph")
    output = await stub.GetTaskOutput(
        pb.GetTaskOutputRequest(run_id=run.run_id, task_id="b"), metadata=A, timeout=5
    )
    assert output.output["value"] == 5 and output.status == common_pb2.TASK_STATUS_COMPLETED
    assert output.output_ref


async def test_watch_replays_from_a_seq_then_streams_live_and_ends(stub: Stub) -> None:
    graph = {
        "tasks": [sleep_task("a"), sleep_task("gate", 0.4), sleep_task("c")],
        "dataflows": [flow("a", "gate"), flow("gate", "c")],
    }
    run = await create(stub, graph)
    await until_started(stub, run.run_id, "gate")
    stream = await events(stub, run.run_id, from_seq=3)
    assert stream[0].seq == 3 and [e.seq for e in stream] == list(range(3, stream[-1].seq + 1))
    assert any(e.task_id == "c" for e in stream)
    assert stream[-1].kind == events_pb2.RUN_EVENT_KIND_RUN_COMPLETED
    assert await events(stub, run.run_id, from_seq=stream[-1].seq + 1) == []


async def test_unknown_runs_are_not_found(stub: Stub) -> None:
    calls = [
        stub.GetRun(pb.GetRunRequest(run_id="nope"), metadata=A, timeout=5),
        stub.CancelRun(pb.CancelRunRequest(run_id="nope"), metadata=A, timeout=5),
        stub.ResumeRun(pb.ResumeRunRequest(run_id="nope"), metadata=A, timeout=5),
        stub.GetTaskOutput(pb.GetTaskOutputRequest(run_id="nope", task_id="a"), metadata=A),
        stub.WatchRun(pb.WatchRunRequest(run_id="nope"), metadata=A, timeout=5),
    ]
    for call in calls:
        error = await failure(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert details(error, error_details_pb2.ErrorInfo).reason == "RUN_NOT_FOUND"


async def test_cancel_and_resume_follow_the_run_lifecycle(stub: Stub) -> None:
    run = await create(stub, SLOW)
    await until_started(stub, run.run_id, "slow")
    cancelled = await stub.CancelRun(
        pb.CancelRunRequest(run_id=run.run_id, reason="enough"), metadata=A, timeout=5
    )
    assert cancelled.run.status == common_pb2.RUN_STATUS_CANCELLING
    stream = await events(stub, run.run_id)
    assert stream[-1].kind == events_pb2.RUN_EVENT_KIND_RUN_CANCELLED
    again = await failure(stub.CancelRun(pb.CancelRunRequest(run_id=run.run_id), metadata=A))
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    resumed = await stub.ResumeRun(pb.ResumeRunRequest(run_id=run.run_id), metadata=A, timeout=5)
    assert resumed.run.status in (common_pb2.RUN_STATUS_PENDING, common_pb2.RUN_STATUS_RUNNING)
    await stub.CancelRun(pb.CancelRunRequest(run_id=run.run_id), metadata=A, timeout=5)
    done = await create(stub, GRAPH)
    await events(stub, done.run_id)
    error = await failure(stub.ResumeRun(pb.ResumeRunRequest(run_id=done.run_id), metadata=A))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_list_runs_filters_and_pages_newest_first(stub: Stub) -> None:
    ids = []
    for team in ("x", "y", "x"):
        run = await create(stub, GRAPH, labels={"team": team})
        await events(stub, run.run_id)
        ids.append(run.run_id)
    seen, token = [], ""
    while True:
        page = await stub.ListRuns(
            pb.ListRunsRequest(page_size=1, page_token=token), metadata=A, timeout=5
        )
        seen += [run.run_id for run in page.runs]
        assert all(not run.tasks for run in page.runs)  # BASIC by default
        token = page.next_page_token
        if not token:
            break
    assert seen == ids[::-1]
    team_x = await stub.ListRuns(
        pb.ListRunsRequest(labels={"team": "x"}, statuses=[common_pb2.RUN_STATUS_COMPLETED]),
        metadata=A,
        timeout=5,
    )
    assert [run.run_id for run in team_x.runs] == [ids[2], ids[0]]
    error = await failure(stub.ListRuns(pb.ListRunsRequest(page_token="bogus"), metadata=A))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_idempotency_key_returns_the_existing_run(stub: Stub) -> None:
    request = pb.CreateRunRequest(graph_json=json.dumps(GRAPH), idempotency_key="once")
    first = await stub.CreateRun(request, metadata=A, timeout=5)
    second = await stub.CreateRun(request, metadata=A, timeout=5)
    assert second.deduplicated and second.run.run_id == first.run.run_id
    assert second.run.idempotency_key == "once"


async def test_saved_graphs_run_by_id_and_export_as_code(stub: Stub) -> None:
    save = pb.SaveGraphRequest(
        graph_id="pipeline", name="Pipeline", graph_json=json.dumps(GRAPH), labels={"k": "v"}
    )
    first = (await stub.SaveGraph(save, metadata=A, timeout=5)).graph
    second = (await stub.SaveGraph(save, metadata=A, timeout=5)).graph
    assert (first.version, second.version) == (1, 2) and second.name == "Pipeline"
    got = (await stub.GetGraph(pb.GetGraphRequest(graph_id="pipeline"), metadata=A)).graph
    assert [t.id for t in got.graph.tasks] == ["a", "b"] and got.labels["k"] == "v"
    listed = await stub.ListGraphs(pb.ListGraphsRequest(labels={"k": "v"}), metadata=A)
    assert [g.graph_id for g in listed.graphs] == ["pipeline"]
    assert not listed.graphs[0].HasField("graph")
    run = (await stub.CreateRun(pb.CreateRunRequest(graph_id="pipeline"), metadata=A)).run
    assert (await events(stub, run.run_id))[-1].kind == events_pb2.RUN_EVENT_KIND_RUN_COMPLETED
    code = await stub.ExportCode(pb.ExportCodeRequest(graph_id="pipeline"), metadata=A)
    assert graph_to_json(code_to_graph(code.python_source)) == json.loads(
        json.dumps(_canonical(GRAPH))
    )
    other = await failure(stub.GetGraph(pb.GetGraphRequest(graph_id="pipeline"), metadata=B))
    assert other.code() == grpc.StatusCode.NOT_FOUND
    assert details(other, error_details_pb2.ErrorInfo).reason == "GRAPH_NOT_FOUND"
    bad = await failure(stub.SaveGraph(pb.SaveGraphRequest(graph_json="[1]"), metadata=A))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_tiny_deadline_on_a_slow_call_is_deadline_exceeded(stub: Stub) -> None:
    run = await create(stub, SLOW)
    error = await failure(
        stub.WatchRun(pb.WatchRunRequest(run_id=run.run_id), metadata=A, timeout=0.3)
    )
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    still = await stub.GetRun(pb.GetRunRequest(run_id=run.run_id), metadata=A, timeout=5)
    assert still.run.status == common_pb2.RUN_STATUS_RUNNING
    await stub.CancelRun(pb.CancelRunRequest(run_id=run.run_id), metadata=A, timeout=5)


async def test_calls_without_a_known_token_are_unauthenticated(stub: Stub) -> None:
    for metadata in ((), bearer("wrong"), (("authorization", "Basic token-a"),)):
        unary = await failure(stub.ListTaskTypes(pb.ListTaskTypesRequest(), metadata=metadata))
        assert unary.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "token-a" not in (unary.details() or "")
        stream = await failure(stub.WatchRun(pb.WatchRunRequest(run_id="x"), metadata=metadata))
        assert stream.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_tenant_never_sees_another_tenants_runs(stub: Stub) -> None:
    run = await create(stub, GRAPH)
    error = await failure(stub.GetRun(pb.GetRunRequest(run_id=run.run_id), metadata=B))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    theirs = await stub.ListRuns(pb.ListRunsRequest(), metadata=B, timeout=5)
    ours = await stub.ListRuns(pb.ListRunsRequest(), metadata=A, timeout=5)
    assert not theirs.runs and [r.run_id for r in ours.runs] == [run.run_id]


async def test_without_auth_every_caller_is_the_default_tenant() -> None:
    async with (
        orchestrator(tokens=None) as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        stub = OrchestratorServiceStub(channel)
        run = await create(stub, GRAPH, metadata=())
        got = await stub.GetRun(pb.GetRunRequest(run_id=run.run_id), timeout=5)
        assert got.run.run_id == run.run_id


async def test_health_is_serving_until_shutdown(server: OrchestratorServer) -> None:
    async with grpc.aio.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "graphmesh.v1.OrchestratorService"):
            request = health_pb2.HealthCheckRequest(service=service)
            response = await health.Check(request, timeout=5)  # no token needed
            assert response.status == health_pb2.HealthCheckResponse.SERVING
    await server.grpc.stop(grace=0)
    after = await server.grpc.health.Check(health_pb2.HealthCheckRequest(service=""), None)
    assert after.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_health_watch_streams_the_status(server: OrchestratorServer) -> None:
    async with grpc.aio.insecure_channel(server.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="graphmesh.v1.OrchestratorService"), timeout=5
        )
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()


async def test_reflection_lists_the_services(channel: grpc.aio.Channel) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = [r async for r in reflection.ServerReflectionInfo(iter([request]), timeout=5)]
    names = {s.name for s in responses[0].list_services_response.service}
    assert {"graphmesh.v1.OrchestratorService", "grpc.health.v1.Health"} <= names


async def test_buf_curl_calls_an_rpc_through_reflection(server: OrchestratorServer) -> None:
    buf = Path(sys.executable).parent / "buf"
    process = await asyncio.create_subprocess_exec(
        str(buf),
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "-H",
        "authorization: Bearer token-a",
        "-d",
        json.dumps({"category": "Utility"}),
        f"http://{server.target}/graphmesh.v1.OrchestratorService/ListTaskTypes",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    types = {entry["type"] for entry in json.loads(out)["taskTypes"]}
    assert "JavaScriptTask" in types


async def test_mtls_admits_only_clients_with_a_certificate(tmp_path: Path) -> None:
    files = _certificates(tmp_path)
    tls = TlsFiles(
        cert_file=files["server.crt"], key_file=files["server.key"], client_ca_file=files["ca.crt"]
    )
    async with orchestrator(tls=tls) as server:
        ca = files["ca.crt"].read_bytes()
        trusted = grpc.ssl_channel_credentials(
            ca, files["client.key"].read_bytes(), files["client.crt"].read_bytes()
        )
        async with grpc.aio.secure_channel(server.target, trusted) as channel:
            response = await OrchestratorServiceStub(channel).ListTaskTypes(
                pb.ListTaskTypesRequest(), metadata=A, timeout=5
            )
            assert response.task_types
        anonymous = grpc.ssl_channel_credentials(ca)
        async with grpc.aio.secure_channel(server.target, anonymous) as channel:
            error = await failure(
                OrchestratorServiceStub(channel).ListTaskTypes(
                    pb.ListTaskTypesRequest(), metadata=A, timeout=5
                )
            )
            assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_unexpected_errors_are_internal_without_their_text() -> None:
    status = to_status(RuntimeError("dsn=postgres://user:hunter2@db"))
    assert status.code == grpc.StatusCode.INTERNAL
    assert "hunter2" not in status.details and "reference" in status.details


# -- helpers -----------------------------------------------------------------------------
def _struct(values: dict[str, Any]) -> Any:
    from graphmesh.orchestrator.wire.values import dict_to_struct

    return dict_to_struct(values)


def _canonical(graph: dict[str, Any]) -> dict[str, Any]:
    from graphmesh.orchestrator.graph import graph_from_json

    return graph_to_json(graph_from_json(graph))


def _certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, via openssl."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr")  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "1", "-extfile", "san.ext",
                "-out", f"{name}.crt")  # fmt: skip
    return {path.name: path for path in folder.iterdir()}


async def test_create_run_keeps_the_callers_trace_context_on_the_runs_events() -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    graph = {"tasks": [sleep_task("a")], "dataflows": []}
    async with (
        MemoryRunService() as runs,
        MemoryGraphRepository.open() as graphs,
        OrchestratorServer(runs, graphs, tokens=None, grace_period=0) as served,
        grpc.aio.insecure_channel(served.target) as channel,
    ):
        stub = OrchestratorServiceStub(channel)
        traced = await stub.CreateRun(
            pb.CreateRunRequest(graph_json=json.dumps(graph)), metadata=(("traceparent", trace),)
        )
        malformed = await stub.CreateRun(
            pb.CreateRunRequest(graph_json=json.dumps(graph)), metadata=(("traceparent", "x"),)
        )
        kept = [e async for e in runs.watch_run(traced.run.run_id, tenant="default")]
        ignored = [e async for e in runs.watch_run(malformed.run.run_id, tenant="default")]
    assert {event.traceparent for event in kept} == {trace}
    assert {event.traceparent for event in ignored} == {None}
