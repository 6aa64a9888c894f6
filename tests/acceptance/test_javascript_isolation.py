"""One tenant's hostile JavaScript never stops another tenant's runs.

A real orchestrator (``graphmesh serve orchestrator --store postgres``, running tasks
itself) serves two tenants. Tenant ``b`` runs a stream of pipelines with JavaScript steps
while tenant ``a`` sends scripts that abort V8 and scripts that loop forever. The server
stays up and healthy, every run of ``b`` completes, every attack fails its own task once
(a permanent error, not a poison pill), and a server restarted on the same database finds
nothing left to crash on.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from support.js_server import client, healthy, js_graph, js_task, run_js, serve

from graphmesh.client import Client
from graphmesh.orchestrator.runs.records import RunRecord, RunState

pytestmark = pytest.mark.slow

V8_ABORT = "new Array(2**31).fill(0)"
ENDLESS = "while (true) {}"
DEADLINE_S = 180  # generous: only a hang fails it


def pipeline(n: int) -> dict[str, Any]:
    """Three JavaScript steps: numbers, their squares, their sum."""
    tasks = [
        js_task("numbers", "Array.from({length: input}, (_, i) => i + 1)", n),
        js_task("squares", "input.map(x => x * x)"),
        js_task("sum", "input.reduce((a, b) => a + b, 0)"),
    ]
    flows = [
        {"source_task": s, "source_port": "output", "target_task": t, "target_port": "input"}
        for s, t in (("numbers", "squares"), ("squares", "sum"))
    ]
    return {"tasks": tasks, "dataflows": flows}


async def tenant_b_pipelines(tenant: Client, count: int) -> list[tuple[int, RunRecord]]:
    done = []
    for n in range(1, count + 1):
        run = await tenant.submit(pipeline(n))
        done.append((n, await tenant.wait(run.run_id)))
    return done


async def tenant_a_attacks(tenant: Client) -> list[RunRecord]:
    graphs = [js_graph(V8_ABORT), js_graph(ENDLESS, timeout_sec=3)] * 3
    runs = [await tenant.submit(graph) for graph in graphs]
    return [await tenant.wait(run.run_id) for run in runs]


async def test_hostile_scripts_of_one_tenant_leave_the_other_tenants_runs_alone(
    postgres_dsn: str, tmp_path: Path
) -> None:
    with serve("postgres", tmp_path, dsn=postgres_dsn) as served:
        async with client(served, "a") as tenant_a, client(served, "b") as tenant_b:
            attacks, pipelines = await asyncio.wait_for(
                asyncio.gather(tenant_a_attacks(tenant_a), tenant_b_pipelines(tenant_b, 12)),
                DEADLINE_S,
            )
            sums = [await tenant_b.output(run.run_id, "sum") for _, run in pipelines]
        assert served.alive() and await healthy(served)
    for _, run in pipelines:
        assert run.status == RunState.COMPLETED, run.error
    assert [s["output"] for s in sums] == [n * (n + 1) * (2 * n + 1) // 6 for n, _ in pipelines]
    for attack in attacks:
        assert attack.status == RunState.FAILED
        assert [task.attempts for task in attack.tasks] == [1]
    errors = [attack.error or "" for attack in attacks]
    assert all("JavaScriptMemoryError" in error for error in errors[0::2]), errors
    assert all("JavaScriptTimeoutError" in error for error in errors[1::2]), errors

    with serve("postgres", tmp_path, dsn=postgres_dsn) as restarted:
        after = await asyncio.wait_for(run_js(restarted, pipeline(3), tenant="b"), DEADLINE_S)
        assert after.status == RunState.COMPLETED, after.error
        assert restarted.alive() and await healthy(restarted)
