"""``graphmesh dev``: the mesh comes up on loopback, serves a run, and goes away on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from graphmesh import Client, TaskGraphBuilder
from graphmesh.dev import free_port

BANNER_TIMEOUT_S = 240.0


class DevProcess:
    def __init__(self, process: subprocess.Popen[str], log: Path, port: int) -> None:
        self.process = process
        self.log = log
        self.port = port

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for_banner(self) -> str:
        deadline = time.monotonic() + BANNER_TIMEOUT_S
        while "Ctrl-C stops everything" not in self.output():
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.2)
        return self.output()

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevProcess]:
    log = tmp_path / "dev.out"
    port, viewer = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHMESH_")}
    env.pop("OPENAI_API_KEY", None)
    env.pop("ANTHROPIC_API_KEY", None)
    env["COLUMNS"] = "200"
    command = [sys.executable, "-m", "graphmesh.cli", "dev", "--port", str(port)]
    command += ["--viewer-port", str(viewer), "--state-dir", str(tmp_path / "state")]
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, *DEV_ARGS],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
    handle = DevProcess(process, log, port)
    try:
        yield handle
    finally:
        if process.poll() is None:
            for child in handle.children():
                child.kill()
            process.kill()
        process.wait()


DEV_ARGS: list[str] = ["--no-models"]


async def test_dev_serves_runs_and_stops_everything_on_ctrl_c(dev: DevProcess) -> None:
    banner = dev.wait_for_banner()
    port = dev.port
    assert re.search(rf"orchestrator\s+│\s+127\.0\.0\.1:{port}", banner), banner
    assert "store sqlite" in banner
    children = dev.children()
    assert any("orchestrator" in " ".join(c.cmdline()) for c in children)

    graph = TaskGraphBuilder().javascript(code="return 6 * 7", id="answer")
    async with Client(f"127.0.0.1:{port}") as client:
        run = await client.submit(graph)
        async for _event in client.watch(run.run_id):
            pass
        assert await client.output(run.run_id, "answer") == {"output": 42}

    dev.process.send_signal(signal.SIGINT)
    assert dev.process.wait(timeout=60) == 0, dev.output()
    assert "stopping" in dev.output()
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [c.cmdline() for c in alive]
