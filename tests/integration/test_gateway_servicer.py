"""The gateway's ModelService over gRPC, against the loopback fake provider through the real
SDK adapters: every RPC answers with the provider's usage and the price table's cost; every
provider failure maps to its gRPC code with the provider's message and request id, a 429 to
RESOURCE_EXHAUSTED with RetryInfo and ``retry-after-ms``; the caller's deadline bounds the
call; hostile input is refused naming the field."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from support.fake_provider import FakeProvider, Fault
from support.gateway import API_KEY, write_config

from graphmesh.limits import LimitStoreUnavailable
from graphmesh.services.gateway import Gateway, GatewayConfig, Route, open_gateway
from graphmesh.services.gateway.limiting import ModelLimits, RouteLimiter
from graphmesh.services.gateway.memory import MemoryProvider
from graphmesh.services.gateway.servicer import COST_USD, RETRY_AFTER_MS, GatewayServicer
from graphmesh.services.kit.server import GrpcServer, ServiceRegistration
from graphmesh.v1 import model_pb2, model_pb2_grpc

CHAT = "openai:gpt-test"
CLAUDE = "anthropic:claude-test"
EMBED = "openai:embed-test"
PRICES = '\n[prices."openai:gpt-test"]\ninput_per_million = 1000\noutput_per_million = 2000\n'


class Served:
    def __init__(self, stub: model_pb2_grpc.ModelServiceStub, fake: FakeProvider) -> None:
        self.stub = stub
        self.fake = fake


@pytest.fixture(name="served")
async def served_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    monkeypatch.setenv("TEST_PROVIDER_KEY", API_KEY)
    async with FakeProvider.start(api_key=API_KEY) as fake:
        path = write_config(tmp_path / "gateway.toml", fake, dsn=None, requests_per_minute=1000)
        with path.open("a", encoding="utf-8") as config:
            config.write(PRICES)
        async with open_gateway(GatewayConfig.load(path)) as gateway:
            servicer = GatewayServicer(gateway)
            registration = ServiceRegistration(
                name="graphmesh.v1.ModelService", add=servicer.add_to
            )
            async with GrpcServer(address="127.0.0.1:0", services=[registration]) as server:
                async with grpc.aio.insecure_channel(server.target) as channel:
                    yield Served(model_pb2_grpc.ModelServiceStub(channel), fake)


async def test_generate_fills_usage_and_cost(served: Served) -> None:
    call = served.stub.Generate(model_pb2.GenerateRequest(model=CHAT, prompt="three small words"))
    answer = await call
    assert "three small words" in answer.text
    assert answer.finish_reason == model_pb2.FINISH_REASON_STOP
    assert answer.usage.input_tokens > 0 and answer.usage.output_tokens > 0
    cost = dict(await call.trailing_metadata())[COST_USD]
    expected = (answer.usage.input_tokens * 1000 + answer.usage.output_tokens * 2000) / 1e6
    assert float(cost) == pytest.approx(expected)


async def test_every_rpc_answers(served: Served) -> None:
    stub = served.stub
    params = model_pb2.GenerationParams(max_new_tokens=32, system_prompt="be brief")
    embedded = await stub.Embed(
        model_pb2.EmbedRequest(model=EMBED, texts=["a", "b"], normalize=True)
    )
    assert len(embedded.embeddings) == 2 and embedded.dimensions == len(
        embedded.embeddings[0].values
    )
    norm = sum(v * v for v in embedded.embeddings[0].values)
    assert norm == pytest.approx(1.0, rel=1e-4)
    assert embedded.usage.input_tokens == 2
    summary = await stub.Summarize(model_pb2.SummarizeRequest(model=CLAUDE, text="long text"))
    assert "long text" in summary.summary and summary.usage.output_tokens > 0
    rewritten = await stub.Rewrite(
        model_pb2.RewriteRequest(model=CHAT, text="hi", instruction="shout", params=params)
    )
    assert rewritten.text and rewritten.usage.input_tokens > 0
    translated = await stub.Translate(
        model_pb2.TranslateRequest(model=CHAT, text="bonjour", target_language="English")
    )
    assert "bonjour" in translated.text
    answered = await stub.AnswerQuestion(
        model_pb2.AnswerQuestionRequest(model=CLAUDE, question="who?", context="Ada did it.")
    )
    assert "who?" in answered.answer
    listed = await stub.ListModels(model_pb2.ListModelsRequest())
    kinds = {info.name: set(info.task_kinds) for info in listed.models}
    assert set(kinds) == {CHAT, CLAUDE, EMBED}
    assert model_pb2.MODEL_TASK_KIND_EMBED in kinds[EMBED]
    assert model_pb2.MODEL_TASK_KIND_EMBED not in kinds[CLAUDE]
    loaded = await stub.LoadModel(model_pb2.LoadModelRequest(model=CLAUDE))
    assert loaded.model.loaded and loaded.model.provider == "anthropic"
    assert not (await stub.UnloadModel(model_pb2.UnloadModelRequest(model=CHAT))).was_loaded
    # What the provider was sent: the system prompt and the output limit of the params.
    sent = [r for r in served.fake.received if r.path.endswith("/chat/completions")][-2]
    assert sent.body.get("max_completion_tokens", sent.body.get("max_tokens")) == 32


@pytest.mark.parametrize("model", [CHAT, CLAUDE])
async def test_generate_stream(served: Served, model: str) -> None:
    call = served.stub.GenerateStream(
        model_pb2.GenerateStreamRequest(model=model, prompt="one two three four")
    )
    pieces = [piece async for piece in call]
    assert "".join(piece.text_delta for piece in pieces).strip().endswith("one two three four")
    assert pieces[-1].usage.output_tokens > 0
    assert pieces[-1].finish_reason == model_pb2.FINISH_REASON_STOP
    assert await call.code() == grpc.StatusCode.OK
    trailing = dict(await call.trailing_metadata())
    if model == CHAT:  # priced in PRICES; the Claude test model has no price
        assert float(trailing[COST_USD]) > 0
    else:
        assert COST_USD not in trailing


async def status_of(call: Any) -> tuple[grpc.aio.AioRpcError, Any]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value, rpc_status.from_call(caught.value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        (401, grpc.StatusCode.PERMISSION_DENIED),
        (403, grpc.StatusCode.PERMISSION_DENIED),
        (404, grpc.StatusCode.NOT_FOUND),
        (500, grpc.StatusCode.UNAVAILABLE),
        (529, grpc.StatusCode.UNAVAILABLE),
    ],
)
@pytest.mark.parametrize("model", [CHAT, CLAUDE])
async def test_provider_errors_map_to_codes(
    served: Served, model: str, status: int, code: grpc.StatusCode
) -> None:
    served.fake.inject(*(Fault(status=status, message="nope", echo_key=True) for _ in range(3)))
    error, rich = await status_of(
        served.stub.Generate(model_pb2.GenerateRequest(model=model, prompt="x"))
    )
    assert error.code() == code
    assert "nope" in (error.details() or "")
    assert API_KEY not in (error.details() or "")
    assert API_KEY not in str(error.trailing_metadata())
    assert rich is not None and rich.details, "no rich status details"
    info = error_details_pb2.ErrorInfo()
    assert rich.details[0].Unpack(info)
    provider = "openai" if model == CHAT else "anthropic"
    assert info.metadata["provider"] == provider
    assert info.metadata["request_id"] and info.metadata["request_id"] in (error.details() or "")


@pytest.mark.parametrize("model", [CHAT, CLAUDE])
async def test_429_is_resource_exhausted_with_the_delay(served: Served, model: str) -> None:
    served.fake.inject(Fault(status=429, message="slow down", headers={"retry-after": "7"}))
    error, rich = await status_of(
        served.stub.Generate(model_pb2.GenerateRequest(model=model, prompt="x"))
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "slow down" in (error.details() or "")
    assert dict(error.trailing_metadata() or ())[RETRY_AFTER_MS] == "7000"
    infos = [d for d in rich.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    retry = error_details_pb2.RetryInfo()
    infos[0].Unpack(retry)
    assert retry.retry_delay.seconds == 7
    # The pause is shared: the next call is refused by the limiter, without reaching the
    # provider, for about as long.
    seen = len(served.fake.received)
    again, _ = await status_of(
        served.stub.Generate(model_pb2.GenerateRequest(model=model, prompt="x"))
    )
    assert again.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 5000 < int(dict(again.trailing_metadata() or ())[RETRY_AFTER_MS]) <= 7000
    assert len(served.fake.received) == seen


async def test_the_callers_deadline_bounds_the_call(served: Served) -> None:
    served.fake.delay = 2.0
    error, _ = await status_of(
        served.stub.Generate(model_pb2.GenerateRequest(model=CHAT, prompt="x"), timeout=0.3)
    )
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (model_pb2.GenerateRequest(model="", prompt="x"), "model"),
        (model_pb2.GenerateRequest(model=CHAT, prompt=""), "prompt"),
        (model_pb2.GenerateRequest(model=CHAT, prompt="x\x00y"), "NUL"),
        (
            model_pb2.GenerateRequest(
                model=CHAT, prompt="x", params=model_pb2.GenerationParams(max_new_tokens=-5)
            ),
            "max_new_tokens",
        ),
        (
            model_pb2.GenerateRequest(
                model=CHAT, prompt="x", params=model_pb2.GenerationParams(temperature=float("nan"))
            ),
            "temperature",
        ),
        (
            model_pb2.GenerateRequest(
                model=CHAT, prompt="x", params=model_pb2.GenerationParams(top_p=7)
            ),
            "top_p",
        ),
        (
            model_pb2.GenerateRequest(
                model=CHAT, prompt="x", params=model_pb2.GenerationParams(stop=["a"] * 50)
            ),
            "stop",
        ),
    ],
)
async def test_bad_input_names_the_field(served: Served, request_: Any, field: str) -> None:
    seen = len(served.fake.received)
    error, _ = await status_of(served.stub.Generate(request_))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")
    assert len(served.fake.received) == seen


async def test_unknown_models_are_not_found(served: Served) -> None:
    for call in (
        served.stub.Generate(model_pb2.GenerateRequest(model="openai:nope", prompt="x")),
        served.stub.LoadModel(model_pb2.LoadModelRequest(model="hf:other")),
        served.stub.Embed(model_pb2.EmbedRequest(model="x" * 10_000, texts=["a"])),
    ):
        error, _ = await status_of(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_embed_refuses_empty_and_huge_batches(served: Served) -> None:
    for texts in ([], ["a"] * 5000):
        error, _ = await status_of(
            served.stub.Embed(model_pb2.EmbedRequest(model=EMBED, texts=texts))
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "texts" in (error.details() or "")


class DownStore:
    """A limit store whose database is gone."""

    async def take_all(self, **_: object) -> Any:
        raise LimitStoreUnavailable("connection refused")

    async def take(self, **_: object) -> Any:
        raise LimitStoreUnavailable("connection refused")


async def test_an_unreachable_limiter_is_unavailable_and_calls_nothing() -> None:
    provider = MemoryProvider(name="openai")
    limiter = RouteLimiter(
        DownStore(),  # type: ignore[arg-type]
        key="oa/gpt-test",
        limits=ModelLimits(requests_per_minute=10),
    )
    route = Route(provider=provider, model="gpt-test", limiter=limiter, timeout=5.0)
    servicer = GatewayServicer(Gateway({CHAT: route}))
    registration = ServiceRegistration(name="graphmesh.v1.ModelService", add=servicer.add_to)
    async with (
        GrpcServer(address="127.0.0.1:0", services=[registration]) as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        stub = model_pb2_grpc.ModelServiceStub(channel)
        error, _ = await status_of(stub.Generate(model_pb2.GenerateRequest(model=CHAT, prompt="x")))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "rate limiter" in (error.details() or "")
    assert provider.calls == []
