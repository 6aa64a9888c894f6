"""The servicer's guard: every exception a servicer method raises becomes a status
through the one error table (:func:`graphmesh.orchestrator.wire.errors.to_status`),
including those raised while the request is parsed or a response serialized.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from graphmesh.orchestrator.api.interceptors import (
    Codec,
    StreamBehaviour,
    UnaryBehaviour,
    wrap_handler_codec,
)
from graphmesh.orchestrator.wire.errors import status_of, to_status
from graphmesh.orchestrator.wire.validation import InvalidRequestError, violation

logger = logging.getLogger(__name__)


async def abort_with(context: Any, exc: Exception) -> None:
    try:
        status = to_status(exc)
    except Exception as failure:  # a bug in the table's own code: still no inside text
        logger.error("building the status of an error failed", exc_info=failure)
        status = status_of(grpc.StatusCode.INTERNAL, "internal error", [])
    await context.abort(status.code, status.details, status.trailing_metadata)


_OURS = "/graphmesh."


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Turns exceptions raised by servicer methods into statuses through the table,
    including those raised while the request is parsed (a message protobuf refuses is
    INVALID_ARGUMENT) and while responses are serialized (INTERNAL, never UNKNOWN)."""

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        # Ours only: the standard health and reflection services keep their own behaviour
        # (health's Watch writes to its context instead of yielding).
        if handler is None or not handler_call_details.method.startswith(_OURS):
            return handler
        return wrap_handler_codec(handler, unary=_guard_unary, stream=_guard_stream)


def _guard_unary(behaviour: UnaryBehaviour, decode: Codec, encode: Codec) -> UnaryBehaviour:
    async def guarded(raw: Any, context: Any) -> Any:
        try:
            return encode(await behaviour(_parse(decode, raw), context))
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort_with(context, exc)

    return guarded


def _guard_stream(behaviour: StreamBehaviour, decode: Codec, encode: Codec) -> StreamBehaviour:
    async def guarded(raw: Any, context: Any) -> AsyncIterator[Any]:
        try:
            async for response in behaviour(_parse(decode, raw), context):
                yield encode(response)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort_with(context, exc)

    return guarded


def _parse(decode: Codec, raw: Any) -> Any:
    try:
        return decode(raw)
    except DecodeError:
        kind = getattr(getattr(decode, "__self__", None), "__name__", "request")
        description = (
            f"not a valid {kind} message: a string is not valid UTF-8, "
            "or it is nested more than 100 levels deep, or it is truncated"
        )
        raise InvalidRequestError([violation("request", description, "BAD_MESSAGE")]) from None
