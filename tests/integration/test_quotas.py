"""Quotas per tenant through the real gRPC server on every store: each refusal is
RESOURCE_EXHAUSTED with a retry delay and names its quota; other tenants go on."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from support.edge import details, leaked, retry_delay
from support.orchestrator import STORES, Served, bearer, orchestrator_on, store_location
from support.run_tasks import flow, sleep_task

from graphmesh import Client
from graphmesh.orchestrator.api.settings import EdgeSettings, QuotaOverride
from graphmesh.orchestrator.runs.quotas import QuotaExceededError
from graphmesh.v1 import orchestrator_pb2 as pb
from graphmesh.v1.orchestrator_pb2_grpc import OrchestratorServiceStub

A, B = bearer("token-a"), bearer("token-b")
Stub = Any
EDGE = EdgeSettings(
    quota_retry_after_s=2.5,
    quota_overrides={
        "a": QuotaOverride(request_bytes=2000, graph_tasks=3, concurrent_runs=2, tasks_in_flight=3)
    },
)


@pytest.fixture(params=STORES)
async def served(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Served]:
    location = store_location(request.param, request, tmp_path)
    async with orchestrator_on(request.param, location=location, edge=EDGE) as started:
        yield started


@pytest.fixture
async def stub(served: Served) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(served.server.target) as channel:
        yield OrchestratorServiceStub(channel)


def waiting(flag: Path, *ids: str) -> dict[str, Any]:
    """Tasks that wait for ``flag`` to exist, one after the other."""
    tasks = [sleep_task(task_id, until_exists=str(flag)) for task_id in ids]
    flows = [flow(a, b) for a, b in itertools.pairwise(ids)]
    return {"tasks": tasks, "dataflows": flows}


async def create(stub: Stub, graph: dict[str, Any], metadata: Any = A, **fields: Any) -> pb.Run:
    request = pb.CreateRunRequest(graph_json=json.dumps(graph), **fields)
    return (await stub.CreateRun(request, metadata=metadata, timeout=10)).run


async def exhausted(call: Any, quota: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = caught.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert retry_delay(error) == 2.5
    failure = details(error, error_details_pb2.QuotaFailure)
    assert [v.subject for v in failure.violations] == [quota]
    assert quota in (error.details() or "") and leaked(error.details() or "") is None
    return error


async def test_request_size(stub: Stub) -> None:
    big = {"tasks": [sleep_task("a", value="x" * 3000)], "dataflows": []}
    await exhausted(create(stub, big), "request_bytes")
    await exhausted(stub.GetRun(pb.GetRunRequest(run_id="r" * 2500), metadata=A), "request_bytes")
    assert (await create(stub, big, metadata=B)).run_id  # b keeps the default quota


async def test_graph_size(stub: Stub, tmp_path: Path) -> None:
    four = {"tasks": [sleep_task(f"t{i}") for i in range(4)], "dataflows": []}
    await exhausted(create(stub, four), "graph_tasks")
    validate = pb.ValidateGraphRequest(graph_json=json.dumps(four))
    await exhausted(stub.ValidateGraph(validate, metadata=A), "graph_tasks")
    nested = {
        "tasks": [
            {
                "id": "c",
                "type": "JsonTask",
                "subgraph": {"tasks": [sleep_task("x"), sleep_task("y")]},
            },
            sleep_task("z"),
        ]
    }  # 4 tasks with the subgraph's
    save = pb.SaveGraphRequest(graph_json=json.dumps(nested))
    await exhausted(stub.SaveGraph(save, metadata=A), "graph_tasks")
    assert (await create(stub, four, metadata=B)).run_id


async def test_concurrent_runs(stub: Stub, served: Served, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    first = await create(stub, waiting(flag, "w"), idempotency_key="k1")
    await create(stub, waiting(flag, "w"))
    await exhausted(create(stub, waiting(flag, "w")), "concurrent_runs")
    again = await stub.CreateRun(
        pb.CreateRunRequest(graph_json=json.dumps(waiting(flag, "w")), idempotency_key="k1"),
        metadata=A,
    )
    assert again.deduplicated and again.run.run_id == first.run_id  # a repeat is never refused
    assert (await create(stub, waiting(flag, "w"), metadata=B)).run_id
    flag.touch()
    async for _ in stub.WatchRun(pb.WatchRunRequest(run_id=first.run_id), metadata=A, timeout=20):
        pass
    async with Client(served.server.target, token="token-a") as client:
        async for run in client.runs():
            await client.wait(run.run_id)
    assert (await create(stub, waiting(flag, "w"))).run_id  # room again


async def test_tasks_in_flight(stub: Stub, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    held = await create(stub, waiting(flag, "p", "q"))
    await exhausted(create(stub, waiting(flag, "r", "s")), "tasks_in_flight")
    assert (await create(stub, waiting(flag, "r"))).run_id  # 3 in flight: the limit
    assert (await create(stub, waiting(flag, "r", "s"), metadata=B)).run_id
    flag.touch()
    async for _ in stub.WatchRun(pb.WatchRunRequest(run_id=held.run_id), metadata=A, timeout=20):
        pass


async def test_resume_counts_against_the_quotas(stub: Stub, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    cancelled = await create(stub, waiting(flag, "w"))
    await stub.CancelRun(pb.CancelRunRequest(run_id=cancelled.run_id), metadata=A)
    async for _ in stub.WatchRun(
        pb.WatchRunRequest(run_id=cancelled.run_id), metadata=A, timeout=20
    ):
        pass
    await create(stub, waiting(flag, "w"))
    await create(stub, waiting(flag, "w"))
    resume = pb.ResumeRunRequest(run_id=cancelled.run_id)
    await exhausted(stub.ResumeRun(resume, metadata=A), "concurrent_runs")
    flag.touch()


async def test_the_sdk_raises_quota_exceeded_with_its_delay(served: Served) -> None:
    four = {"tasks": [sleep_task(f"t{i}") for i in range(4)], "dataflows": []}
    async with Client(served.server.target, token="token-a") as client:
        with pytest.raises(QuotaExceededError) as caught:
            await client.submit(four)
    assert caught.value.quota == "graph_tasks" and caught.value.retry_after == 2.5
