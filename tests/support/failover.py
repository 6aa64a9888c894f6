"""A TCP front for several servers, as a load balancer in front of replicas would be.

:class:`FailoverProxy` sends each new connection to the first of its targets that accepts
one, so a client of the proxy's address reaches the next replica once the first has
stopped listening (as a gRPC server does the moment it begins to stop)::

    async with FailoverProxy(["127.0.0.1:5001"]) as proxy:
        proxy.targets.append("127.0.0.1:5002")
        ...  # clients dial proxy.address
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self


class FailoverProxy:
    """Forwards connections on a loopback port to the first target that answers."""

    def __init__(self, targets: list[str]) -> None:
        self.targets = targets
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        for target in list(self.targets):
            host, _, port = target.rpartition(":")
            try:
                server_in, server_out = await asyncio.open_connection(host, int(port))
            except OSError:
                continue
            break
        else:
            client_out.transport.abort()
            return
        pipes = [
            asyncio.create_task(_pipe(client_in, server_out)),
            asyncio.create_task(_pipe(server_in, client_out)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._pipes.difference_update(pipes)
            for writer in (client_out, server_out):
                writer.transport.abort()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    sink.close()
