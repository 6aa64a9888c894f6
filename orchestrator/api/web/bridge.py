"""Connect endpoints for every OrchestratorService method, each forwarded to the gRPC server.

A Connect call arrives as a parsed request message (``connect-python`` reads JSON or
binary bodies, envelopes, compression and timeouts). It is sent on, with the caller's
``authorization`` and ``traceparent`` headers and deadline, over a channel to this
process's own gRPC server (a private Unix socket). So the browser API passes the very
interceptors a gRPC caller does (auth, error guard, edge checks, quotas, draining) and
reaches the same servicer: there is no second implementation of any rule here. A failed
call comes back as a :class:`ConnectError` with the same code, message and
``google.rpc`` details; connect-python maps the code to the Connect protocol's HTTP status.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo
from connectrpc.request import RequestContext
from connectrpc.server import Endpoint
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from graphmesh.orchestrator.wire.errors import packed_details
from graphmesh.v1 import orchestrator_pb2

logger = logging.getLogger(__name__)
SERVICE: ServiceDescriptor = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"]
FORWARDED_HEADERS = ("authorization", "traceparent", "tracestate")
_IDEMPOTENCY = {
    descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS: IdempotencyLevel.NO_SIDE_EFFECTS,
    descriptor_pb2.MethodOptions.IDEMPOTENT: IdempotencyLevel.IDEMPOTENT,
}
# Connect spells one code differently from gRPC; every other name is the same.
_CODES = {grpc.StatusCode.CANCELLED: Code.CANCELED}

Unary = Callable[[Any, RequestContext[Any, Any]], Awaitable[Any]]
Streaming = Callable[[Any, RequestContext[Any, Any]], AsyncIterator[Any]]


def service_endpoints(
    channel: grpc.aio.Channel, service: ServiceDescriptor = SERVICE
) -> dict[str, Any]:
    """``{"/<service>/<Method>": endpoint}`` for every method of ``service``."""
    return {
        f"/{service.full_name}/{method.name}": _endpoint(channel, service, method)
        for method in service.methods
    }


def method_info(method: MethodDescriptor) -> MethodInfo[Any, Any]:
    """What Connect needs to know of a method: its messages and idempotency (a
    NO_SIDE_EFFECTS method may also be called with GET)."""
    return MethodInfo(
        name=method.name,
        service_name=method.containing_service.full_name,
        input=GetMessageClass(method.input_type),
        output=GetMessageClass(method.output_type),
        idempotency_level=_IDEMPOTENCY.get(
            method.GetOptions().idempotency_level, IdempotencyLevel.UNKNOWN
        ),
    )


def _endpoint(
    channel: grpc.aio.Channel, service: ServiceDescriptor, method: MethodDescriptor
) -> Endpoint[Any, Any]:
    info = method_info(method)
    codec: dict[str, Any] = {
        "request_serializer": info.input.SerializeToString,
        "response_deserializer": info.output.FromString,
    }
    path = f"/{service.full_name}/{method.name}"
    if method.server_streaming:
        return Endpoint.server_stream(info, _streaming(channel.unary_stream(path, **codec)))
    return Endpoint.unary(info, _unary(channel.unary_unary(path, **codec)))


def _unary(call: grpc.aio.UnaryUnaryMultiCallable[Any, Any]) -> Unary:
    async def forward(request: Message, ctx: RequestContext[Any, Any]) -> Any:
        try:
            return await call(request, metadata=call_metadata(ctx), timeout=_timeout(ctx))
        except grpc.aio.AioRpcError as error:
            raise connect_error(error) from None
        except Exception as exc:
            raise internal_error(exc) from None

    return forward


def _streaming(call: grpc.aio.UnaryStreamMultiCallable[Any, Any]) -> Streaming:
    async def forward(request: Message, ctx: RequestContext[Any, Any]) -> AsyncIterator[Any]:
        responses = call(request, metadata=call_metadata(ctx), timeout=_timeout(ctx))
        try:
            async for response in responses:
                yield response
        except grpc.aio.AioRpcError as error:
            raise connect_error(error) from None
        except Exception as exc:
            raise internal_error(exc) from None
        finally:
            responses.cancel()  # the browser went away: end the server's stream too

    return forward


def call_metadata(ctx: RequestContext[Any, Any]) -> tuple[tuple[str, str], ...]:
    """The request headers a gRPC call carries on as metadata (credentials, trace context)."""
    headers: Mapping[str, str] = ctx.request_headers()
    return tuple((name, headers[name]) for name in FORWARDED_HEADERS if name in headers)


def _timeout(ctx: RequestContext[Any, Any]) -> float | None:
    timeout_ms = ctx.timeout_ms()
    return None if timeout_ms is None else timeout_ms / 1000.0


def internal_error(exc: Exception) -> ConnectError:
    """A bug in the bridge: INTERNAL with an opaque reference, as the gRPC error guard does."""
    reference = uuid.uuid4().hex[:12]
    logger.error("viewer API call failed, reference %s", reference, exc_info=exc)
    return ConnectError(Code.INTERNAL, f"internal error (reference {reference})")


def connect_error(error: grpc.aio.AioRpcError) -> ConnectError:
    """The same status as a Connect error: code, message and ``google.rpc`` details."""
    code = _CODES.get(error.code()) or Code[error.code().name]
    details = packed_details(error.trailing_metadata())
    return ConnectError(code, error.details() or "", details)
