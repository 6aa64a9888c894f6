"""Wrapping the behaviour of ``grpc.aio`` method handlers, for server interceptors.

An interceptor that only needs to run code around each call (set a context variable,
translate exceptions) rewraps the handler's behaviour, so the code runs in the same task
as the servicer method, whatever the grpc version does with interceptor contexts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

UnaryBehaviour = Callable[[Any, Any], Awaitable[Any]]
StreamBehaviour = Callable[[Any, Any], AsyncIterator[Any]]


def wrap_handler(
    handler: Any,
    *,
    unary: Callable[[UnaryBehaviour], UnaryBehaviour],
    stream: Callable[[StreamBehaviour], StreamBehaviour],
) -> Any:
    """The same handler with its unary-request behaviour wrapped (client-streaming methods
    pass through unchanged: graphmesh has none)."""
    options = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **options)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream), **options)
    return handler


def replace_handler(handler: Any, *, unary: UnaryBehaviour, stream: StreamBehaviour) -> Any:
    """A handler of the same shape whose behaviour is replaced (e.g. by a refusal)."""
    return wrap_handler(handler, unary=lambda _: unary, stream=lambda _: stream)
