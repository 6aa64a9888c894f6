"""The viewer's HTTP server (Hypercorn, in the orchestrator's event loop).

``async with ViewerServer(listen=..., grpc_target=...) as viewer`` binds ``listen``
(port 0 picks a free port, see :attr:`ViewerServer.url`), serves the page and the Connect
API until the block ends, and forwards API calls to the gRPC server at ``grpc_target``
(the orchestrator's private Unix socket). Leaving the block stops taking connections and
gives open ones a moment to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import shutil
import socket
import tempfile
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self, cast

import grpc
from hypercorn.asyncio import serve
from hypercorn.config import Config

from graphmesh.orchestrator.api.web.app import LOOPBACK_HOSTS, OrchestratorConnectApp, ViewerApp

logger = logging.getLogger(__name__)
# JSON bodies are larger than the protobuf the gRPC server checks against the tenant's
# request quota; this bounds only what is read before that check.
JSON_OVERHEAD = 4
STOP_GRACE_S = 1.0


class ViewerServer:
    """The page and its API on ``listen``; calls go to the gRPC server at ``grpc_target``."""

    def __init__(
        self,
        *,
        listen: str,
        grpc_target: str,
        request_bytes: int,
        trace_url_template: str | None = None,
    ) -> None:
        self.listen = listen
        self.grpc_target = grpc_target
        self.request_bytes = request_bytes
        self.trace_url_template = trace_url_template
        self.port = 0
        self._stack = contextlib.AsyncExitStack()
        self._stop = asyncio.Event()

    @property
    def url(self) -> str:
        """The page's address, as a browser on this host opens it."""
        host = self.listen.rpartition(":")[0] or "127.0.0.1"
        host = "127.0.0.1" if host in ("0.0.0.0", "[::]", "::") else host
        return f"http://{host}:{self.port}/"

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            channel = grpc.aio.insecure_channel(
                self.grpc_target, options=[("grpc.max_receive_message_length", -1)]
            )
            stack.push_async_callback(channel.close, None)
            assets = stack.enter_context(
                importlib.resources.as_file(
                    importlib.resources.files("graphmesh.orchestrator.api.web") / "static"
                )
            )
            app = ViewerApp(
                OrchestratorConnectApp(channel, read_max_bytes=self.request_bytes * JSON_OVERHEAD),
                assets,
                trace_url_template=self.trace_url_template,
                loopback_only=self._host() in LOOPBACK_HOSTS,
            )
            fd = self._bind()
            serving = asyncio.create_task(
                serve(cast(Any, app), self._config(fd), shutdown_trigger=self._stop.wait)
            )
            stack.push_async_callback(self._finish, serving)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    def _host(self) -> str:
        host = self.listen.rpartition(":")[0]
        return host.lower() if host else "0.0.0.0"

    def _bind(self) -> int:
        """A listening socket's descriptor, handed over to Hypercorn (which closes it)."""
        host, _, port = self.listen.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, int(port)))
            sock.listen(128)
        except (OSError, ValueError) as exc:
            sock.close()
            raise OSError(f"the viewer cannot listen on {self.listen}: {exc}") from None
        self.port = sock.getsockname()[1]
        return sock.detach()

    def _config(self, fd: int) -> Config:
        config = Config()
        config.bind = [f"fd://{fd}"]
        config.accesslog = None
        config.errorlog = logger
        config.graceful_timeout = STOP_GRACE_S
        config.include_server_header = False
        return config

    async def _finish(self, serving: asyncio.Task[None]) -> None:
        self._stop.set()
        await serving


@contextlib.contextmanager
def private_socket() -> Iterator[str]:
    """A gRPC target on a Unix socket in a new directory only this user can enter (removed
    afterwards): the viewer's way into this process's gRPC server, whatever TLS the
    public port requires."""
    folder = tempfile.mkdtemp(prefix="graphmesh-viewer-")
    try:
        yield f"unix:{folder}/grpc.sock"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
