"""A real non-Python client: Node.js with ``@grpc/grpc-js``, loading our .proto files with
``@grpc/proto-loader``, calls ListTaskTypes and CreateRun on a live orchestrator.

The two npm packages are installed once into a cache folder (``GRAPHMESH_NODE_CACHE``,
default ``~/.cache/graphmesh/node-grpc``) from the npm registry. Without ``node`` or when
the install fails the test fails, saying what is missing; it is never skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support.orchestrator import orchestrator
from support.run_tasks import sleep_task

from graphmesh.client import Client
from graphmesh.orchestrator.runs.model import RunState

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("@grpc/grpc-js@1.14.3", "@grpc/proto-loader@0.8.0")
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
    """The cache folder's node_modules with grpc-js and proto-loader, installed once."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("this test needs Node.js: install the 'nodejs' and 'npm' packages")
    default = Path.home() / ".cache" / "graphmesh" / "node-grpc"
    cache = Path(os.environ.get("GRAPHMESH_NODE_CACHE", default))
    modules = cache / "node_modules"
    if not all((modules / name.rsplit("@", 1)[0] / "package.json").exists() for name in PACKAGES):
        cache.mkdir(parents=True, exist_ok=True)
        install = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(cache), *PACKAGES],
            capture_output=True,
            text=True,
            timeout=240,
        )
        if install.returncode != 0:
            pytest.fail(f"npm install {' '.join(PACKAGES)} failed:\n{install.stderr[-2000:]}")
    return modules


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
            env={**os.environ, "NODE_PATH": str(node_modules)},
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
