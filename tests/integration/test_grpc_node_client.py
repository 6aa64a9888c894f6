"""A real non-Python client: Node.js with ``@grpc/grpc-js``, loading our .proto files with
``@grpc/proto-loader``, calls ListTaskTypes and CreateRun on a live orchestrator.

The npm packages are those ``examples/node`` locks, installed once (see
:mod:`support.node`); without ``node`` the test fails, saying what is missing.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from support.node import example_node_modules, node_env
from support.orchestrator import orchestrator
from support.run_tasks import sleep_task

from graphmesh.client import Client
from graphmesh.orchestrator.runs.records import RunState

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = r"""
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');
const [target, protoRoot, token, graphJson] = process.argv.slice(2);
const definition = loader.loadSync('graphmesh/v1/orchestrator.proto', {
  includeDirs: [protoRoot], keepCase: true, longs: String, enums: String, defaults: true,
  oneofs: true,
});
const v1 = grpc.loadPackageDefinition(definition).graphmesh.v1;
const client = new v1.OrchestratorService(target, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
metadata.add('authorization', 'Bearer ' + token);
const options = () => ({deadline: new Date(Date.now() + 10000)});
const call = (method, request) => new Promise((resolve) => {
  client[method](request, metadata, options(), (error, response) => resolve({error, response}));
});
(async () => {
  const types = await call('ListTaskTypes', {});
  const created = await call('CreateRun', {graph_json: graphJson, labels: {client: 'node'}});
  const invalid = await call('CreateRun', {graph_json: '{"tasks": [{"id": "x", "type": "Nope"}]}'});
  console.log(JSON.stringify({
    types: types.error ? String(types.error) : types.response.task_types.map((t) => t.type),
    run: created.error ? String(created.error) : created.response.run,
    invalid_code: invalid.error ? invalid.error.code : null,
  }));
  client.close();
})();
"""


@pytest.fixture(scope="module")
def node_modules() -> Path:
    return example_node_modules()


async def test_a_node_client_lists_task_types_and_creates_a_run(
    node_modules: Path, tmp_path: Path
) -> None:
    script = tmp_path / "client.js"
    script.write_text(SCRIPT)
    graph = {"tasks": [sleep_task("a", value="from node")], "dataflows": []}
    async with orchestrator() as server:
        process = await asyncio.create_subprocess_exec(
            "node",
            str(script),
            server.target,
            str(ROOT / "proto"),
            "token-a",
            json.dumps(graph),
            env=node_env(node_modules),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        result = json.loads(out)
        assert {"JavaScriptTask", "RunTestSleep"} <= set(result["types"]), result
        run = result["run"]
        assert run["status"] in ("RUN_STATUS_PENDING", "RUN_STATUS_RUNNING"), run
        assert run["labels"] == {"client": "node"} and run["tasks"][0]["task_id"] == "a"
        assert result["invalid_code"] == 3  # INVALID_ARGUMENT
        async with Client(server.target, token="token-a") as client:
            done = await client.wait(run["run_id"])
            assert done.status == RunState.COMPLETED
            assert await client.output(done.run_id, "a") == {"value": "from node"}
