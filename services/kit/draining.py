"""What a graceful stop does besides waiting for calls: end open streams, drain workers.

A server-streaming call (WatchRun, a health Watch) may stay open for hours. A stop that
waits for the calls in flight would wait its whole grace period for such streams, and
then cut them off anyway. :class:`OpenStreams`, an interceptor every :class:`GrpcServer`
puts first, ends each open stream at once with UNAVAILABLE (:data:`SHUTTING_DOWN`)
instead: a client calls again, reaching another replica (``graphmesh.Client.wait``
resumes a watch after the last event it saw).

A :class:`Drainable` is a part of a service that takes work besides its calls, such as a
queue worker: at shutdown it stops taking work at once, then gets part of the grace
period to finish what it has before it hands the rest back.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import grpc

SHUTTING_DOWN = "the server is shutting down; call again to reach another replica"
StreamBehaviour = Callable[[Any, Any], AsyncIterator[Any]]


@runtime_checkable
class Drainable(Protocol):
    """A part of a service that takes work besides its calls (see the module docs)."""

    def stop_taking_work(self) -> None:
        """Take no more work, from now on."""
        ...

    async def drain(self, finish_s: float) -> None:
        """Give the work in hand ``finish_s`` seconds to finish, then hand back the rest."""
        ...


@dataclass(eq=False)
class _Stream:
    task: asyncio.Task[Any] | None
    waiting: bool = False  # for its next response (not sending one): safe to cancel
    closed: bool = False


class OpenStreams(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Keeps the open server-streaming calls, so :meth:`close_all` can end them."""

    def __init__(self) -> None:
        self._open: set[_Stream] = set()
        self._closing = False

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_stream is None:
            return handler
        return grpc.unary_stream_rpc_method_handler(
            self._closable(handler.unary_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def close_all(self) -> None:
        """End every open stream, and every one opened later, with UNAVAILABLE: one
        waiting for its next response at once (its task is cancelled there), one sending
        a response once it is sent."""
        self._closing = True
        for stream in list(self._open):
            stream.closed = True
            if stream.waiting and stream.task is not None:
                stream.task.cancel()

    def _closable(self, behaviour: StreamBehaviour) -> StreamBehaviour:
        async def closable(request: Any, context: Any) -> AsyncIterator[Any]:
            stream = _Stream(task=asyncio.current_task(), closed=self._closing)
            self._open.add(stream)
            try:
                produced = behaviour(request, context)
                if inspect.isawaitable(produced):  # a handler that writes with context.write
                    ended = await _until_closed(stream, produced)
                else:
                    responses = aiter(produced)
                    try:
                        while not stream.closed:
                            response = await _until_closed(stream, anext(responses))
                            if response is _CLOSED:
                                break
                            yield response
                    except StopAsyncIteration:
                        return
                    finally:
                        await _close(responses)
                    ended = _CLOSED
            finally:
                self._open.discard(stream)
            if ended is _CLOSED or stream.closed:
                await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)

        return closable


_CLOSED = object()  # what a step of a stream that was closed meanwhile gives


async def _until_closed(stream: _Stream, step: Awaitable[Any]) -> Any:
    """The result of ``step``, or :data:`_CLOSED` once the stream was closed while it
    waited (its task cancelled there by :meth:`OpenStreams.close_all`)."""
    stream.waiting = True
    try:
        return await step
    except asyncio.CancelledError:
        if not stream.closed or stream.task is None:
            raise  # not ours: the client went away, say
        stream.task.uncancel()
        return _CLOSED
    finally:
        stream.waiting = False


async def _close(responses: AsyncIterator[Any]) -> None:
    """Close a response generator left suspended (its ``finally`` blocks run)."""
    aclose = getattr(responses, "aclose", None)
    if aclose is not None:
        await aclose()
