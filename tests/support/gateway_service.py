"""``graphmesh serve gateway`` as a real process for the tests: started on free loopback
ports (gRPC and ``/metrics``), its log in a file, stopped with SIGTERM.

::

    async with gateway_process(config, log=tmp_path / "g0.log", env=extra) as gateway:
        stub = model_pb2_grpc.ModelServiceStub(grpc.aio.insecure_channel(gateway.target))
        ...
        text = gateway.scrape()   # the Prometheus exposition
    gateway.returncode            # after SIGTERM: 0 when it drained cleanly
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

LISTENING = re.compile(r"listening on (\S+) .*metrics on (\S+?)\)")
START_TIMEOUT = 60.0


@dataclass(kw_only=True)
class GatewayProcess:
    process: asyncio.subprocess.Process
    target: str
    metrics: str
    log: Path
    returncode: int | None = None

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=5) as answer:
            text: str = answer.read().decode("utf-8")
            return text

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        self.returncode = await asyncio.wait_for(self.process.wait(), 30)
        return self.returncode


@asynccontextmanager
async def gateway_process(
    config: Path, *, log: Path, env: Mapping[str, str]
) -> AsyncIterator[GatewayProcess]:
    """A gateway serving ``config`` until the block ends (then SIGTERM, and a kill if it
    does not stop)."""
    command = [sys.executable, "-m", "graphmesh.cli", "serve", "gateway", "--config", str(config)]
    command += ["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdout=asyncio.subprocess.PIPE,
            stderr=sink,
            env={**os.environ, **env},
        )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        found = LISTENING.search(line.decode())
        if found is None:
            await process.wait()
            logged = await asyncio.to_thread(log.read_text)
            raise AssertionError(f"the gateway did not start: {logged[-2000:]}")
        gateway = GatewayProcess(
            process=process, target=found.group(1), metrics=found.group(2), log=log
        )
        yield gateway
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
