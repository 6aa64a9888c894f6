"""A real ``graphmesh serve orchestrator`` process for the JavaScript sandbox tests.

Two tenants: ``token-a`` is tenant ``a``, ``token-b`` tenant ``b``. The server runs on
any store (memory, SQLite in a temporary directory, Postgres on a given DSN) with small
JavaScript limits; :func:`sandboxes` lists the sandbox processes it runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from graphmesh.client import Client
from graphmesh.orchestrator.runs.records import RunRecord

TOKENS = {"token-a": "a", "token-b": "b"}
LIMITS = {
    "GRAPHMESH_JS_WORKERS": "2",
    "GRAPHMESH_JS_MAX_TIMEOUT_S": "30",
    "GRAPHMESH_JS_MAX_MEMORY": str(128 * 1024 * 1024),
}


@dataclass(frozen=True, kw_only=True)
class Served:
    process: subprocess.Popen[str]
    address: str

    def alive(self) -> bool:
        return self.process.poll() is None


@contextmanager
def serve(
    store: str,
    workdir: Path,
    *,
    dsn: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[Served]:
    """A started orchestrator process on ``store``; SIGTERM on exit."""
    environment = {**os.environ, "GRAPHMESH_TOKENS": json.dumps(TOKENS), **LIMITS}
    if store == "sqlite":
        environment["GRAPHMESH_DATABASE_URL"] = f"sqlite:///{workdir / 'runs.sqlite'}"
    elif store == "postgres":
        assert dsn is not None, "a Postgres server needs its DSN"
        environment["GRAPHMESH_DATABASE_URL"] = dsn
    environment.update(env or {})
    command = [str(Path(sys.executable).parent / "graphmesh"), "serve", "orchestrator"]
    process = subprocess.Popen(
        [*command, "--store", store, "--listen", "127.0.0.1:0"],
        env=environment,
        cwd=workdir,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on" in line, line
        yield Served(process=process, address=line.split("listening on ")[1].split()[0])
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def js_task(task_id: str, code: str, input: Any = None, **config: Any) -> dict[str, Any]:
    """Graph JSON of one JavaScriptTask."""
    return {
        "id": task_id,
        "type": "JavaScriptTask",
        "defaults": {"code": code, "input": input},
        "config": config,
    }


def js_graph(code: str, input: Any = None, **config: Any) -> dict[str, Any]:
    """Graph JSON of one JavaScriptTask ``js``."""
    return {"tasks": [js_task("js", code, input, **config)], "dataflows": []}


@asynccontextmanager
async def client(served: Served, tenant: str = "a") -> AsyncIterator[Client]:
    async with Client(served.address, token=f"token-{tenant}", stream_timeout=120) as opened:
        yield opened


async def run_js(served: Served, graph: dict[str, Any], tenant: str = "a") -> RunRecord:
    """Submit ``graph`` as ``tenant`` and wait for the run to end."""
    async with client(served, tenant) as opened:
        run = await opened.submit(graph)
        return await opened.wait(run.run_id)


async def healthy(served: Served) -> bool:
    """The server is alive and its health service says SERVING."""
    if not served.alive():
        return False
    async with grpc.aio.insecure_channel(served.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def sandboxes(served: Served) -> set[int]:
    """The pids of the server's live sandbox worker processes."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = next(line for line in status.splitlines() if line.startswith("PPid:"))
        zombie = "State:\tZ" in status
        if int(parent.split()[1]) == served.process.pid and b"worker.py" in cmdline:
            if not zombie:
                found.add(int(entry.name))
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time process ``pid`` has used (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def until(condition: Callable[[], bool], within: float = 60) -> None:
    """Wait until ``condition()`` is true, at most ``within`` seconds (then fail)."""
    async with asyncio.timeout(within):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)
