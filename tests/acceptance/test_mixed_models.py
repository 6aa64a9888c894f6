"""One graph mixing ``openai:``, ``anthropic:`` and a local ``hf:`` model runs through the
orchestrator's durable runs and its gRPC ModelClient: the ``hf:`` embedding on a real
``graphmesh serve model-server`` process, the provider models on a real ``graphmesh serve
gateway`` process speaking to the loopback fake provider through the official SDKs. The
outputs flow between them, and the run's usage sums the providers' tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.fake_provider import FakeProvider
from support.gateway import API_KEY, write_config
from support.gateway_service import gateway_process
from support.model_server import MINILM, model_server_process

import graphmesh.orchestrator.catalog  # noqa: F401  (registers the AI tasks)
from graphmesh.orchestrator.models import GrpcModelClient, parse_routes
from graphmesh.orchestrator.runs.durable.sqlite import SqliteRunService
from graphmesh.orchestrator.runs.durable.worker import WorkerSettings
from graphmesh.orchestrator.runs.records import RunRecord, RunService, RunState

pytestmark = pytest.mark.slow

TENANT = "acme"
MODEL_SERVER = f"""
[[models]]
name = "{MINILM}"
device = "cpu"
"""
ARTICLE = "graphmesh runs pipelines of models as gRPC services"
GRAPH = {
    "tasks": [
        {
            "id": "embed",
            "type": "TextEmbeddingTask",
            "defaults": {"model": MINILM, "text": ARTICLE},
        },
        {
            "id": "summary",
            "type": "TextSummaryTask",
            "defaults": {"model": "openai:gpt-test", "text": ARTICLE},
        },
        {
            "id": "french",
            "type": "TextTranslationTask",
            "defaults": {"model": "anthropic:claude-test", "target": "French"},
        },
    ],
    "dataflows": [
        {
            "source_task": "summary",
            "source_port": "text",
            "target_task": "french",
            "target_port": "text",
        }
    ],
}


async def finished(runs: RunService, run_id: str) -> RunRecord:
    async for _ in runs.watch_run(run_id, tenant=TENANT):
        pass
    return await runs.get_run(run_id, tenant=TENANT)


async def test_a_graph_mixing_provider_and_local_models(tmp_path: Path) -> None:
    async with FakeProvider.start(api_key=API_KEY) as fake:
        config = write_config(tmp_path / "gateway.toml", fake, dsn=None, requests_per_minute=100)
        env = {"TEST_PROVIDER_KEY": API_KEY}
        with model_server_process(tmp_path, MODEL_SERVER, ready_models=1) as model_server:
            async with gateway_process(config, log=tmp_path / "gateway.log", env=env) as gateway:
                routes = parse_routes(
                    f"hf:={model_server.address};"
                    f"openai:={gateway.target};anthropic:={gateway.target}"
                )
                async with (
                    GrpcModelClient(routes) as models,
                    SqliteRunService.open(
                        tmp_path / "runs.sqlite", worker=WorkerSettings(models=models)
                    ) as runs,
                ):
                    created = await runs.create_run(graph=GRAPH, inputs={}, tenant=TENANT)
                    done = await finished(runs, created.run_id)
                    outputs = {
                        task: await runs.get_task_output(done.run_id, task, tenant=TENANT)
                        for task in ("embed", "summary", "french")
                    }
    assert done.status == RunState.COMPLETED, done.error
    assert len(outputs["embed"]["vector"]) == 384  # MiniLM, on the model server
    assert ARTICLE in outputs["summary"]["text"]  # the fake provider echoes the prompt
    assert outputs["summary"]["text"] in outputs["french"]["text"]  # it flowed on
    paths = sorted(request.path for request in fake.received)
    assert paths == ["/v1/chat/completions", "/v1/messages"]
    models_asked = {request.model for request in fake.received}
    assert models_asked == {"gpt-test", "claude-test"}
    assert done.usage.input_tokens > 0 and done.usage.output_tokens > 0
