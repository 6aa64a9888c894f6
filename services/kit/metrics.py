"""Prometheus ``/metrics`` for every graphmesh service process.

``async with metrics_endpoint("0.0.0.0:9464") as address:`` serves the process's default
registry (``prometheus_client``'s own process and Python collectors included) on a thread of
its own until the block ends; port 0 picks a free port, returned as ``host:port``. ``None``
or ``""`` serves nothing. Metric names start with ``graphmesh_`` and use base units
(seconds, bytes); run ids are never labels.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import disable_created_metrics, start_http_server


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 hosts in brackets) as ``(host, port)``; a clear error otherwise."""
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"metrics address {address!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


@asynccontextmanager
async def metrics_endpoint(address: str | None) -> AsyncIterator[str | None]:
    """Serve ``/metrics`` on ``address`` for the block; yields the bound ``host:port``."""
    if not address:
        yield None
        return
    host, port = split_address(address)
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created gauges
    server, thread = start_http_server(port, addr=host)
    try:
        yield f"{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
