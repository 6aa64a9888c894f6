"""The orchestrator's gRPC ModelClient against real grpc.aio servers on loopback: routes,
usage, metadata and deadlines, load balancing, failover, and the status table."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from support.model_service import FakeModelServer, retry_info_abort, start_fake_model_server

from graphmesh.orchestrator.ai.client import ModelError
from graphmesh.orchestrator.ai.scope import model_scope
from graphmesh.orchestrator.catalog.ai import TextEmbeddingTask, TextSummaryTask
from graphmesh.orchestrator.graph import TaskGraph
from graphmesh.orchestrator.models import GrpcModelClient, UnknownModelRouteError, parse_routes
from graphmesh.orchestrator.models.routes import RouteConfigError
from graphmesh.orchestrator.runner import TaskGraphRunner

Handler = Callable[[Any, grpc.aio.ServicerContext], Any]


@pytest.fixture
async def servers() -> AsyncIterator[Callable[..., Any]]:
    started: list[grpc.aio.Server] = []

    async def start(name: str, **kwargs: Any) -> tuple[FakeModelServer, str, grpc.aio.Server]:
        servicer, address, server = await start_fake_model_server(name, **kwargs)
        started.append(server)
        return servicer, address, server

    yield start
    for server in started:
        await server.stop(None)


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def client(routes: str, **kwargs: Any) -> GrpcModelClient:
    return GrpcModelClient(parse_routes(routes), **kwargs)


# -- routes ------------------------------------------------------------------------------
def test_routes_parse_pools_in_order_and_pick_the_longest_prefix() -> None:
    routes = parse_routes(" hf:=a:1, b:2 ;hf:big/=c:3;openai:=dns:///gw:7100; ")
    assert routes.pools == {
        "hf:": ("a:1", "b:2"),
        "hf:big/": ("c:3",),
        "openai:": ("dns:///gw:7100",),
    }
    assert routes.prefix_for("hf:all-MiniLM-L6-v2") == "hf:"
    assert routes.prefix_for("hf:big/model") == "hf:big/"
    assert parse_routes("").pools == {}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("hf:", "expected prefix=endpoint"),
        ("hf=a:1", "prefix 'hf'"),
        ("HF:=a:1", "prefix 'HF:'"),
        ("hf:=", "no endpoints"),
        ("hf:=a:1;hf:=b:1", "configured twice"),
        ("hf:=a:1,a:1", "listed twice"),
        ("hf:=a 1", "bad endpoint"),
    ],
)
def test_bad_routes_are_refused_naming_the_entry(text: str, named: str) -> None:
    with pytest.raises(RouteConfigError, match=named):
        parse_routes(text)


async def test_an_unknown_prefix_names_the_model_and_the_configured_prefixes() -> None:
    async with client("hf:=127.0.0.1:1;openai:=127.0.0.1:2") as models:
        with pytest.raises(UnknownModelRouteError) as caught:
            await models.summarize("mistral:large", "x")
    assert "'mistral:large'" in str(caught.value) and "hf:, openai:" in str(caught.value)
    assert caught.value.retryable is False


async def test_a_huge_model_name_is_cut_short_in_the_error() -> None:
    async with client("hf:=127.0.0.1:1") as models:
        with pytest.raises(UnknownModelRouteError) as caught:
            await models.summarize("x" * 100_000, "x")
    assert len(str(caught.value)) < 300


# -- calls -------------------------------------------------------------------------------
async def test_calls_return_results_with_usage_and_send_run_task_and_tenant(servers: Any) -> None:
    server, address, _ = await servers("a")
    async with client(f"hf:={address}") as models:
        with model_scope(run_id="run-1", task_id="parent/t1", tenant="acme", timeout=30):
            embedded = await models.embed("hf:m", ["one two", "three"])
            summary = await models.summarize("hf:m", "text")
        generated = await models.generate("hf:m", "hi", max_new_tokens=9)
    assert embedded.vectors == [[7.0, 1.0], [5.0, 1.0]]
    assert (embedded.usage.input_tokens, embedded.usage.output_tokens) == (3, 0)
    assert summary.text == "a: text" and summary.usage.output_tokens == 3
    assert generated.text == "hi/9" and generated.usage.total_tokens == 7
    (_, sent, remaining), _, (_, unscoped, default_remaining) = server.calls
    assert sent["x-graphmesh-run-id"] == "run-1"
    assert sent["x-graphmesh-task-id"] == "parent/t1"
    assert sent["x-graphmesh-tenant"] == "acme"
    assert remaining is not None and 25 < remaining <= 31  # the task's timeout, not 300 s
    assert "x-graphmesh-run-id" not in unscoped
    assert default_remaining is not None and 290 < default_remaining <= 301


@pytest.mark.parametrize(
    ("task_id", "sent"),
    [("tâche", "t%C3%A2che"), ("a\nb", "a%0Ab"), ("p/q r", "p/q r"), ("x" * 5000, "x" * 512)],
)
async def test_ids_in_any_script_or_length_travel_as_valid_metadata(
    servers: Any, task_id: str, sent: str
) -> None:
    server, address, _ = await servers("a")
    async with client(f"hf:={address}") as models:
        with model_scope(run_id="r", task_id=task_id, tenant="ténant", timeout=5):
            await models.summarize("hf:m", "x")
    ((_, metadata, _),) = server.calls
    assert metadata["x-graphmesh-task-id"] == sent
    assert metadata["x-graphmesh-tenant"] == "t%C3%A9nant"


async def test_a_task_whose_timeout_is_spent_sends_a_call_that_expires(servers: Any) -> None:
    _, address, _ = await servers("slow", delay=0.5)
    async with client(f"hf:={address}") as models:
        with model_scope(run_id="r", task_id="t", tenant=None, timeout=0.1):
            with pytest.raises(ModelError, match="DEADLINE_EXCEEDED") as caught:
                await models.summarize("hf:m", "x")
    assert caught.value.retryable is True


async def test_usage_is_metered_per_task_and_summed_per_run(servers: Any) -> None:
    _, address, _ = await servers("a")
    graph = TaskGraph()
    graph.add_task(TextSummaryTask(id="sum", defaults={"model": "hf:m", "text": "t"}))
    graph.add_task(TextEmbeddingTask(id="emb", defaults={"model": "hf:e", "text": "a b c d"}))
    async with client(f"hf:={address}") as models:
        result = await TaskGraphRunner(graph, models=models).run()
    assert result.ok, result.error
    assert result.tasks["sum"].usage.input_tokens == 7
    assert result.tasks["sum"].usage.output_tokens == 3
    assert result.tasks["emb"].usage.input_tokens == 4
    assert (result.usage.input_tokens, result.usage.output_tokens) == (11, 3)
    assert result.usage.cost_usd is None  # no price for hf: models


# -- load balancing and failover -----------------------------------------------------------
async def test_an_idle_pool_takes_turns_and_a_busy_replica_is_passed_over(servers: Any) -> None:
    a, address_a, _ = await servers("a")
    b, address_b, _ = await servers("b")
    async with client(f"hf:={address_a},{address_b}") as models:
        for _ in range(6):
            await models.summarize("hf:m", "x")
        assert (len(a.calls), len(b.calls)) == (3, 3)
        a.delay = 0.3
        slow = asyncio.create_task(models.summarize("hf:m", "x"))
        for _ in range(200):
            if len(a.calls) + len(b.calls) == 7:
                break
            await asyncio.sleep(0.01)
        idle = b if len(a.calls) == 4 else a
        before = len(idle.calls)
        await asyncio.gather(*(models.summarize("hf:m", "x") for _ in range(1)))
        assert len(idle.calls) == before + 1  # least outstanding: not the replica that is busy
        await slow


async def test_a_replica_that_does_not_answer_fails_over_and_is_benched(servers: Any) -> None:
    a, address, _ = await servers("a")
    dead = closed_port()
    async with client(f"hf:={dead},{address}", down_s=60) as models:
        replies = [await models.summarize("hf:m", str(i)) for i in range(5)]
        pool = models.pool("hf:m")
        benched = [r.target for r in pool.replicas if r.down_until > 0]
    assert [r.text for r in replies] == [f"a: {i}" for i in range(5)]
    assert len(a.calls) == 5
    assert benched == [dead]


async def test_a_replica_stopped_mid_run_leaves_the_rest_of_the_calls_to_the_other(
    servers: Any,
) -> None:
    a, address_a, server_a = await servers("a")
    b, address_b, _ = await servers("b")
    async with client(f"hf:={address_a},{address_b}", down_s=60) as models:
        await asyncio.gather(*(models.summarize("hf:m", "x") for _ in range(4)))
        await server_a.stop(None)
        replies = await asyncio.gather(*(models.summarize("hf:m", "y") for _ in range(6)))
    assert {r.text for r in replies} == {"b: y"}
    assert len(a.calls) + len(b.calls) == 10


async def test_when_no_replica_answers_the_error_is_retryable_and_names_the_pool() -> None:
    async with client(f"hf:={closed_port()},{closed_port()}") as models:
        with pytest.raises(ModelError, match=r"no replica of 'hf:' answered \(2 tried\)") as caught:
            await models.summarize("hf:m", "x")
    assert caught.value.retryable is True


async def test_load_model_loads_on_every_replica_of_the_pool(servers: Any) -> None:
    a, address_a, _ = await servers("a")
    b, address_b, _ = await servers("b")
    other, address_other, _ = await servers("other")
    async with client(f"hf:={address_a},{address_b};triton:={address_other}") as models:
        info = await models.load_model("hf:minilm")
    assert info.name == "hf:minilm" and info.dimensions == 2 and info.task_kinds == ("embed",)
    assert [c[0] for c in a.calls] == ["LoadModel"] == [c[0] for c in b.calls]
    assert other.calls == []


# -- the status table --------------------------------------------------------------------
def _abort(code: grpc.StatusCode, message: str, trailers: tuple[tuple[str, str], ...] = ()) -> Any:
    async def abort(context: grpc.aio.ServicerContext) -> None:
        if trailers:
            context.set_trailing_metadata(trailers)
        await context.abort(code, message)

    return abort


@pytest.mark.parametrize(
    ("failure", "retryable", "retry_after", "text"),
    [
        (retry_info_abort(2.5), True, 2.5, "RESOURCE_EXHAUSTED: queue full"),
        (
            _abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", (("retry-after-ms", "1500"),)),
            True,
            1.5,
            "slow down",
        ),
        (_abort(grpc.StatusCode.INVALID_ARGUMENT, "text: too long"), False, None, "text: too long"),
        (_abort(grpc.StatusCode.NOT_FOUND, "no model 'hf:m'"), False, None, "NOT_FOUND"),
        (_abort(grpc.StatusCode.INTERNAL, "bug ref 42"), False, None, "INTERNAL"),
    ],
)
async def test_statuses_map_to_model_errors(
    servers: Any, failure: Any, retryable: bool, retry_after: float | None, text: str
) -> None:
    server, address, _ = await servers("a", fail={"Summarize": failure})
    async with client(f"hf:={address}") as models:
        with pytest.raises(ModelError) as caught:
            await models.summarize("hf:m", "x")
    assert caught.value.retryable is retryable
    assert caught.value.retry_after == retry_after
    assert text in str(caught.value) and "'hf:m'" in str(caught.value)
    assert len(server.calls) == 1  # a refusal is an answer: no failover


async def test_an_unavailable_replica_is_failed_over_not_reported(servers: Any) -> None:
    a, address_a, _ = await servers(
        "a", fail={"Summarize": _abort(grpc.StatusCode.UNAVAILABLE, "draining")}
    )
    _, address_b, _ = await servers("b")
    async with client(f"hf:={address_a},{address_b}") as models:
        replies = [await models.summarize("hf:m", "x") for _ in range(3)]
    assert {r.text for r in replies} == {"b: x"}
    assert len(a.calls) == 1  # benched after the first refusal
