"""Every request validated at the edge, through the real gRPC server on every store.

One regression test per cause a seeded fuzz found (INTERNAL/UNKNOWN before): unknown
enum values, lone surrogates, NUL, deep JSON, NaN/Infinity, out-of-range timeouts. Each
must be INVALID_ARGUMENT naming the field, with no inside text, and leave the server
healthy for the tenant.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from support.edge import fields, leaked
from support.orchestrator import STORES, bearer, orchestrator_on, store_location
from support.run_tasks import flow, sleep_task

from graphmesh.orchestrator.wire.convert import graph_to_proto
from graphmesh.v1 import common_pb2
from graphmesh.v1 import orchestrator_pb2 as pb
from graphmesh.v1.orchestrator_pb2_grpc import OrchestratorServiceStub

A = bearer("token-a")
GRAPH = {"tasks": [sleep_task("a", value=3), sleep_task("b")], "dataflows": [flow("a", "b")]}
Stub = Any


@pytest.fixture(params=STORES)
async def channel(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[grpc.aio.Channel]:
    location = store_location(request.param, request, tmp_path)
    async with (
        orchestrator_on(request.param, location=location) as served,
        grpc.aio.insecure_channel(served.server.target) as opened,
    ):
        yield opened


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Stub:
    return OrchestratorServiceStub(channel)


async def refused(call: Any) -> grpc.aio.AioRpcError:
    """The error of a call that must fail with INVALID_ARGUMENT and no inside text."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if hasattr(call, "__aiter__"):
            result: Any = [item async for item in call]
        else:
            result = await call
        raise AssertionError(f"expected an error, got {result}")
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert leaked(error.details() or "") is None, error.details()
    return error


async def healthy(stub: Stub) -> None:
    """The tenant can still create, read and list runs (FULL view too)."""
    run = (
        await stub.CreateRun(
            pb.CreateRunRequest(graph_json=json.dumps(GRAPH)), metadata=A, timeout=10
        )
    ).run
    async for _ in stub.WatchRun(pb.WatchRunRequest(run_id=run.run_id), metadata=A, timeout=20):
        pass
    got = await stub.GetRun(pb.GetRunRequest(run_id=run.run_id), metadata=A, timeout=10)
    assert got.run.status == common_pb2.RUN_STATUS_COMPLETED
    listed = await stub.ListRuns(
        pb.ListRunsRequest(view=pb.RUN_VIEW_FULL, page_size=1000), metadata=A, timeout=10
    )
    assert run.run_id in [r.run_id for r in listed.runs]


def create(graph: Any = None, **fields: Any) -> pb.CreateRunRequest:
    text = fields.pop("graph_json", None) or json.dumps(graph or GRAPH)
    return pb.CreateRunRequest(graph_json=text, **fields)


def nest(depth: int, kind: str = "object") -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value} if kind == "object" else [value]
    return value


# -- 1. enum values ------------------------------------------------------------------------
async def test_unknown_run_statuses_are_invalid_argument(stub: Stub) -> None:
    error = await refused(
        stub.ListRuns(
            pb.ListRunsRequest(statuses=[common_pb2.RUN_STATUS_COMPLETED, 99]), metadata=A
        )
    )
    assert fields(error) == {"statuses[1]": "UNKNOWN_ENUM"}
    unspecified = await refused(
        stub.ListRuns(pb.ListRunsRequest(statuses=[common_pb2.RUN_STATUS_UNSPECIFIED]), metadata=A)
    )
    assert fields(unspecified) == {"statuses[0]": "UNKNOWN_ENUM"}
    view = await refused(stub.GetRun(pb.GetRunRequest(run_id="x", view=7), metadata=A))  # type: ignore[arg-type]
    assert fields(view) == {"view": "UNKNOWN_ENUM"}
    await healthy(stub)


# -- 2. lone surrogates --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"tasks": [{"id": "a\\ud800", "type": "RunTestSleep"}], "dataflows": []}', "tasks[0].id"),
        (
            '{"tasks": [{"id": "a", "type": "RunTestSleep", "defaults": {"value": "\\udfff"}}]}',
            "tasks[a].defaults.value",
        ),
        (
            '{"tasks": [{"id": "a", "type": "RunTestSleep", "config": {"\\ud800": 1}}]}',
            'tasks[a].config["\\ud800"]',
        ),
        (
            '{"tasks": [{"id": "a", "type": "RunTestSleep"}], "dataflows": '
            '[{"source_task": "a", "source_port": "v\\ud800", "target_task": "a", '
            '"target_port": "value"}]}',
            "dataflows[0].source_port",
        ),
    ],
)
async def test_lone_surrogates_are_refused_and_create_no_run(
    stub: Stub, text: str, field: str
) -> None:
    for call in (stub.CreateRun, stub.ValidateGraph, stub.ExportCode):
        request_type = {
            stub.CreateRun: pb.CreateRunRequest,
            stub.ValidateGraph: pb.ValidateGraphRequest,
            stub.ExportCode: pb.ExportCodeRequest,
        }[call]
        error = await refused(call(request_type(graph_json=text), metadata=A))
        assert field in fields(error), fields(error)
        assert "\ud800" not in (error.details() or "")
    listed = await stub.ListRuns(pb.ListRunsRequest(view=pb.RUN_VIEW_FULL), metadata=A)
    assert list(listed.runs) == []
    await healthy(stub)


# -- 3. NUL --------------------------------------------------------------------------------
async def test_nul_is_refused_in_every_stored_or_looked_up_string(stub: Stub) -> None:
    cases = [
        (stub.GetRun(pb.GetRunRequest(run_id="a\x00b"), metadata=A), "run_id"),
        (stub.CreateRun(create(labels={"k": "v\x00"}), metadata=A), 'labels["k"]'),
        (stub.CreateRun(create(labels={"k\x00": "v"}), metadata=A), 'labels["k\\u0000"]'),
        (stub.CreateRun(create(idempotency_key="k\x00"), metadata=A), "idempotency_key"),
        (stub.CreateRun(pb.CreateRunRequest(graph_id="g\x00"), metadata=A), "graph_id"),
        (stub.GetGraph(pb.GetGraphRequest(graph_id="g\x00"), metadata=A), "graph_id"),
        (stub.CancelRun(pb.CancelRunRequest(run_id="r", reason="\x00"), metadata=A), "reason"),
        (
            stub.SaveGraph(
                pb.SaveGraphRequest(graph_id="g\x00", graph_json=json.dumps(GRAPH)), metadata=A
            ),
            "graph_id",
        ),
        (
            stub.CreateRun(create({"tasks": [sleep_task("a", value="x\x00y")]}), metadata=A),
            "tasks[a].defaults.value",
        ),
        (
            stub.CreateRun(
                pb.CreateRunRequest(graph=graph_to_proto({"tasks": [sleep_task("a\x00")]})),
                metadata=A,
            ),
            "tasks[0].id",
        ),
        (
            stub.WatchRun(pb.WatchRunRequest(run_id="\x00"), metadata=A),
            "run_id",
        ),
    ]
    for call, field in cases:
        assert field in fields(await refused(call))
    inputs = {"*": Struct()}
    inputs["*"].update({"value": "a\x00"})
    error = await refused(stub.CreateRun(create(inputs=inputs), metadata=A))
    assert fields(error) == {"inputs.value": "NUL"}
    await healthy(stub)


async def test_a_nul_output_fails_its_task_once_with_a_clean_message(stub: Stub) -> None:
    graph = {"tasks": [{"id": "out", "type": "RunTestUnstorable", "config": {"kind": "nul"}}]}
    run = (await stub.CreateRun(create(graph), metadata=A, timeout=10)).run
    async for _ in stub.WatchRun(pb.WatchRunRequest(run_id=run.run_id), metadata=A, timeout=20):
        pass
    done = (await stub.GetRun(pb.GetRunRequest(run_id=run.run_id), metadata=A)).run
    assert done.status == common_pb2.RUN_STATUS_FAILED
    (task,) = done.tasks
    assert task.attempt == 1 and task.status == common_pb2.TASK_STATUS_FAILED
    assert "its output cannot be stored: outputs.value: text must not contain NUL" in (
        done.error.message
    )
    for text in (done.error.message, task.error.message):
        assert leaked(text) is None, text
    await healthy(stub)


# -- 4. deep JSON --------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [100, 1000, 100_000])
async def test_deeply_nested_json_is_refused_everywhere(stub: Stub, depth: int) -> None:
    value = '{"a": ' * depth + "1" + "}" * depth  # json.dumps itself would recurse too deep
    deep_defaults = '{"tasks": [{"id": "a", "type": "RunTestSleep", "defaults": {"value": %s}}]}'
    deep_defaults %= value
    deep_document = "[" * depth + "]" * depth
    for text in (deep_defaults, deep_document):
        for call, kind in (
            (stub.CreateRun, pb.CreateRunRequest),
            (stub.ValidateGraph, pb.ValidateGraphRequest),
            (stub.ExportCode, pb.ExportCodeRequest),
            (stub.SaveGraph, pb.SaveGraphRequest),
        ):
            error = await refused(call(kind(graph_json=text), metadata=A))
            assert set(fields(error).values()) == {"TOO_DEEP"}
    await healthy(stub)


async def test_json_within_protobuf_but_past_the_limit_names_its_field(stub: Stub) -> None:
    inputs = {"*": Struct()}
    inputs["*"].update({"value": nest(30)})
    error = await refused(stub.CreateRun(create(inputs=inputs), metadata=A))
    assert set(fields(error)) == {"inputs.value" + ".a" * 23}
    graph = {"tasks": [sleep_task("a", value=nest(30))]}
    error = await refused(
        stub.CreateRun(pb.CreateRunRequest(graph=graph_to_proto(graph)), metadata=A)
    )
    assert list(fields(error)) == ["tasks[a].defaults.value" + ".a" * 23]
    nested: dict[str, Any] = {"tasks": [sleep_task("leaf")]}
    for level in range(12):
        nested = {"tasks": [{"id": f"c{level}", "type": "JsonTask", "subgraph": nested}]}
    error = await refused(
        stub.ValidateGraph(pb.ValidateGraphRequest(graph_json=json.dumps(nested)), metadata=A)
    )
    assert list(fields(error).values()) == ["TOO_DEEP"]
    await healthy(stub)


async def test_a_message_protobuf_cannot_parse_is_invalid_argument(
    stub: Stub, channel: grpc.aio.Channel
) -> None:
    inputs = {"*": Struct()}
    inputs["*"].update({"value": nest(60)})  # past protobuf's 100 levels
    error = await refused(stub.CreateRun(create(inputs=inputs), metadata=A))
    assert fields(error) == {"request": "BAD_MESSAGE"}
    # Bytes protobuf refuses: a string field that is not UTF-8 (an encoded surrogate).
    raw = channel.unary_unary("/graphmesh.v1.OrchestratorService/GetRun")
    error = await refused(raw(b"\n\x03a\xed\xa0\x80", metadata=A))
    assert fields(error) == {"request": "BAD_MESSAGE"}
    await healthy(stub)


# -- 5. NaN and Infinity ---------------------------------------------------------------------
@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
async def test_non_finite_numbers_are_refused(stub: Stub, number: float) -> None:
    inputs = {"*": Struct(), "b": Struct()}
    inputs["*"].update({"value": number})
    inputs["b"].update({"value": [1, {"x": number}]})
    error = await refused(stub.CreateRun(create(inputs=inputs), metadata=A))
    assert fields(error) == {"inputs.value": "NOT_FINITE", "inputs.b.value[1].x": "NOT_FINITE"}
    for literal in ("NaN", "Infinity", "-Infinity", "1e999"):
        text = '{"tasks": [{"id": "a", "type": "RunTestSleep", "defaults": {"value": %s}}]}'
        error = await refused(stub.CreateRun(create(graph_json=text % literal), metadata=A))
        assert fields(error) == {"graph_json": "BAD_JSON"}
        assert "finite" in (error.details() or "")
    await healthy(stub)


# -- 6. timeouts -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "duration",
    [
        Duration(seconds=2**63 - 1),
        Duration(seconds=-5),
        Duration(seconds=0),
        Duration(seconds=-(2**63)),
        Duration(seconds=1, nanos=-5),
        Duration(seconds=0, nanos=2_000_000_000),
        Duration(seconds=10**9),
    ],
)
async def test_out_of_range_timeouts_are_refused(stub: Stub, duration: Duration) -> None:
    error = await refused(stub.CreateRun(create(timeout=duration), metadata=A))
    assert fields(error) == {"timeout": "OUT_OF_RANGE"}
    run = (await stub.CreateRun(create(timeout=Duration(seconds=60)), metadata=A)).run
    assert run.run_id
    await healthy(stub)


# -- what the edge cannot catch stays opaque, never UNKNOWN ----------------------------
async def test_inside_text_past_the_edge_never_breaks_a_status() -> None:
    """A saved graph written in process (past the edge) has a task id with a lone
    surrogate: running it fails validation, whose field violation names the task. The
    status must still be sent (it was UNKNOWN, with the Python class name)."""
    async with (
        orchestrator_on("memory") as served,
        grpc.aio.insecure_channel(served.server.target) as channel,
    ):
        stub = OrchestratorServiceStub(channel)
        graph = {"tasks": [{"id": "t\ud800", "type": "NoSuch"}], "dataflows": []}
        await served.graphs.save_graph("a/odd", graph)
        error = await refused(stub.CreateRun(pb.CreateRunRequest(graph_id="odd"), metadata=A))
        assert fields(error) == {"tasks[t\\ud800]": "UNKNOWN_TYPE"}
        await healthy(stub)


async def test_a_response_the_server_cannot_build_is_internal_and_opaque() -> None:
    async with (
        orchestrator_on("memory") as served,
        grpc.aio.insecure_channel(served.server.target) as channel,
    ):
        stub, runs = OrchestratorServiceStub(channel), served.runs
        # An in-process caller is past the edge: the memory store keeps its lone surrogate.
        slow = {"tasks": [sleep_task("a", 30)], "dataflows": []}
        run = await runs.create_run(graph=slow, inputs={}, tenant="a", labels={"k": "\ud800"})
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetRun(pb.GetRunRequest(run_id=run.run_id), metadata=A)
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        assert "reference" in (caught.value.details() or "")
        assert leaked(caught.value.details() or "") is None
        await runs.cancel_run(run.run_id, tenant="a", reason="bye \ud800")
        request = pb.WatchRunRequest(run_id=run.run_id)
        with pytest.raises(grpc.aio.AioRpcError) as streamed:
            async for _ in stub.WatchRun(request, metadata=A, timeout=10):
                pass
        assert streamed.value.code() == grpc.StatusCode.INTERNAL
        assert leaked(streamed.value.details() or "") is None
        assert (await stub.ListTaskTypes(pb.ListTaskTypesRequest(), metadata=A)).task_types
