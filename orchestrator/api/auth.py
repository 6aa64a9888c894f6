"""Bearer-token authentication: ``authorization: Bearer <token>`` metadata names a tenant.

The interceptor resolves the token against a ``{token: tenant}`` map and runs the servicer
method with the tenant in a context variable (:func:`current_tenant`). A missing or unknown
token is UNAUTHENTICATED. Health checks and server reflection stay open (probes and tools
carry no token; the schema is public). With auth disabled every caller is ``default``.
Tokens never appear in logs or error messages.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from typing import Any

import grpc

from graphmesh.orchestrator.api.interceptors import (
    StreamBehaviour,
    UnaryBehaviour,
    replace_handler,
    wrap_handler,
)

DEFAULT_TENANT = "default"
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
_tenant: ContextVar[str] = ContextVar("graphmesh_tenant")


def current_tenant() -> str:
    """The calling tenant; only set while an authenticated call runs."""
    return _tenant.get()


class BearerAuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """``tokens`` maps token to tenant; ``None`` disables auth (local development)."""

    def __init__(self, tokens: Mapping[str, str] | None) -> None:
        self._tokens = None if tokens is None else dict(tokens)

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        tenant = self._tenant_of(handler_call_details.invocation_metadata)
        if tenant is None:
            return replace_handler(handler, unary=_refuse, stream=_refuse_stream)
        return wrap_handler(
            handler,
            unary=lambda behaviour: _as_tenant(behaviour, tenant),
            stream=lambda behaviour: _as_tenant_stream(behaviour, tenant),
        )

    def _tenant_of(self, metadata: Any) -> str | None:
        if self._tokens is None:
            return DEFAULT_TENANT
        token = _bearer_token(metadata)
        if token is None:
            return None
        found = None
        for known, tenant in self._tokens.items():
            # Compare against every token, in constant time: no timing hint of a near miss.
            if hmac.compare_digest(known.encode(), token.encode()):
                found = tenant
        return found


def _bearer_token(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def _as_tenant(behaviour: UnaryBehaviour, tenant: str) -> UnaryBehaviour:
    async def call(request: Any, context: Any) -> Any:
        reset = _tenant.set(tenant)
        try:
            return await behaviour(request, context)
        finally:
            _tenant.reset(reset)

    return call


def _as_tenant_stream(behaviour: StreamBehaviour, tenant: str) -> StreamBehaviour:
    async def call(request: Any, context: Any) -> AsyncIterator[Any]:
        # No reset: a generator may be closed from another context, and every call runs in
        # a task of its own whose context copy ends with it.
        _tenant.set(tenant)
        async for response in behaviour(request, context):
            yield response

    return call


_REFUSAL = "missing or unknown bearer token (metadata 'authorization: Bearer <token>')"


async def _refuse(request: Any, context: Any) -> Any:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, _REFUSAL)


async def _refuse_stream(request: Any, context: Any) -> AsyncIterator[Any]:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, _REFUSAL)
    yield  # an async generator, like the behaviour it stands in for
