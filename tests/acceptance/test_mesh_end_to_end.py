"""The mesh end to end: an orchestrator, a model server and a cloud gateway run as separate
processes (the gateway in front of a loopback fake OpenAI/Anthropic provider, spoken to by
the official SDKs). One graph mixes ``anthropic:``, ``openai:`` and ``hf:`` models; it
completes, every model call's tokens are counted per task and per run, and the whole
pipeline is one trace: the orchestrator's task spans are the parents of its ModelService
client spans, which are the parents of the model server's and the gateway's server spans."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.fake_provider import FakeProvider
from support.gateway import write_config
from support.gateway_service import gateway_process
from support.model_server import MINILM, model_server_process
from support.orchestrator_process import orchestrator_process
from support.otlp import OtlpReceiver, ReceivedSpan

from graphmesh.client import Client
from graphmesh.orchestrator.runs.records import RunState

pytestmark = pytest.mark.slow

API_KEY = "sk-test-mesh-0123456789"
SERVER, CLIENT = 2, 3  # OTLP Span.SpanKind
SERVICES = ("graphmesh-orchestrator", "graphmesh-model-server", "graphmesh-gateway")


def link(source: str, port: str, target: str, target_port: str) -> dict[str, str]:
    return {
        "source_task": source,
        "source_port": port,
        "target_task": target,
        "target_port": target_port,
    }


GRAPH = {
    "tasks": [
        {
            "id": "summary",
            "type": "TextSummaryTask",
            "defaults": {
                "model": "anthropic:claude-test",
                "text": "Graphs run tasks. Tasks pass data along dataflows to other tasks.",
            },
        },
        {
            "id": "rewrite",
            "type": "TextRewriterTask",
            "defaults": {"model": "openai:gpt-test", "prompt": "Say it plainly."},
        },
        {"id": "embed", "type": "TextEmbeddingTask", "defaults": {"model": MINILM}},
    ],
    "dataflows": [
        link("summary", "text", "rewrite", "text"),
        link("rewrite", "text", "embed", "text"),
    ],
}


async def test_one_graph_through_model_server_and_gateway_is_one_trace(
    postgres_dsn: str, tmp_path: Path
) -> None:
    async with OtlpReceiver() as receiver, FakeProvider.start(api_key=API_KEY) as provider:
        config = write_config(tmp_path / "gateway.toml", provider, dsn=postgres_dsn)
        gateway_env = {"TEST_PROVIDER_KEY": API_KEY, **receiver.environment(SERVICES[2])}
        served_env = receiver.environment(SERVICES[1])
        async with gateway_process(config, log=tmp_path / "gateway.log", env=gateway_env) as gw:
            with model_server_process(tmp_path, env=served_env) as server:
                routes = f"hf:={server.address};openai:={gw.target};anthropic:={gw.target}"
                env = {**receiver.environment(SERVICES[0]), "GRAPHMESH_MODEL_ROUTES": routes}
                with orchestrator_process(postgres_dsn, env=env) as (_, address):
                    async with Client(address, timeout=10) as client:
                        run = await client.submit(GRAPH)
                        done = await asyncio.wait_for(client.wait(run.run_id), 120)
                        assert done.status == RunState.COMPLETED, done.error
                        vector = await client.output(run.run_id, "embed")
                        record = await client.get(run.run_id)

                    def complete(spans: list[ReceivedSpan]) -> bool:
                        served = {s.service for s in spans if s.kind == SERVER}
                        return {SERVICES[1], SERVICES[2]} <= served and (
                            len([s for s in spans if s.name.startswith("task Text")]) == 3
                        )

                    async with asyncio.timeout(30):
                        await receiver.until(complete)
        spans = list(receiver.spans)

    assert len(vector["vector"]) == 384
    tasks = {task.task_id: task for task in record.tasks}
    for task_id in ("summary", "rewrite", "embed"):
        assert tasks[task_id].usage.input_tokens > 0, task_id
    assert tasks["summary"].usage.output_tokens > 0 and tasks["rewrite"].usage.output_tokens > 0
    assert record.usage.input_tokens == sum(t.usage.input_tokens for t in record.tasks)
    assert len(provider.received) == 2  # one Anthropic and one OpenAI call: no retries

    task_spans = [s for s in spans if s.name.startswith("task Text")]
    (trace_id,) = {s.trace_id for s in task_spans}
    trace = [s for s in spans if s.trace_id == trace_id]
    assert set(SERVICES) <= {s.service for s in trace}
    by_id = {s.span_id: s for s in trace}
    for service in SERVICES[1:]:
        served = [s for s in trace if s.service == service and s.kind == SERVER]
        assert served, f"{service} made no server span in the run's trace"
        for span in served:
            called = by_id[span.parent_id]
            assert called.service == SERVICES[0] and called.kind == CLIENT
            assert by_id[called.parent_id].name.startswith("task Text")
    assert all(s.attributes["graphmesh.run_id"] == run.run_id for s in task_spans)
