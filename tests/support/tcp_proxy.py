"""A TCP proxy in front of a real Postgres that cuts one connection at a chosen moment.

Tests of a network failure in the middle of a conversation (a commit whose answer never
arrives) put it between the code under test and the real server::

    async with CuttingProxy(dsn) as proxy:
        cut = proxy.cut_when(to_client=b"COMMIT\\x00")
        ...  # the code under test connects with proxy.dsn
        await cut.wait()

Bytes pass unchanged both ways. An armed cut drops the first chunk going its way that
holds its marker and aborts that connection on both sides, as a broken network would:
``to_client`` after the server acted on the request (it sent the answer), ``to_server``
before the server saw it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

from psycopg.conninfo import conninfo_to_dict, make_conninfo

Direction = Literal["to_server", "to_client"]


@dataclass
class _Cut:
    direction: Direction
    marker: bytes
    done: asyncio.Event


class CuttingProxy:
    """Forwards connections on a local port to the server of ``dsn`` (see the module docs)."""

    def __init__(self, dsn: str) -> None:
        params = conninfo_to_dict(dsn)
        self._upstream = (str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
        self._dsn = dsn
        self._cut: _Cut | None = None
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def dsn(self) -> str:
        """``dsn`` with the proxy as its server."""
        return make_conninfo(self._dsn, host="127.0.0.1", port=self.port)

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
        await self.close()

    async def close(self) -> None:
        """Stop listening and abort every connection, as a server gone down would."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def cut_when(self, *, to_server: bytes = b"", to_client: bytes = b"") -> asyncio.Event:
        """Arm one cut (one marker, one direction); the event is set once it happened."""
        if bool(to_server) == bool(to_client):
            raise ValueError("give a marker for exactly one direction")
        direction: Direction = "to_server" if to_server else "to_client"
        self._cut = _Cut(direction, to_server or to_client, asyncio.Event())
        return self._cut.done

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        host, port = self._upstream
        if host.startswith("/"):
            server_in, server_out = await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        else:
            server_in, server_out = await asyncio.open_connection(host, port)
        writers = (client_out, server_out)
        pipes = [
            asyncio.create_task(self._pipe(client_in, server_out, "to_server", writers)),
            asyncio.create_task(self._pipe(server_in, client_out, "to_client", writers)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._pipes.difference_update(pipes)
            for writer in writers:
                writer.transport.abort()

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        direction: Direction,
        writers: tuple[asyncio.StreamWriter, ...],
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await source.read(65536):
                cut = self._cut
                if cut is not None and cut.direction == direction and cut.marker in chunk:
                    self._cut = None
                    for writer in writers:
                        writer.transport.abort()
                    cut.done.set()
                    return
                sink.write(chunk)
                await sink.drain()
        sink.close()
