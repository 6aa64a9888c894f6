"""Node.js for the tests that drive graphmesh from another language.

:func:`example_node_modules` installs ``examples/node``'s locked dependencies (``npm ci``
from its ``package-lock.json``: @grpc/grpc-js, @grpc/proto-loader, nats, protobufjs) once
into a cache folder keyed by the lockfile's hash (``GRAPHMESH_NODE_CACHE``, default
``~/.cache/graphmesh/node``) and returns its ``node_modules``. Without ``node``/``npm`` or when
the install fails, the calling test fails saying what is missing; it is never skipped.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "node"
INSTALL_TIMEOUT_S = 300


def example_node_modules() -> Path:
    """``node_modules`` with the example's locked packages (see the module docstring)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("this test needs Node.js: install the 'nodejs' and 'npm' packages")
    lock = (EXAMPLE / "package-lock.json").read_bytes()
    default = Path.home() / ".cache" / "graphmesh" / "node"
    cache = (
        Path(os.environ.get("GRAPHMESH_NODE_CACHE", default))
        / hashlib.sha256(lock).hexdigest()[:16]
    )
    modules = cache / "node_modules"
    if not (cache / ".installed").exists():
        cache.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(EXAMPLE / name, cache / name)
        install = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--prefix", str(cache)],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
        )
        if install.returncode != 0:
            pytest.fail(f"npm ci of examples/node failed:\n{install.stderr[-2000:]}")
        (cache / ".installed").touch()
    return modules


def node_env(modules: Path) -> dict[str, str]:
    """The environment for ``node`` to find ``modules`` wherever the script lies."""
    return {**os.environ, "NODE_PATH": str(modules)}
