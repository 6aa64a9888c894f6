"""A model call is part of its run's trace: the orchestrator's task span is the parent of
its gRPC client span to the model server, which is the parent of the model server's own
span. Both processes export over OTLP to a receiver of the test's own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.model_server import MINILM, model_server_process
from support.orchestrator_process import orchestrator_process
from support.otlp import OtlpReceiver, ReceivedSpan

from graphmesh.client import Client
from graphmesh.orchestrator.runs.records import RunState

pytestmark = pytest.mark.slow

EMBED = "/graphmesh.v1.ModelService/Embed"
SERVER, CLIENT = 2, 3  # OTLP Span.SpanKind
GRAPH = {
    "tasks": [
        {"id": "emb", "type": "TextEmbeddingTask", "defaults": {"model": MINILM, "text": "hi"}}
    ],
    "dataflows": [],
}


def one(spans: list[ReceivedSpan], **wanted: object) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in wanted.items())]
    assert len(found) == 1, (wanted, [(s.service, s.name, s.kind) for s in spans])
    return found[0]


async def test_a_model_call_continues_the_runs_trace(postgres_dsn: str, tmp_path: Path) -> None:
    async with OtlpReceiver() as receiver:
        served_env = receiver.environment("graphmesh-model-server")
        with model_server_process(tmp_path, env=served_env) as server:
            env = {
                **receiver.environment("graphmesh-orchestrator"),
                "GRAPHMESH_MODEL_ROUTES": f"hf:={server.address}",
            }
            with orchestrator_process(postgres_dsn, env=env) as (_, address):
                async with Client(address, timeout=10) as client:
                    run = await client.submit(GRAPH)
                    done = await asyncio.wait_for(client.wait(run.run_id), 60)
                assert done.status == RunState.COMPLETED, done.error

                def complete(spans: list[ReceivedSpan]) -> bool:
                    return any(s.name == EMBED and s.kind == SERVER for s in spans) and any(
                        s.name == "task TextEmbeddingTask" for s in spans
                    )

                async with asyncio.timeout(30):
                    await receiver.until(complete)
        spans = list(receiver.spans)

    task = one(spans, service="graphmesh-orchestrator", name="task TextEmbeddingTask")
    called = one(spans, service="graphmesh-orchestrator", name=EMBED, kind=CLIENT)
    served = one(spans, service="graphmesh-model-server", name=EMBED, kind=SERVER)
    assert task.attributes["graphmesh.run_id"] == run.run_id
    assert called.trace_id == task.trace_id == served.trace_id
    assert called.parent_id == task.span_id
    assert served.parent_id == called.span_id
