"""The wheel installs everything under ``graphmesh.*`` and imports without the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What only the service extras bring: database and NATS drivers, model runtimes, provider
# SDKs, the services' gRPC health and reflection, the viewer's web stack.
EXTRA_MODULES = (
    "psycopg",
    "psycopg_pool",
    "nats",
    "torch",
    "transformers",
    "tritonclient",
    "openai",
    "anthropic",
    "grpc_health",
    "grpc_reflection",
    "connectrpc",
    "hypercorn",
    "starlette",
    "orjson",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("graphmesh-*.whl")
    return built


def test_wheel_has_one_namespace_with_sql_and_stubs(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.startswith("graphmesh-")}
    assert top_level == {"graphmesh"}
    for expected in (
        "graphmesh/orchestrator/runner/runner.py",
        "graphmesh/model_server/registry.py",
        "graphmesh/services/__init__.py",
        "graphmesh/v1/orchestrator_pb2.py",
        "graphmesh/v1/orchestrator_pb2.pyi",
        "graphmesh/orchestrator/database/sql/postgres/0001_storage.sql",
        "graphmesh/limits/sql/postgres/0001_limiters.sql",
        "graphmesh/limits/sql/sqlite/queries.sql",
        "graphmesh/orchestrator/py.typed",
    ):
        assert expected in names


def test_installed_wheel_imports_away_from_the_checkout(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    probe = (
        "import graphmesh, graphmesh.orchestrator.catalog, graphmesh.orchestrator.database.sql;"
        "from graphmesh.orchestrator.database.migrations import load_migrations;"
        "print(graphmesh.__file__); print(len(load_migrations('sqlite')) > 0)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    location, migrations = done.stdout.split()
    assert Path(location).is_relative_to(target)
    assert migrations == "True"


@pytest.mark.slow
def test_the_core_install_runs_graphs_embedded_without_any_service_extra(
    wheel: Path, tmp_path: Path
) -> None:
    """``pip install graphmesh`` alone (no extras: no psycopg, torch, grpc health, SDKs)
    imports without loading any of them, shows its help, validates graphs (AI tasks
    included), lists its catalog and runs a graph of non-AI tasks embedded."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    for extra in EXTRA_MODULES:
        missing = subprocess.run([str(python), "-c", f"import {extra}"], capture_output=True)
        assert missing.returncode != 0, f"the core install must not bring {extra}"
    probe = (
        "import sys, graphmesh, graphmesh.client, graphmesh.orchestrator.wire.convert;"
        f"print(sorted(m for m in {EXTRA_MODULES!r} if m in sys.modules))"
    )
    imported = subprocess.run(
        [str(python), "-c", probe], cwd=tmp_path, capture_output=True, text=True
    )
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert imported.stdout.strip() == "[]"
    graph = tmp_path / "graph.json"
    graph.write_text((ROOT / "examples" / "node" / "graph.json").read_text())
    graphmesh = venv / "bin" / "graphmesh"
    done = subprocess.run(
        [str(graphmesh), "run", str(graph), "--json", "--state-dir", str(tmp_path / "state")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"status": "COMPLETED"' in done.stdout
    shown = subprocess.run([str(graphmesh), "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "validate" in shown.stdout, shown.stderr[-2000:]
    pipeline = ROOT / "examples" / "seed_pipeline.json"
    checked = subprocess.run(
        [str(graphmesh), "validate", str(pipeline)], cwd=tmp_path, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert "valid (8 tasks" in checked.stdout
    listed = subprocess.run([str(graphmesh), "tasks", "--json"], capture_output=True, text=True)
    assert listed.returncode == 0 and "JavaScriptTask" in listed.stdout


def test_wheel_carries_the_run_viewers_built_page(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    static = ROOT / "orchestrator" / "api" / "web" / "static"
    built = [path.relative_to(static).as_posix() for path in static.rglob("*") if path.is_file()]
    assert "index.html" in built and any(name.startswith("assets/") for name in built)
    for name in built:
        assert f"graphmesh/orchestrator/api/web/static/{name}" in names
