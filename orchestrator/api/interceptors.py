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
Codec = Callable[[Any], Any]


def _unchanged(data: Any) -> Any:
    return data


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


def wrap_handler_codec(
    handler: Any,
    *,
    unary: Callable[[UnaryBehaviour, Codec, Codec], UnaryBehaviour],
    stream: Callable[[StreamBehaviour, Codec, Codec], StreamBehaviour],
) -> Any:
    """Like :func:`wrap_handler`, but the wrapper also takes over the messages' codec:
    it gets the handler's request deserializer and response serializer, and grpc hands
    it raw bytes in and takes raw bytes out. So parsing a request and serializing a
    response happen inside the wrapper, where their failures can be handled."""
    decode = handler.request_deserializer or _unchanged
    encode = handler.response_serializer or _unchanged
    options = {"request_deserializer": _unchanged, "response_serializer": _unchanged}
    if handler.unary_unary is not None:
        behaviour = unary(handler.unary_unary, decode, encode)
        return grpc.unary_unary_rpc_method_handler(behaviour, **options)
    if handler.unary_stream is not None:
        streaming = stream(handler.unary_stream, decode, encode)
        return grpc.unary_stream_rpc_method_handler(streaming, **options)
    return handler
