"""One trace per pipeline, across processes: the CLI submits a graph to an orchestrator
process (Postgres store, events to NATS), its tasks run from the job queue, its events are
published and a subscriber process prints them. Each exports spans over OTLP to a receiver
of the test's own, and together they make one trace with correct parent links."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from support.orchestrator_process import orchestrator_process
from support.otlp import OtlpReceiver, ReceivedSpan

ROOT = Path(__file__).resolve().parents[2]
GRAPH = {
    "tasks": [
        {"id": "double", "type": "JavaScriptTask", "defaults": {"code": "21 * 2"}},
        {"id": "echo", "type": "JavaScriptTask", "defaults": {"code": "(x) => [x, x]"}},
    ],
    "dataflows": [
        {
            "source_task": "double",
            "source_port": "output",
            "target_task": "echo",
            "target_port": "input",
        }
    ],
}
CREATE_RUN = "/graphmesh.v1.OrchestratorService/CreateRun"
SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # OTLP Span.SpanKind


async def run_process(*command: str, env: dict[str, str]) -> tuple[str, str]:
    process = await asyncio.create_subprocess_exec(
        *command,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    return out.decode(), err.decode()


def one(spans: list[ReceivedSpan], **wanted: object) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in wanted.items())]
    assert len(found) == 1, (wanted, [(s.service, s.name) for s in spans])
    return found[0]


async def test_a_pipeline_is_one_trace_from_client_to_subscriber(
    postgres_dsn: str, nats_url: str, tmp_path: Path
) -> None:
    graph = tmp_path / "graph.json"
    graph.write_text(json.dumps(GRAPH))
    bin_dir = Path(sys.executable).parent
    async with OtlpReceiver() as receiver:
        env = {"GRAPHMESH_NATS_URL": nats_url, **receiver.environment("graphmesh-orchestrator")}
        with orchestrator_process(postgres_dsn, env=env) as (_, address):
            _, err = await run_process(
                str(bin_dir / "graphmesh"),
                "submit",
                str(graph),
                "--watch",
                "--address",
                address,
                env=receiver.environment("graphmesh-cli"),
            )
            run_id = err.split("run ", 1)[1].split()[0]
            await run_process(
                sys.executable,
                str(ROOT / "examples" / "subscriber.py"),
                "--nats",
                nats_url,
                "--run",
                run_id,
                "--count",
                "7",
                env=receiver.environment("graphmesh-subscriber"),
            )

            def complete(spans: list[ReceivedSpan]) -> bool:
                services = {s.service for s in spans}
                tasks = [s for s in spans if s.name == "task JavaScriptTask"]
                return {"graphmesh-cli", "graphmesh-subscriber"} <= services and len(tasks) == 2

            async with asyncio.timeout(30):
                await receiver.until(complete)
        spans = list(receiver.spans)

    submitted = one(spans, service="graphmesh-cli", name=CREATE_RUN, kind=CLIENT)
    trace = [s for s in spans if s.trace_id == submitted.trace_id]
    served = one(trace, service="graphmesh-orchestrator", name=CREATE_RUN, kind=SERVER)
    assert served.parent_id == submitted.span_id

    tasks = [s for s in trace if s.name == "task JavaScriptTask"]
    assert {s.attributes["graphmesh.task_id"] for s in tasks} == {"double", "echo"}
    assert all(s.parent_id == served.span_id for s in tasks)
    assert all(s.attributes["graphmesh.run_id"] == run_id for s in tasks)

    publishes = {s.span_id for s in trace if s.kind == PRODUCER}
    assert publishes and all(s.parent_id == served.span_id for s in trace if s.kind == PRODUCER)
    processed = [s for s in trace if s.service == "graphmesh-subscriber"]
    assert len(processed) == 7 and all(s.kind == CONSUMER for s in processed)
    assert all(s.parent_id in publishes for s in processed)

    database = [s for s in trace if "db.system" in s.attributes or "db.system.name" in s.attributes]
    assert database, "the orchestrator's Postgres statements are spans of the run's trace"
    assert not [s for s in spans if "Health" in s.name], "health checks make no spans"
