"""The edge check of every OrchestratorService request, before its servicer method runs.

A server interceptor, so no RPC can skip it: the request size against the caller's
``request_bytes`` quota, then every field of the message against the
:class:`~graphmesh.orchestrator.wire.validation.RequestLimits` (see
:func:`~graphmesh.orchestrator.wire.validation.check_request`). What it raises is turned
into a status by the :class:`~graphmesh.orchestrator.api.errors.ErrorInterceptor` that
wraps it; the caller's tenant is already known (the auth interceptor wraps both).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from graphmesh.orchestrator.api.auth import current_tenant
from graphmesh.orchestrator.api.interceptors import StreamBehaviour, UnaryBehaviour, wrap_handler
from graphmesh.orchestrator.runs.quotas import QuotaPolicy
from graphmesh.orchestrator.wire.validation import RequestLimits, check_request


class EdgeInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Checks the requests of the methods under ``prefix`` (one service)."""

    def __init__(self, prefix: str, limits: RequestLimits, quotas: QuotaPolicy) -> None:
        self._prefix = prefix
        self._limits = limits
        self._quotas = quotas

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(self._prefix):
            return handler
        return wrap_handler(handler, unary=self._unary, stream=self._stream)

    def check(self, request: Any) -> None:
        self._quotas.check_request(current_tenant(), request.ByteSize())
        check_request(request, self._limits)

    def _unary(self, behaviour: UnaryBehaviour) -> UnaryBehaviour:
        async def checked(request: Any, context: Any) -> Any:
            self.check(request)
            return await behaviour(request, context)

        return checked

    def _stream(self, behaviour: StreamBehaviour) -> StreamBehaviour:
        async def checked(request: Any, context: Any) -> AsyncIterator[Any]:
            self.check(request)
            async for response in behaviour(request, context):
                yield response

        return checked
