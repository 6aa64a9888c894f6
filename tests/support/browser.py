"""Headless Debian chromium driven by Playwright, and a real orchestrator process serving
the run viewer, for the browser tests. Screenshots go to ``test-output/viewer/``.

Playwright's own browser download cannot work here; ``make test`` installs Debian's
``chromium`` (``tools/chromium.sh``) when it is missing, and these tests fail, naming that
command, when it is not there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, sync_playwright

TESTS = Path(__file__).resolve().parent.parent
OUTPUT = TESTS.parent / "test-output" / "viewer"
TOKENS = {"token-a": "a", "token-b": "b"}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERVICE = "graphmesh.v1.OrchestratorService"


def chromium_path() -> str:
    found = os.environ.get("GRAPHMESH_CHROMIUM") or shutil.which("chromium")
    if not found:
        raise RuntimeError("chromium is not installed: run `make chromium` (Debian's package)")
    return found


@contextmanager
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass(frozen=True, kw_only=True)
class Addresses:
    url: str  # the viewer's page
    target: str  # the gRPC server


@contextmanager
def viewer_process(workdir: Path, env: dict[str, str] | None = None) -> Iterator[Addresses]:
    """``graphmesh serve orchestrator --store sqlite`` with the viewer on a free port and
    the ``RunTest`` task types; yields its addresses. Stopped with SIGTERM."""
    command = [str(Path(sys.executable).parent / "graphmesh"), "serve", "orchestrator"]
    environment = {
        **os.environ,
        "GRAPHMESH_DATABASE_URL": f"sqlite:///{workdir / 'runs.sqlite'}",
        "GRAPHMESH_TASK_MODULES": "support.run_tasks",
        "GRAPHMESH_TOKENS": json.dumps(TOKENS),
        "GRAPHMESH_GRACE_PERIOD": "1",
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    arguments = ["--store", "sqlite", "--listen", "127.0.0.1:0", "--viewer-listen", "127.0.0.1:0"]
    process = subprocess.Popen(
        [*command, *arguments], env=environment, stdout=subprocess.PIPE, text=True, cwd=workdir
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]
        assert "listening on" in lines[0] and "viewer on" in lines[1], lines
        target = lines[0].split("listening on ")[1].split()[0]
        yield Addresses(url=lines[1].split("viewer on ")[1].strip(), target=target)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def call(url: str, method: str, body: dict[str, Any], token: str) -> dict[str, Any]:
    """One Connect call with a JSON body, as a script outside the page would make it."""
    request = urllib.request.Request(
        f"{url}{SERVICE}/{method}",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def screenshot_path(name: str) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT / f"{name}.png"
