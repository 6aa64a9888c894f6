"""The Python SDK: a remote orchestrator behind the same domain types the engine uses.

::

    async with graphmesh.Client("localhost:50051", token="...") as client:
        run = await client.submit(builder, inputs={"text": "hello"})
        async for event in client.watch(run.run_id):
            print(event.seq, event.kind, event.task_id)
        final = await client.wait(run.run_id)
        print(await client.output(run.run_id, "embed"))

Every call carries a deadline (``timeout`` seconds, default 30; streams ``stream_timeout``,
default one hour). Calls that only read are retried by gRPC when the server answers
UNAVAILABLE (its database restarting, say), and :meth:`Client.wait` picks its watch up
again where it broke off. Failed calls raise domain exceptions: RunNotFoundError, RunStateError,
GraphValidationError (issues rebuilt from the field violations), InvalidRequestError (a
request past the server's limits; ``violations`` name the fields), QuotaExceededError (the
tenant's quota; ``quota`` and ``retry_after``), GraphNotFoundError,
StoreUnavailableError (the server's database is unreachable), or a
:class:`~graphmesh.orchestrator.wire.errors.RemoteError` (UnauthenticatedError,
RemoteDeadlineError, UnavailableError) for the rest.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration

from graphmesh.orchestrator.builder import TaskGraphBuilder
from graphmesh.orchestrator.errors import GraphIssue
from graphmesh.orchestrator.graph import TaskGraph, graph_to_json
from graphmesh.orchestrator.runs.records import (
    JsonObject,
    RunEventRecord,
    RunRecord,
    RunState,
    StoreUnavailableError,
)
from graphmesh.orchestrator.storage.saved_graphs import SavedGraph
from graphmesh.orchestrator.wire import convert
from graphmesh.orchestrator.wire.errors import UnavailableError, from_rpc_error
from graphmesh.orchestrator.wire.events import event_from_proto
from graphmesh.orchestrator.wire.values import run_status_to_proto, struct_to_dict
from graphmesh.services.kit.telemetry import client_interceptors
from graphmesh.v1 import orchestrator_pb2 as pb
from graphmesh.v1 import orchestrator_pb2_grpc

GraphLike = TaskGraph | TaskGraphBuilder | Mapping[str, Any] | list[Any] | str | Path
"""A graph, a builder, graph JSON (or dependency JSON) as data or text, or a JSON file."""
R = TypeVar("R")
SERVICE = "graphmesh.v1.OrchestratorService"
READ_ONLY = (
    "GetRun", "ListRuns", "WatchRun", "GetTaskOutput", "GetGraph", "ListGraphs",
    "ListTaskTypes", "ValidateGraph", "ExportCode",
)  # fmt: skip
RETRY_READS = {
    "methodConfig": [
        {
            "name": [{"service": SERVICE, "method": method} for method in READ_ONLY],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.2s",
                "maxBackoff": "3s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}
"""gRPC's own retries for the calls that change nothing (a stream only before its first
message): UNAVAILABLE means the server, or its database, is restarting."""
CHANNEL_OPTIONS = (("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(RETRY_READS)))
WAIT_RETRY_PAUSE_S = 1.0


class Client:
    """An OrchestratorService client; use it as an async context manager."""

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        token: str | None = None,
        timeout: float = 30.0,
        stream_timeout: float = 3600.0,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._credentials = credentials
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None

    async def __aenter__(self) -> Self:
        # With OpenTelemetry set up in this process, every call is a span whose context
        # travels as ``traceparent`` metadata: a run joins its submitter's trace.
        interceptors = client_interceptors()
        if self._credentials is None:
            self._channel = grpc.aio.insecure_channel(
                self.target, options=CHANNEL_OPTIONS, interceptors=interceptors
            )
        else:
            self._channel = grpc.aio.secure_channel(
                self.target, self._credentials, options=CHANNEL_OPTIONS, interceptors=interceptors
            )
        self._stub = orchestrator_pb2_grpc.OrchestratorServiceStub(self._channel)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._channel is not None:
            await self._channel.close(grace=None)
        self._channel = self._stub = None

    # -- runs ----------------------------------------------------------------------------
    async def submit(
        self,
        graph: GraphLike,
        *,
        inputs: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
        run_timeout: float | None = None,
    ) -> RunRecord:
        """Start a run. ``inputs`` keys are ``port`` (every root task) or ``task.port``."""
        request = pb.CreateRunRequest(
            graph_json=graph_json(graph),
            inputs=convert.inputs_to_proto(inputs or {}),
            idempotency_key=idempotency_key or "",
            labels=dict(labels or {}),
        )
        if run_timeout is not None:
            request.timeout.CopyFrom(_duration(run_timeout))
        response = await self._call(self._stub.CreateRun, request)
        record = convert.run_from_proto(response.run)
        return _with_dedup(record, response.deduplicated)

    async def get(self, run_id: str) -> RunRecord:
        response = await self._call(self._stub.GetRun, pb.GetRunRequest(run_id=run_id))
        return convert.run_from_proto(response.run)

    async def runs(
        self,
        *,
        statuses: Iterable[RunState] = (),
        labels: Mapping[str, str] | None = None,
        page_size: int = 50,
    ) -> AsyncIterator[RunRecord]:
        """Every matching run, newest first, fetched one page at a time (BASIC view)."""
        request = pb.ListRunsRequest(
            statuses=[run_status_to_proto(status) for status in statuses],
            labels=dict(labels or {}),
            page_size=page_size,
        )
        while True:
            response = await self._call(self._stub.ListRuns, request)
            for run in response.runs:
                yield convert.run_from_proto(run)
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    async def cancel(self, run_id: str, *, reason: str = "") -> RunRecord:
        request = pb.CancelRunRequest(run_id=run_id, reason=reason)
        return convert.run_from_proto((await self._call(self._stub.CancelRun, request)).run)

    async def resume(self, run_id: str) -> RunRecord:
        request = pb.ResumeRunRequest(run_id=run_id)
        return convert.run_from_proto((await self._call(self._stub.ResumeRun, request)).run)

    async def watch(self, run_id: str, *, from_seq: int = 0) -> AsyncIterator[RunEventRecord]:
        """The run's events from seq ``from_seq`` on (0 or 1: all), then live ones; ends
        after the event that ends the run. To continue after event ``e``: ``e.seq + 1``."""
        call = self._stub.WatchRun(
            pb.WatchRunRequest(run_id=run_id, from_seq=from_seq),
            timeout=self.stream_timeout,
            metadata=self._metadata,
        )
        try:
            async for response in call:
                yield event_from_proto(response.event)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from error
        finally:
            call.cancel()  # the caller stopped early: end the stream on the server too

    async def wait(self, run_id: str) -> RunRecord:
        """Block until the run ends (completed, failed or cancelled); return it. A watch
        that breaks off with UNAVAILABLE is taken up again after the last event seen, for
        up to ``stream_timeout`` seconds in all."""
        async with asyncio.timeout(self.stream_timeout):
            run = await self.get(run_id)
            seen = run.last_seq
            while not run.status.finished:
                try:
                    async for event in self.watch(run_id, from_seq=seen + 1):
                        seen = event.seq
                except (UnavailableError, StoreUnavailableError):
                    await asyncio.sleep(WAIT_RETRY_PAUSE_S)
                run = await self.get(run_id)
        return run

    async def output(self, run_id: str, task_id: str) -> JsonObject:
        """One task's stored output (RunStateError if it has none yet)."""
        request = pb.GetTaskOutputRequest(run_id=run_id, task_id=task_id)
        response = await self._call(self._stub.GetTaskOutput, request)
        return struct_to_dict(response.output)

    # -- graphs and catalog --------------------------------------------------------------
    async def validate(self, graph: GraphLike) -> list[GraphIssue]:
        """Every problem the server finds in ``graph``; empty when it is valid."""
        request = pb.ValidateGraphRequest(graph_json=graph_json(graph))
        response = await self._call(self._stub.ValidateGraph, request)
        return [
            convert.issue_from_field(v.field, v.description, reason="") for v in response.violations
        ]

    async def task_types(self, category: str = "") -> list[JsonObject]:
        """The server's task catalog, in the ``graphmesh tasks --json`` form."""
        request = pb.ListTaskTypesRequest(category=category)
        response = await self._call(self._stub.ListTaskTypes, request)
        return [convert.task_type_from_proto(task_type) for task_type in response.task_types]

    async def export_code(self, graph: GraphLike | None = None, *, graph_id: str = "") -> str:
        """Python builder code for ``graph``, or for the saved graph ``graph_id``."""
        if graph_id:
            request = pb.ExportCodeRequest(graph_id=graph_id)
        else:
            request = pb.ExportCodeRequest(graph_json=graph_json(_required(graph)))
        return str((await self._call(self._stub.ExportCode, request)).python_source)

    async def save_graph(
        self,
        graph: GraphLike,
        *,
        graph_id: str = "",
        name: str = "",
        description: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> SavedGraph:
        request = pb.SaveGraphRequest(
            graph_id=graph_id,
            name=name,
            description=description,
            graph_json=graph_json(graph),
            labels=dict(labels or {}),
        )
        response = await self._call(self._stub.SaveGraph, request)
        return convert.saved_graph_from_proto(response.graph)

    async def get_graph(self, graph_id: str) -> SavedGraph:
        response = await self._call(self._stub.GetGraph, pb.GetGraphRequest(graph_id=graph_id))
        return convert.saved_graph_from_proto(response.graph)

    async def list_graphs(self, *, labels: Mapping[str, str] | None = None) -> list[SavedGraph]:
        """Every saved graph (without the graph itself), most recently updated first."""
        request = pb.ListGraphsRequest(labels=dict(labels or {}))
        graphs: list[SavedGraph] = []
        while True:
            response = await self._call(self._stub.ListGraphs, request)
            graphs.extend(convert.saved_graph_from_proto(saved) for saved in response.graphs)
            if not response.next_page_token:
                return graphs
            request.page_token = response.next_page_token

    # -- plumbing --------------------------------------------------------------------------
    async def _call(self, method: Callable[..., Awaitable[R]], request: Any) -> R:
        if self._stub is None:
            raise RuntimeError("use the Client in 'async with Client(...) as client:'")
        try:
            return await method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from error


def graph_json(graph: GraphLike) -> str:
    """Graph JSON text for the API (``graph_json`` keeps JSON number types exact)."""
    if isinstance(graph, TaskGraphBuilder):
        graph = graph.graph
    if isinstance(graph, TaskGraph):
        return json.dumps(graph_to_json(graph))
    if isinstance(graph, Path):
        return graph.read_text(encoding="utf-8")
    if isinstance(graph, str):
        return graph
    return json.dumps(graph)


def _required(graph: GraphLike | None) -> GraphLike:
    if graph is None:
        raise TypeError("give a graph or a graph_id")
    return graph


def _duration(seconds: float) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(int(seconds * 1e9))
    return duration


def _with_dedup(record: RunRecord, deduplicated: bool) -> RunRecord:
    return replace(record, deduplicated=deduplicated) if deduplicated else record
