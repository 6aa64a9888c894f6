"""Prometheus /metrics of a served orchestrator: run and task outcomes, counted once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import urllib.request
from pathlib import Path

import pytest

from graphmesh.client import Client
from graphmesh.orchestrator.runs.records import RunState
from graphmesh.services.kit.metrics import metrics_endpoint, split_address

SCHEDULED_TO_START = "graphmesh_queue_schedule_to_start_seconds_count"
GRAPH = {
    "tasks": [
        {"id": "ok", "type": "JavaScriptTask", "defaults": {"code": "1 + 1"}},
        {"id": "boom", "type": "JavaScriptTask", "defaults": {"code": "throw new Error('no')"}},
    ],
    "dataflows": [],
}


def scrape(address: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("graphmesh_"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


async def test_a_served_orchestrator_counts_run_and_task_outcomes(tmp_path: Path) -> None:
    command = [str(Path(sys.executable).parent / "graphmesh"), "serve", "orchestrator"]
    process = await asyncio.create_subprocess_exec(
        *command,
        *("--store", "sqlite", "--no-auth", "--listen", "127.0.0.1:0"),
        *("--metrics-listen", "127.0.0.1:0"),
        env={**os.environ, "GRAPHMESH_DATABASE_URL": f"sqlite:///{tmp_path / 'runs.sqlite'}"},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        address = line.split("listening on ")[1].split()[0]
        metrics = line.split("metrics on ")[1].rstrip(")\n")
        async with Client(address) as client:
            run = await client.wait((await client.submit(GRAPH)).run_id)
        assert run.status == RunState.FAILED
        samples = await asyncio.to_thread(scrape, metrics)
        assert samples['graphmesh_run_events_total{kind="RUN_FAILED"}'] == 1
        assert samples['graphmesh_run_events_total{kind="TASK_FAILED"}'] == 1
        assert samples['graphmesh_run_events_total{kind="RUN_CREATED"}'] == 1
        assert not any("TASK_PROGRESS" in name or "run_id" in name for name in samples)
        assert samples["graphmesh_queue_claim_duration_seconds_count"] >= 1
        started = [v for k, v in samples.items() if k.startswith(SCHEDULED_TO_START)]
        assert sum(started) == 2  # both tasks' attempts
        # The sampled gauges appear once the worker's housekeeping has looked.
        async with asyncio.timeout(30):
            while not any(k.startswith("graphmesh_queue_jobs{") for k in samples):
                await asyncio.sleep(0.2)  # polling a scrape endpoint: there is no event
                samples = await asyncio.to_thread(scrape, metrics)
        assert any(k.startswith("graphmesh_queue_oldest_runnable_age_seconds{") for k in samples)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)


async def test_metrics_are_off_without_an_address_and_on_any_free_port() -> None:
    async with metrics_endpoint(None) as off:
        assert off is None
    async with metrics_endpoint("127.0.0.1:0") as address:
        assert address is not None and not address.endswith(":0")
        assert "python_info" in await asyncio.to_thread(_text, address)


def _text(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        return response.read().decode()


@pytest.mark.parametrize("bad", ["9464", "host:", "host:port", "h:70000"])
def test_a_malformed_metrics_address_is_refused_by_name(bad: str) -> None:
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        split_address(bad)
