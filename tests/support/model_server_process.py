"""Real model server processes (``graphmesh serve model-server``) for the tests.

:func:`model_server_process` starts one on a free loopback port with the packaged embedding
model, waits until the model is loaded, and yields the process and its address.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

EMBEDDER = "hf:all-MiniLM-L6-v2"
CONFIG = f"""\
[[models]]
name = "{EMBEDDER}"
device = "cpu"
"""


@contextmanager
def model_server_process(
    directory: Path, *, env: Mapping[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A model server serving the packaged embedder; stopped (SIGTERM) on exit. ``env``:
    more environment (``OTEL_*``, say)."""
    config = directory / "model-server.toml"
    config.write_text(CONFIG, encoding="utf-8")
    command = [str(Path(sys.executable).parent / "graphmesh"), "serve", "model-server"]
    process = subprocess.Popen(
        [*command, "--config", str(config), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on" in line, line
        address = line.split("listening on ")[1].split()[0].rstrip(",")
        ready = process.stdout.readline()
        assert f"model {EMBEDDER} ready" in ready, ready
        yield process, address
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
