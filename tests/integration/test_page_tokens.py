"""ListRuns and ListGraphs page tokens over gRPC on every store: keyset pages stable under
inserts, tokens bound to their tenant and filter, forged ones refused."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from support.edge import details, leaked
from support.orchestrator import STORES, bearer, orchestrator_on, store_location
from support.run_tasks import sleep_task

from graphmesh.v1 import orchestrator_pb2 as pb
from graphmesh.v1.orchestrator_pb2_grpc import OrchestratorServiceStub

A, B = bearer("token-a"), bearer("token-b")
GRAPH = {"tasks": [sleep_task("a")], "dataflows": []}
Stub = Any


@pytest.fixture(params=STORES)
async def stub(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stub]:
    location = store_location(request.param, request, tmp_path)
    async with (
        orchestrator_on(request.param, location=location) as served,
        grpc.aio.insecure_channel(served.server.target) as channel,
    ):
        yield OrchestratorServiceStub(channel)


async def new_run(stub: Stub, metadata: Any = A, **labels: str) -> str:
    request = pb.CreateRunRequest(graph_json=json.dumps(GRAPH), labels=labels)
    return str((await stub.CreateRun(request, metadata=metadata)).run.run_id)


async def new_graph(stub: Stub, graph_id: str, metadata: Any = A) -> str:
    request = pb.SaveGraphRequest(graph_id=graph_id, graph_json=json.dumps(GRAPH))
    return str((await stub.SaveGraph(request, metadata=metadata)).graph.graph_id)


async def bad_token(call: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(error, error_details_pb2.ErrorInfo).reason == "INVALID_PAGE_TOKEN"
    assert leaked(error.details() or "") is None


async def page_through(list_page: Callable[[str], Any], first_token: str) -> list[str]:
    seen, token = [], first_token
    while token:
        page = await list_page(token)
        seen += page[0]
        token = page[1]
    return seen


async def test_run_pages_are_stable_and_bound_to_their_tenant(stub: Stub) -> None:
    created = [await new_run(stub) for _ in range(5)]
    await new_run(stub, metadata=B)

    async def list_page(token: str) -> tuple[list[str], str]:
        request = pb.ListRunsRequest(page_size=2, page_token=token)
        page = await stub.ListRuns(request, metadata=A)
        return [run.run_id for run in page.runs], page.next_page_token

    first, token = await list_page("")
    await new_run(stub)  # created while paging
    assert first + await page_through(list_page, token) == created[::-1]
    await bad_token(stub.ListRuns(pb.ListRunsRequest(page_size=2, page_token=token), metadata=B))
    labelled = pb.ListRunsRequest(page_size=2, page_token=token, labels={"x": "y"})
    await bad_token(stub.ListRuns(labelled, metadata=A))
    for forged in (token[:-2] + "AA", "bogus", token.split(".")[0], "x" * 2048):
        await bad_token(stub.ListRuns(pb.ListRunsRequest(page_token=forged), metadata=A))


async def test_graph_pages_are_stable_and_bound_to_their_tenant(stub: Stub) -> None:
    saved = [await new_graph(stub, f"g{index}") for index in range(5)]
    await new_graph(stub, "theirs", metadata=B)

    async def list_page(token: str) -> tuple[list[str], str]:
        request = pb.ListGraphsRequest(page_size=2, page_token=token)
        page = await stub.ListGraphs(request, metadata=A)
        return [graph.graph_id for graph in page.graphs], page.next_page_token

    first, token = await list_page("")
    await new_graph(stub, "later")  # saved while paging
    assert first + await page_through(list_page, token) == saved[::-1]
    request = pb.ListGraphsRequest(page_size=2, page_token=token)
    await bad_token(stub.ListGraphs(request, metadata=B))
    await bad_token(stub.ListRuns(pb.ListRunsRequest(page_token=token), metadata=A))
    await bad_token(stub.ListGraphs(pb.ListGraphsRequest(page_token=token + "x"), metadata=A))
