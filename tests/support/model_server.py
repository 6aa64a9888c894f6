"""A real ``graphmesh serve model-server`` process on a free loopback port.

``with model_server_process(tmp_path, config) as server:`` (``server.process``,
``server.address``, ``server.metrics`` when ``metrics_listen`` is set) writes ``config``
(TOML text, without ``listen``) to a file, starts the server, waits until every configured
model reports ready (or failed), and stops it with SIGTERM on exit. The routing helper's
client tests can start the same server the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MINILM = "hf:all-MiniLM-L6-v2"
SMOLLM2 = "hf:SmolLM2-135M-Instruct"
# The packaged embedder alone, on the CPU: what most tests that need a model server serve.
EMBEDDER_CONFIG = f"""\
[[models]]
name = "{MINILM}"
device = "cpu"
"""


@dataclass(frozen=True)
class ServerProcess:
    process: subprocess.Popen[str]
    address: str
    metrics: str | None


@contextmanager
def model_server_process(
    directory: Path,
    config: str = EMBEDDER_CONFIG,
    *,
    ready_models: int = 1,
    timeout: float = 240.0,
    env: Mapping[str, str] | None = None,
) -> Iterator[ServerProcess]:
    """The started process and its ``host:port``; ``ready_models`` lines of
    ``model ... ready``/``failed`` are awaited before yielding; ``env``: more environment
    (``OTEL_*``, say)."""
    path = directory / "model-server.toml"
    path.write_text(config, encoding="utf-8")
    # ``python -m graphmesh.cli``: works where the console script is not beside the
    # interpreter too (wheels installed with ``pip --target``, as bench/embed.py on a GPU host).
    command = [
        sys.executable,
        "-m",
        "graphmesh.cli",
        "serve",
        "model-server",
        "--config",
        str(path),
        "--listen",
        "127.0.0.1:0",
    ]
    environment = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on" in line, line
        address = line.split("listening on ")[1].split()[0].rstrip(",")
        metrics = line.split("metrics on ")[1].split()[0] if "metrics on " in line else None
        deadline = time.monotonic() + timeout
        for _ in range(ready_models):
            line = process.stdout.readline()
            assert line.startswith("model ") and time.monotonic() < deadline, line
        yield ServerProcess(process, address, metrics)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
