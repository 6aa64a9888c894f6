"""A seeded fuzz of every OrchestratorService RPC through the real gRPC server.

Hypothesis draws requests full of what a hostile tenant sends (NUL, lone surrogates in
JSON text, NaN/Infinity, huge and negative numbers, unknown enum values, deep nesting,
oversized strings, forged page tokens, other tenants' ids, bytes protobuf refuses) and
sends each to a server on the memory, SQLite and Postgres stores. The run fails on any
INTERNAL or UNKNOWN status, on a status that carries text from inside the server (a
Python class name, "Traceback", SQL, a file path, "DETAIL"), on a run or task error with
driver text, and unless the server is healthy afterwards (its health check serves and a
normal run still completes).

Seeded and bounded for CI: ``GRAPHMESH_FUZZ_EXAMPLES`` examples per store (default 300),
drawn from a fixed seed unless ``GRAPHMESH_FUZZ_SEED`` names another; ``make fuzz`` runs
a longer one.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from support.edge import leaked
from support.orchestrator import STORES, orchestrator_on, store_location
from support.run_tasks import sleep_task

from graphmesh.orchestrator.wire.convert import graph_to_proto
from graphmesh.v1 import common_pb2
from graphmesh.v1 import orchestrator_pb2 as pb
from graphmesh.v1.orchestrator_pb2_grpc import OrchestratorServiceStub

EXAMPLES = int(os.environ.get("GRAPHMESH_FUZZ_EXAMPLES", "300"))
SEED = os.environ.get("GRAPHMESH_FUZZ_SEED") or None
SERVICE = "/graphmesh.v1.OrchestratorService/"
FORBIDDEN_CODES = {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNIMPLEMENTED,
}
DRIVER_TEXT = ("DETAIL", "CONTEXT:", "psycopg", "sqlite3", "Traceback", "SQLSTATE")
CALL_TIMEOUT_S = 10.0
METADATA = [
    (("authorization", "Bearer token-a"),),
    (("authorization", "Bearer token-b"),),
    (("authorization", "Bearer nope"),),
    (),
]


# -- the server, in a thread of its own --------------------------------------------------
@dataclass
class FuzzTarget:
    """A server on one store, running in its own event loop thread, and what the fuzz
    learned of it (real ids and tokens, drawn again to reach deeper)."""

    target: str
    channel: grpc.Channel
    run_ids: list[str] = field(default_factory=lambda: ["missing"])
    graph_ids: list[str] = field(default_factory=lambda: ["missing"])
    tokens: list[str] = field(default_factory=lambda: ["bogus"])

    @property
    def stub(self) -> Any:
        return OrchestratorServiceStub(self.channel)


@pytest.fixture(params=STORES)
def fuzz_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FuzzTarget]:
    location = store_location(request.param, request, tmp_path)
    started: Future[str] = Future()
    stop = threading.Event()

    async def serve() -> None:
        try:
            async with orchestrator_on(request.param, location=location) as served:
                started.set_result(served.server.target)
                while not stop.is_set():  # noqa: ASYNC110 (stopped from another thread)
                    await asyncio.sleep(0.05)
        except BaseException as error:
            if not started.done():
                started.set_exception(error)
            raise

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="fuzz-server")
    thread.start()
    try:
        target = started.result(timeout=60)
        with grpc.insecure_channel(target) as channel:
            yield FuzzTarget(target=target, channel=channel)
    finally:
        stop.set()
        thread.join(timeout=60)


# -- strategies ----------------------------------------------------------------------------
HOSTILE_TEXT = st.sampled_from(
    [
        "", " ", "\x00", "a\x00b", "\x01\x1f", "é", "\u202e", "\uffff", "\U0001f600", "*",
        "x" * 300, "x" * 70_000, "../../../etc/passwd", "..", "%s%n", "{}", "null", "a.b",
        "[0]", "'\"", "default", "a/b", "tasks[0]", "\\", "\\u0000", "RunTestSleep",
    ]
)  # fmt: skip
PLAIN = st.sampled_from(["a", "b", "c", "value", "x1", "team"])
# Mostly plain names, so that requests get past the first check and reach deeper code.
NAMES = st.one_of(PLAIN, PLAIN, HOSTILE_TEXT, st.text(max_size=12))
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, NAMES)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(NAMES, inner, max_size=3)),
    max_leaves=12,
)
BENIGN = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**53), 2**53),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(PLAIN, inner, max_size=3)),
    max_leaves=8,
)
VALUES = st.one_of(BENIGN, BENIGN, JSON)
INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
ENUM = st.one_of(st.integers(0, 3), INT32)


def nested_text(depth: int, kind: str) -> str:
    """JSON nested ``depth`` deep, as text (building it as data would recurse)."""
    if kind == "object":
        return '{"a": ' * depth + "1" + "}" * depth
    return "[" * depth + "]" * depth


DEEP_TEXT = st.builds(nested_text, st.integers(1, 3000), st.sampled_from(["object", "list"]))


@st.composite
def tasks(draw: st.DrawFn, level: int = 0) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(["RunTestSleep", "RunTestTenant", "RunTestUnstorable", "DebugLogTask",
                         "JsonTask", "NoSuchTask"])
    )  # fmt: skip
    task: dict[str, Any] = {"id": draw(NAMES), "type": kind}
    if draw(st.booleans()):
        task["defaults"] = draw(st.dictionaries(NAMES, JSON, max_size=3))
    if kind == "RunTestSleep":  # every run ends soon: the health check needs free slots
        defaults = task.setdefault("defaults", {})
        if isinstance(defaults, dict):
            defaults["seconds"] = draw(st.sampled_from([0, 0.01, "x", None, -1, [1]]))
    if kind == "RunTestUnstorable":
        task["config"] = {"kind": draw(st.sampled_from(["nul", "surrogate", "nan", "deep"]))}
    elif draw(st.booleans()):
        task["config"] = draw(st.dictionaries(NAMES, JSON, max_size=2))
    if kind == "JsonTask" and level < 2 and draw(st.booleans()):
        task["subgraph"] = draw(graphs(level + 1))
    return task


@st.composite
def graphs(draw: st.DrawFn, level: int = 0) -> dict[str, Any]:
    drawn = draw(st.lists(tasks(level), max_size=4))
    ids = [task["id"] for task in drawn] or ["a"]
    flows = st.fixed_dictionaries(
        {
            "source_task": st.one_of(st.sampled_from(ids), NAMES),
            "source_port": st.sampled_from(["value", "tenant", "x"]),
            "target_task": st.one_of(st.sampled_from(ids), NAMES),
            "target_port": st.sampled_from(["value", "seconds", "x"]),
        }
    )
    return {"tasks": drawn, "dataflows": draw(st.lists(flows, max_size=3))}


@st.composite
def valid_graphs(draw: st.DrawFn) -> dict[str, Any]:
    """A chain of fast tasks that runs, with drawn (mostly benign) values."""
    count = draw(st.integers(1, 3))
    chain = [sleep_task(f"t{i}", value=draw(VALUES)) for i in range(count)]
    flows = [
        {"source_task": f"t{i}", "source_port": "value", "target_task": f"t{i + 1}",
         "target_port": "value"}
        for i in range(count - 1)
    ]  # fmt: skip
    return {"tasks": chain, "dataflows": flows}


ANY_GRAPH = st.one_of(valid_graphs(), valid_graphs(), graphs())


@st.composite
def graph_json(draw: st.DrawFn) -> str:
    graph = draw(ANY_GRAPH)
    text = json.dumps(graph, allow_nan=True)
    choice = draw(st.integers(0, 8))
    if choice == 0:
        return draw(DEEP_TEXT)
    if choice == 1 and '"a"' in text:  # a lone surrogate, as JSON can write it
        return text.replace('"a"', '"a\\ud800"', 1)
    if choice == 2:
        return draw(st.text(max_size=40))
    if choice == 3:  # the seed's dependency-JSON form
        return json.dumps([{"id": t["id"], "type": t["type"], "input": t.get("defaults", {})}
                           for t in graph["tasks"]], allow_nan=True)  # fmt: skip
    return text


def struct_of(data: Any) -> Struct | None:
    """A Struct of ``data``, or None when protobuf cannot hold it client-side."""
    struct = Struct()
    try:
        struct.update(data)
    except (ValueError, TypeError, OverflowError, UnicodeError):
        return None
    return struct


@st.composite
def graph_source(draw: st.DrawFn, target: FuzzTarget, with_id: bool) -> dict[str, Any]:
    which = draw(
        st.sampled_from(["graph_json", "graph", "graph_id"] if with_id else ["graph_json", "graph"])
    )
    if which == "graph_json":
        return {"graph_json": draw(graph_json())}
    if which == "graph_id":
        return {"graph_id": draw(ids(target, target.graph_ids))}
    try:
        message = graph_to_proto(draw(ANY_GRAPH))
    except (ValueError, TypeError, OverflowError, UnicodeError, KeyError):
        return {"graph_json": "{}"}
    return {"graph": message}


@st.composite
def inputs(draw: st.DrawFn) -> dict[str, Struct]:
    found = {}
    for key, value in draw(
        st.dictionaries(NAMES, st.dictionaries(NAMES, JSON, max_size=3), max_size=2)
    ).items():
        struct = struct_of(value)
        if struct is not None:
            found[key] = struct
    if draw(st.integers(0, 9)) == 0:  # deeper than protobuf parses
        deep: Any = 1
        for _ in range(draw(st.integers(20, 80))):
            deep = {"a": deep}
        found["*"] = struct_of({"value": deep}) or Struct()
    return found


def pick(known: list[str]) -> st.SearchStrategy[str]:
    """One of ``known`` (which grows as the fuzz learns): drawn as an index, so what is
    drawn does not depend on that state (Hypothesis replays draws)."""
    return st.builds(lambda index: known[index % len(known)], st.integers(0, 2**16))


def ids(target: FuzzTarget, known: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(pick(known), NAMES)


def requests(target: FuzzTarget) -> dict[str, Callable[[st.DrawFn], Message]]:
    """For each RPC, how to draw its request."""
    run_id = ids(target, target.run_ids)
    labels = st.one_of(st.just({}), st.dictionaries(NAMES, NAMES, max_size=3))
    timeouts = st.one_of(
        st.just({}),
        st.builds(lambda s: {"timeout": Duration(seconds=s)}, st.integers(1, 3600)),
        st.builds(lambda s, n: {"timeout": Duration(seconds=s, nanos=n)}, INT64, INT32),
    )
    key = st.one_of(st.just(""), NAMES)
    page_token = st.one_of(st.just(""), pick(target.tokens), NAMES)
    return {
        "ListTaskTypes": lambda draw: pb.ListTaskTypesRequest(category=draw(NAMES)),
        "ValidateGraph": lambda draw: pb.ValidateGraphRequest(**draw(graph_source(target, False))),
        "CreateRun": lambda draw: pb.CreateRunRequest(
            **draw(graph_source(target, True)),
            inputs=draw(st.one_of(st.just({}), inputs())),
            idempotency_key=draw(key),
            labels=draw(labels),
            **draw(timeouts),
        ),
        "GetRun": lambda draw: pb.GetRunRequest(run_id=draw(run_id), view=draw(ENUM)),
        "ListRuns": lambda draw: pb.ListRunsRequest(
            statuses=draw(st.lists(ENUM, max_size=3)),
            labels=draw(labels),
            page_size=draw(INT32),
            page_token=draw(page_token),
            view=draw(ENUM),
        ),
        "CancelRun": lambda draw: pb.CancelRunRequest(run_id=draw(run_id), reason=draw(NAMES)),
        "ResumeRun": lambda draw: pb.ResumeRunRequest(run_id=draw(run_id)),
        "WatchRun": lambda draw: pb.WatchRunRequest(run_id=draw(run_id), from_seq=draw(INT64)),
        "GetTaskOutput": lambda draw: pb.GetTaskOutputRequest(
            run_id=draw(run_id), task_id=draw(NAMES)
        ),
        "SaveGraph": lambda draw: pb.SaveGraphRequest(
            graph_id=draw(key),
            name=draw(NAMES),
            description=draw(NAMES),
            labels=draw(labels),
            **draw(graph_source(target, False)),
        ),
        "GetGraph": lambda draw: pb.GetGraphRequest(graph_id=draw(ids(target, target.graph_ids))),
        "ListGraphs": lambda draw: pb.ListGraphsRequest(
            labels=draw(labels), page_size=draw(INT32), page_token=draw(page_token)
        ),
        "ExportCode": lambda draw: pb.ExportCodeRequest(**draw(graph_source(target, True))),
    }


def mutated(data: st.DataObject, raw: bytes) -> bytes:
    """``raw`` with a few bytes flipped, cut or inserted (for the parser). Positions are
    drawn independently of ``raw``'s length, so replays draw the same."""
    buffer = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, 2**16)) % (len(buffer) + 1)
        action = data.draw(st.sampled_from(["flip", "insert", "cut"]))
        if action == "insert" or not buffer:
            buffer[where:where] = data.draw(st.binary(min_size=1, max_size=4))
        elif action == "flip":
            buffer[min(where, len(buffer) - 1)] ^= data.draw(st.integers(1, 255))
        else:
            del buffer[where : where + data.draw(st.integers(1, 8))]
    return bytes(buffer)


# -- checks ----------------------------------------------------------------------------------
def check_error(rpc: str, error: grpc.RpcError) -> None:
    code, text = error.code(), error.details() or ""  # type: ignore[attr-defined]
    assert code not in FORBIDDEN_CODES, f"{rpc}: {code.name}: {text}"
    assert leaked(text) is None, f"{rpc}: inside text {leaked(text)!r} in {text!r}"


def check_run(run: pb.Run) -> None:
    errors = [run.error.message, *(task.error.message for task in run.tasks)]
    for text in errors:
        found = [word for word in DRIVER_TEXT if word in text]
        assert not found, f"driver text {found} in a run error: {text!r}"


def learn(target: FuzzTarget, rpc: str, response: Any) -> None:
    if rpc == "CreateRun":
        target.run_ids.append(response.run.run_id)
        check_run(response.run)
    elif rpc in ("GetRun", "CancelRun", "ResumeRun"):
        check_run(response.run)
    elif rpc == "ListRuns":
        for run in response.runs:
            check_run(run)
    elif rpc == "SaveGraph":
        target.graph_ids.append(response.graph.graph_id)
    if getattr(response, "next_page_token", ""):
        target.tokens.append(response.next_page_token)


def call(target: FuzzTarget, data: st.DataObject) -> None:
    makers = requests(target)
    # Runs are where the stores are reached: CreateRun is drawn more often.
    rpc = data.draw(st.sampled_from([*sorted(makers), *["CreateRun"] * 4]), label="rpc")
    request = makers[rpc](data.draw)
    metadata = data.draw(
        st.sampled_from(METADATA[:2]) if data.draw(st.integers(0, 9)) else st.sampled_from(METADATA)
    )
    try:
        if data.draw(st.integers(0, 9)) == 0:
            raw = mutated(data, request.SerializeToString())
            method = (
                target.channel.unary_stream if rpc == "WatchRun" else target.channel.unary_unary
            )
            answer = method(SERVICE + rpc)(raw, metadata=metadata, timeout=CALL_TIMEOUT_S)
            if rpc == "WatchRun":
                for _ in answer:
                    pass
            return
        stub_method = getattr(target.stub, rpc)
        if rpc == "WatchRun":
            for _ in stub_method(request, metadata=metadata, timeout=CALL_TIMEOUT_S):
                pass
            return
        learn(target, rpc, stub_method(request, metadata=metadata, timeout=CALL_TIMEOUT_S))
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and rpc == "WatchRun":  # type: ignore[attr-defined]
            return  # a run of sleeping tasks outlived the watch: not a failure
        check_error(rpc, error)


def aim(target: FuzzTarget) -> None:
    """Real runs, a saved graph and a page token for the fuzz to aim at."""
    stub, metadata = target.stub, METADATA[0]
    graph = json.dumps({"tasks": [sleep_task("a", value=1)], "dataflows": []})
    for _ in range(3):
        run = stub.CreateRun(pb.CreateRunRequest(graph_json=graph), metadata=metadata, timeout=30)
        target.run_ids.append(run.run.run_id)
    saved = stub.SaveGraph(pb.SaveGraphRequest(graph_json=graph), metadata=metadata, timeout=30)
    target.graph_ids.append(saved.graph.graph_id)
    page = stub.ListRuns(pb.ListRunsRequest(page_size=1), metadata=metadata, timeout=30)
    target.tokens.append(page.next_page_token)


def check_healthy(target: FuzzTarget) -> None:
    health = health_pb2_grpc.HealthStub(target.channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    stub, metadata = target.stub, METADATA[0]
    graph = {"tasks": [sleep_task("a", value=1), sleep_task("b")], "dataflows": []}
    request = pb.CreateRunRequest(graph_json=json.dumps(graph))
    run = stub.CreateRun(request, metadata=metadata, timeout=30).run
    for _ in stub.WatchRun(pb.WatchRunRequest(run_id=run.run_id), metadata=metadata, timeout=60):
        pass
    done = stub.GetRun(pb.GetRunRequest(run_id=run.run_id), metadata=metadata, timeout=30).run
    assert done.status == common_pb2.RUN_STATUS_COMPLETED, done.error.message
    listed = stub.ListRuns(pb.ListRunsRequest(view=pb.RUN_VIEW_FULL), metadata=metadata, timeout=30)
    assert run.run_id in [item.run_id for item in listed.runs]


# -- the fuzz ------------------------------------------------------------------------------
def test_fuzz_every_rpc(fuzz_target: FuzzTarget) -> None:
    @seed(int(SEED or 0))
    @settings(
        max_examples=EXAMPLES,
        derandomize=SEED is None,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        call(fuzz_target, data)

    aim(fuzz_target)
    fuzz()
    check_healthy(fuzz_target)
