"""Every example and every README snippet runs, as a new user would run it.

Each test works in a fresh copy of ``examples/`` inside a temporary directory, so relative
paths in the graphs resolve there and the state directory (cache, SQLite output) stays out
of the checkout.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from graphmesh.dev import free_port

ROOT = Path(__file__).resolve().parents[2]
GRAPHMESH = Path(sys.executable).parent / "graphmesh"

pytestmark = pytest.mark.slow


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    return tmp_path


def run(command: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GRAPHMESH_STATE_DIR": str(cwd / ".graphmesh"), "COLUMNS": "200"}
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done


def run_json(graph: str, cwd: Path, *extra: str) -> dict[str, object]:
    done = run([str(GRAPHMESH), "run", graph, "--json", *extra], cwd)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_seed_pipeline_rewrites_embeds_and_saves_rows(workdir: Path) -> None:
    done = run([str(GRAPHMESH), "run", "examples/seed_pipeline.json"], workdir)
    assert "COMPLETED" in done.stdout
    with sqlite3.connect(workdir / ".graphmesh" / "seed_pipeline.sqlite") as db:
        rows = db.execute("SELECT text, vector, source FROM rewrites ORDER BY position").fetchall()
    # 3 paragraphs (the heading stays with its paragraph) x 2 rewriting prompts.
    assert len(rows) == 6
    for text, vector, source in rows:
        assert text.strip() and source == "solar_system.md"
        values = json.loads(vector)
        assert len(values) == 384 and abs(sum(v * v for v in values) - 1) < 1e-3


def test_second_run_of_the_seed_pipeline_is_served_from_the_cache(workdir: Path) -> None:
    first = run_json("examples/seed_pipeline.json", workdir)
    second = run_json("examples/seed_pipeline.json", workdir)
    outputs_1, outputs_2 = first["outputs"], second["outputs"]
    assert isinstance(outputs_1, dict) and isinstance(outputs_2, dict)
    assert outputs_1["rewrite"] == outputs_2["rewrite"]
    assert outputs_1["embed"] == outputs_2["embed"]


def test_semantic_search_ranks_the_icy_planets_first(workdir: Path) -> None:
    result = run_json("examples/semantic_search.json", workdir)
    outputs = result["outputs"]
    assert isinstance(outputs, dict)
    assert outputs["rank"]["indices"][0] == 1  # "Uranus and Neptune ... ice"
    scores = outputs["rank"]["scores"]
    assert scores == sorted(scores, reverse=True)


def test_semantic_search_takes_a_query_from_the_command_line(workdir: Path) -> None:
    result = run_json(
        "examples/semantic_search.json", workdir, "--input", "query.text=Which star holds the mass?"
    )
    outputs = result["outputs"]
    assert isinstance(outputs, dict)
    assert outputs["rank"]["indices"][0] == 2  # "The Sun holds ... the mass"


def test_summarize_then_translate(workdir: Path) -> None:
    result = run_json("examples/summarize_translate.json", workdir)
    outputs = result["outputs"]
    assert isinstance(outputs, dict)
    assert outputs["summarize"]["text"].strip()
    assert outputs["translate"]["text"].strip()


def test_builder_quickstart(workdir: Path) -> None:
    done = run([sys.executable, "examples/builder_quickstart.py"], workdir)
    assert "words per paragraph: [1, 3, 3]" in done.stdout
    assert "lambda: [5, 4]" in done.stdout
    assert 'builder.connect("split", "paragraphs", "count_words", "input")' in done.stdout


def readme_blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


README_OUTPUTS = {
    0: "COMPLETED ['GRAPHS RUN TASKS.', 'TASKS PASS DATA ALONG DATAFLOWS.']",
    1: "{'count': 3}",
    2: "{'output': 42}",
}


@pytest.mark.parametrize("index", range(len(readme_blocks("python"))))
def test_readme_python_snippet_runs(workdir: Path, index: int) -> None:
    snippet = readme_blocks("python")[index]
    (workdir / "snippet.py").write_text(snippet, encoding="utf-8")
    with contextlib.ExitStack() as stack:
        if "Client(" in snippet:
            stack.enter_context(readme_orchestrator(workdir))
        done = run([sys.executable, "snippet.py"], workdir)
    assert README_OUTPUTS[index] in done.stdout


@contextlib.contextmanager
def readme_orchestrator(workdir: Path) -> Iterator[None]:
    """The README's ``graphmesh serve orchestrator`` line, run for the length of a test."""
    block = next(b for b in readme_blocks("bash") if "serve orchestrator" in b)
    serve = next(line for line in block.splitlines() if "serve orchestrator" in line)
    args = shlex.split(serve.rstrip("& ").replace(".venv/bin/graphmesh", str(GRAPHMESH)))
    with subprocess.Popen(args, cwd=workdir, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            assert "listening on" in server.stdout.readline()
            yield
        finally:
            server.terminate()
            server.wait(timeout=30)


def test_readme_service_commands_run(workdir: Path) -> None:
    block = next(b for b in readme_blocks("bash") if "serve orchestrator" in b)
    with readme_orchestrator(workdir):
        for line in block.splitlines():
            if line.strip() and "serve orchestrator" not in line:
                command = line.replace(".venv/bin/graphmesh", str(GRAPHMESH))
                done = run(shlex.split(command), workdir)
                assert "FAILED" not in done.stdout


def test_readme_cli_commands_run(workdir: Path) -> None:
    """The README's command-line block, minus the seed pipeline (tested above)."""
    block = next(b for b in readme_blocks("bash") if "graphmesh tasks" in b)
    for line in block.splitlines():
        command = line.split("#")[0].strip()
        if not command or ("seed_pipeline.json" in command and " run " in command):
            continue
        args = shlex.split(command.replace(".venv/bin/graphmesh", str(GRAPHMESH)))
        run(args, workdir)


def test_readme_dev_mode_runs_the_mesh(workdir: Path) -> None:
    """The README's ``graphmesh dev`` line (on free ports): a model server and an
    orchestrator come up, an AI graph runs through them over gRPC, Ctrl-C stops all."""
    block = next(b for b in readme_blocks("bash") if "graphmesh dev" in b)
    line = next(line for line in block.splitlines() if "graphmesh dev" in line)
    port, viewer = free_port(), free_port()
    args = shlex.split(line.split("#")[0].replace(".venv/bin/graphmesh", str(GRAPHMESH)))
    args += ["--port", str(port), "--viewer-port", str(viewer)]
    env = {k: v for k, v in os.environ.items() if k not in {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"}}
    env.update(COLUMNS="200", GRAPHMESH_STATE_DIR=str(workdir / "state"))
    log = workdir / "dev.out"
    with (
        log.open("w") as out,
        subprocess.Popen(args, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env=env) as dev,
    ):
        try:
            deadline = time.monotonic() + 300
            while "Ctrl-C stops everything" not in log.read_text(encoding="utf-8"):
                assert dev.poll() is None, log.read_text(encoding="utf-8")
                assert time.monotonic() < deadline, log.read_text(encoding="utf-8")
                time.sleep(0.5)
            assert "model-server" in log.read_text(encoding="utf-8")
            address = ["--address", f"127.0.0.1:{port}"]
            submit = [str(GRAPHMESH), "submit", "examples/semantic_search.json", "--watch"]
            done = run([*submit, *address], workdir)
            assert "COMPLETED" in done.stdout + done.stderr
            assert "tokens" in done.stdout + done.stderr  # the model server's usage came back
        finally:
            dev.send_signal(signal.SIGINT)
            assert dev.wait(timeout=60) == 0, log.read_text(encoding="utf-8")
