"""The viewer's ASGI application: the page's assets and the Connect API on one origin.

Every response carries the security headers (a Content-Security-Policy without inline
scripts, no framing, no sniffing, no referrer); no CORS headers are ever sent, so only
pages of this origin can call the API. When the viewer listens on a loopback address,
requests must name a loopback host, so a web page cannot reach it through DNS rebinding.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import grpc
from connectrpc.server import ConnectASGIApplication
from starlette.staticfiles import StaticFiles

from graphmesh.orchestrator.api.web import codecs
from graphmesh.orchestrator.api.web.bridge import SERVICE, service_endpoints

# ASGI's types, loosely: each library here spells them its own way.
Scope = Any
Message = MutableMapping[str, Any]
Receive = Any
Send = Any

API_PREFIX = f"/{SERVICE.full_name}/"
CONFIG_PATH = "/viewer-config.json"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


class OrchestratorConnectApp(ConnectASGIApplication[grpc.aio.Channel]):
    """OrchestratorService over Connect, every method forwarded on ``channel``."""

    def __init__(self, channel: grpc.aio.Channel, *, read_max_bytes: int) -> None:
        codecs.install()
        super().__init__(
            service=channel, endpoints=service_endpoints, read_max_bytes=read_max_bytes
        )

    @property
    def path(self) -> str:
        return f"/{SERVICE.full_name}"


class ViewerApp:
    """Routes the API, the page's config and its assets; adds the security headers."""

    def __init__(
        self,
        api: OrchestratorConnectApp,
        assets: Path,
        *,
        trace_url_template: str | None,
        loopback_only: bool,
    ) -> None:
        self._api = api
        self._assets = StaticFiles(directory=assets, html=True)
        self._config = json.dumps({"traceUrlTemplate": trace_url_template}).encode()
        self._loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        send = _with_headers(send, scope["path"])
        if self._loopback_only and _host(scope) not in LOOPBACK_HOSTS:
            await _plain(send, 421, b"this viewer answers only to localhost names\n")
        elif scope["path"].startswith(API_PREFIX):
            await self._api(scope, receive, send)
        elif scope["path"] == CONFIG_PATH:
            await _respond(send, 200, b"application/json", self._config)
        else:
            await self._assets(scope, receive, send)


def _host(scope: Scope) -> str:
    """The request's Host header without its port (an IPv6 literal keeps its brackets)."""
    host = next((value for key, value in scope["headers"] if key == b"host"), b"").decode("latin-1")
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0].lower()


def _with_headers(send: Send, path: str) -> Send:
    caching = (
        b"no-cache" if not path.startswith("/assets/") else b"public, max-age=31536000, immutable"
    )

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"server"]
            headers.extend(SECURITY_HEADERS)
            if not path.startswith(API_PREFIX):
                headers.append((b"cache-control", caching))
            message = {**message, "headers": headers}
        await send(message)

    return sending


async def _respond(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _plain(send: Send, status: int, body: bytes) -> None:
    await _respond(send, status, b"text/plain; charset=utf-8", body)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
