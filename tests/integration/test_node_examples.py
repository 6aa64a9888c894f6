"""``examples/node``: a Node.js client (@grpc/grpc-js with the .proto files) and a Node.js NATS
subscriber drive a live orchestrator process (SQLite store, events to NATS, bearer tokens):
list task types, submit a graph with inputs, stream WatchRun to the end, read the outputs,
then replay the run's events from JetStream."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from support.node import EXAMPLE, example_node_modules, node_env

TOKEN = "node-example-token"
TEXT = "One two.\n\nThree four five."


@asynccontextmanager
async def orchestrator_with_events(tmp_path: Path, nats_url: str) -> AsyncIterator[str]:
    """``graphmesh serve orchestrator --store sqlite`` publishing to NATS; yields its address."""
    environment = {
        **os.environ,
        "GRAPHMESH_DATABASE_URL": f"sqlite:///{tmp_path / 'runs.sqlite'}",
        "GRAPHMESH_NATS_URL": nats_url,
        "GRAPHMESH_TOKENS": json.dumps({TOKEN: "node-team"}),
    }
    command = [str(Path(sys.executable).parent / "graphmesh"), "serve", "orchestrator"]
    process = await asyncio.create_subprocess_exec(
        *command,
        "--store",
        "sqlite",
        "--listen",
        "127.0.0.1:0",
        env=environment,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        assert "listening on" in line, line
        yield line.split("listening on ")[1].split()[0]
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)


async def node(script: str, *args: str) -> tuple[int, list[str], str]:
    """Run an example script; its exit code, stdout lines and stderr."""
    process = await asyncio.create_subprocess_exec(
        "node",
        str(EXAMPLE / script),
        *args,
        env=node_env(example_node_modules()),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    return process.returncode, out.decode().splitlines(), err.decode()


async def test_the_node_client_and_subscriber_drive_a_live_mesh(
    nats_url: str, tmp_path: Path
) -> None:
    async with orchestrator_with_events(tmp_path, nats_url) as address:
        code, lines, err = await node(
            "client.js",
            *("--address", address, "--token", TOKEN),
            *("--graph", str(EXAMPLE / "graph.json"), "--input", f"text={TEXT}"),
        )
        assert code == 0, err
        result = json.loads(lines[-1])
        assert result["status"] == "RUN_STATUS_COMPLETED"
        assert result["task_types"] > 10
        assert result["outputs"] == {
            "split": {"paragraphs": ["One two.", "Three four five."]},
            "count": {"output": [2, 3]},
        }
        assert "TASK_COMPLETED task=count progress=100%" in " ".join(lines)

        code, events, err = await node(
            "subscriber.js", "--nats", nats_url, "--run", result["run_id"], "--until-done"
        )
        assert code == 0, err
        assert [line.split()[1] for line in events] == [f"seq={n}" for n in range(1, 8)]
        assert events[0].split()[2] == "RUN_CREATED" and events[-1].split()[2] == "RUN_COMPLETED"
        assert all(line.startswith(f"run={result['run_id']} ") for line in events)


async def test_the_node_client_reports_bad_calls_with_their_status(
    nats_url: str, tmp_path: Path
) -> None:
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"tasks": [{"id": "x", "type": "Nope"}], "dataflows": []}))
    async with orchestrator_with_events(tmp_path, nats_url) as address:
        code, _, err = await node(
            "client.js", "--address", address, "--token", TOKEN, "--graph", str(invalid)
        )
        assert code == 2 and err.startswith("INVALID_ARGUMENT: "), err
        code, _, err = await node(
            "client.js", "--address", address, "--token", "wrong", "--graph", str(invalid)
        )
        assert code == 2 and err.startswith("UNAUTHENTICATED: "), err
