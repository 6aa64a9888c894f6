"""An orchestrator serving the run viewer, and one call made two ways: over gRPC (the
generated channel) and over Connect (connect-python's client, JSON bodies, as the page
sends them). Each call's :class:`Outcome` is comparable across the two."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from connectrpc.client import ConnectClient
from connectrpc.errors import ConnectError
from google.protobuf.message import Message
from google.rpc import status_pb2

from graphmesh.orchestrator.api.server import OrchestratorServer
from graphmesh.orchestrator.api.settings import EdgeSettings
from graphmesh.orchestrator.api.web.bridge import SERVICE, method_info
from graphmesh.orchestrator.api.web.settings import ViewerSettings
from support.orchestrator import TOKENS, Served, _open_store


@asynccontextmanager
async def viewer_on(
    store: str = "memory",
    *,
    location: str = "",
    edge: EdgeSettings | None = None,
    tokens: dict[str, str] | None = TOKENS,
    trace_url_template: str | None = None,
) -> AsyncIterator[Served]:
    """A started orchestrator with its viewer on a free loopback port."""
    viewer = ViewerSettings(viewer_listen="127.0.0.1:0", trace_url_template=trace_url_template)
    async with AsyncExitStack() as stack:
        runs, graphs = await _open_store(stack, store, location)
        server = await stack.enter_async_context(
            OrchestratorServer(
                runs,
                graphs,
                tokens=tokens,
                grace_period=0,
                edge=edge or EdgeSettings(),
                viewer=viewer,
            )
        )
        yield Served(server=server, runs=runs, graphs=graphs)


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """A call's result: ``code`` ``OK`` with the responses, or the failure's code name,
    message and ``google.rpc`` details (as ``(type url, bytes)``)."""

    code: str
    message: str = ""
    details: tuple[tuple[str, bytes], ...] = ()
    responses: tuple[Message, ...] = field(default=(), compare=False)


def _method(name: str) -> Any:
    return SERVICE.methods_by_name[name]


async def by_grpc(target: str, name: str, request: Message, token: str | None) -> Outcome:
    method = _method(name)
    info = method_info(method)
    path = f"/{SERVICE.full_name}/{name}"
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    async with grpc.aio.insecure_channel(target) as channel:
        codec = {
            "request_serializer": info.input.SerializeToString,
            "response_deserializer": info.output.FromString,
        }
        try:
            if method.server_streaming:
                call = channel.unary_stream(path, **codec)(request, metadata=metadata, timeout=10)
                responses = tuple([item async for item in call])
            else:
                responses = (
                    await channel.unary_unary(path, **codec)(
                        request, metadata=metadata, timeout=10
                    ),
                )
        except grpc.aio.AioRpcError as error:
            raw = next(
                (v for k, v in error.trailing_metadata() or () if k == "grpc-status-details-bin"),
                b"",
            )
            details = status_pb2.Status.FromString(raw).details if raw else ()
            code = "CANCELED" if error.code() == grpc.StatusCode.CANCELLED else error.code().name
            return Outcome(
                code=code,
                message=error.details() or "",
                details=tuple((d.type_url, d.value) for d in details),
            )
    return Outcome(code="OK", responses=responses)


async def by_connect(url: str, name: str, request: Message, token: str | None) -> Outcome:
    method = _method(name)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with ConnectClient(url.rstrip("/"), proto_json=True, timeout_ms=10_000) as client:
        try:
            if method.server_streaming:
                stream = client.execute_server_stream(
                    request=request, method=method_info(method), headers=headers
                )
                responses = tuple([item async for item in stream])
            else:
                responses = (
                    await client.execute_unary(
                        request=request, method=method_info(method), headers=headers
                    ),
                )
        except ConnectError as error:
            details = tuple((d.type_url, d.value) for d in error.details)
            return Outcome(code=error.code.name, message=error.message, details=details)
    return Outcome(code="OK", responses=responses)
