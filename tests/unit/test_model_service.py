"""The ModelService servicer over in-memory backends, through a real grpc.aio server on
loopback: validation naming fields, status codes, usage, batching, overload, streams and
their cancellation, health per model. The packaged models run in the integration tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from graphmesh.model_server.backends.base import LoadOptions, ModelKind
from graphmesh.model_server.backends.memory import EchoChatBackend, HashingEmbeddingBackend
from graphmesh.model_server.registry import ModelRegistry, ModelSource
from graphmesh.model_server.service.config import parse_config
from graphmesh.model_server.service.host import ModelHost
from graphmesh.model_server.service.servicer import SERVICE_NAME, ModelServicer
from graphmesh.services.kit import model_wire
from graphmesh.services.kit.server import GrpcServer, ServiceRegistration
from graphmesh.v1 import model_pb2 as pb
from graphmesh.v1 import model_pb2_grpc

EMBED = "hf:tiny-embed"
CHAT = "hf:tiny-chat"
SLOW_CHAT = "hf:slow-chat"
BROKEN = "hf:broken"


class Backends:
    def __init__(self) -> None:
        self.embedder = HashingEmbeddingBackend(delay=0.05)
        self.chat = EchoChatBackend()
        self.slow = EchoChatBackend(word_delay=0.05)


def _broken(options: LoadOptions) -> HashingEmbeddingBackend:
    raise OSError("weights are missing")


def registry(backends: Backends) -> ModelRegistry:
    return ModelRegistry(
        [
            ModelSource(
                name=EMBED,
                kind=ModelKind.EMBEDDING,
                location="memory",
                load=lambda options: backends.embedder,
            ),
            ModelSource(
                name=CHAT, kind=ModelKind.CHAT, location="memory", load=lambda o: backends.chat
            ),
            ModelSource(
                name=SLOW_CHAT, kind=ModelKind.CHAT, location="memory", load=lambda o: backends.slow
            ),
            ModelSource(name=BROKEN, kind=ModelKind.EMBEDDING, location="memory", load=_broken),
        ],
        aliases={"hf:org/tiny-embed": EMBED},
        allow_local_paths=False,
    )


CONFIG = {
    "models": [
        {
            "name": EMBED,
            "batching": {"max_batch_size": 16, "max_queue_delay_ms": 50, "max_queue_size": 20},
        },
        {"name": CHAT, "batching": {"max_batch_size": 8, "max_queue_delay_ms": 30}},
        {"name": SLOW_CHAT, "batching": {"concurrency": 1, "max_queue_size": 1}},
        {"name": BROKEN},
    ],
    "limits": {"max_texts": 8, "max_text_chars": 100, "max_new_tokens": 64},
}


class Served:
    def __init__(self, channel: grpc.aio.Channel, backends: Backends, host: ModelHost) -> None:
        self.stub = model_pb2_grpc.ModelServiceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)
        self.backends = backends
        self.host = host


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    backends = Backends()
    config = parse_config(CONFIG)
    box: list[GrpcServer] = []

    async def on_state(name: str, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else 2
        await box[0].health.set(name, status)

    async with ModelHost(registry(backends), config, on_state=on_state) as host:
        servicer = ModelServicer(host)
        server = GrpcServer(
            address="127.0.0.1:0",
            services=[
                ServiceRegistration(
                    name=SERVICE_NAME,
                    add=lambda s: model_pb2_grpc.add_ModelServiceServicer_to_server(servicer, s),
                )
            ],
            grace_period=1.0,
        )
        async with server:
            box.append(server)
            await host.preload()
            async with grpc.aio.insecure_channel(server.target) as channel:
                yield Served(channel, backends, host)


async def code_of(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


def field_of(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    from google.rpc import error_details_pb2

    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    return bad.field_violations[0].field


# -- embeddings ---------------------------------------------------------------------------
async def test_embed_returns_vectors_in_order_with_usage(served: Served) -> None:
    reply = await served.stub.Embed(
        pb.EmbedRequest(model=EMBED, texts=["one two", "three", "four five six"], normalize=True)
    )
    expected = served.backends.embedder.embed(["one two", "three", "four five six"])
    for got, want in zip(reply.embeddings, expected, strict=True):
        assert list(got.values) == pytest.approx(want, abs=1e-6)
    assert reply.dimensions == 64
    assert reply.usage.input_tokens == 6
    assert reply.model == EMBED


async def test_concurrent_single_text_calls_share_batches(served: Served) -> None:
    served.backends.embedder.batch_sizes.clear()
    calls = [
        served.stub.Embed(pb.EmbedRequest(model="hf:org/tiny-embed", texts=[f"text {i}"]))
        for i in range(12)
    ]
    replies = await asyncio.gather(*calls)
    assert [r.usage.input_tokens for r in replies] == [2] * 12
    assert max(served.backends.embedder.batch_sizes) > 1
    assert sum(served.backends.embedder.batch_sizes) == 12


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.EmbedRequest(model=EMBED), "texts"),
        (pb.EmbedRequest(texts=["a"]), "model"),
        (pb.EmbedRequest(model="tiny-embed", texts=["a"]), "model"),
        (pb.EmbedRequest(model=EMBED, texts=["a"] * 9), "texts"),
        (pb.EmbedRequest(model=EMBED, texts=["a", "x" * 101]), "texts[1]"),
        (pb.EmbedRequest(model=EMBED, texts=["a", "  "]), "texts[1]"),
    ],
)
async def test_bad_embed_requests_name_the_field(
    served: Served, request_: pb.EmbedRequest, field: str
) -> None:
    error = await code_of(served.stub.Embed(request_))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(error) == field
    assert error.details().startswith(f"{field}:")


async def test_unknown_model_is_not_found_and_wrong_kind_failed_precondition(
    served: Served,
) -> None:
    error = await code_of(served.stub.Embed(pb.EmbedRequest(model="hf:nope", texts=["a"])))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = await code_of(served.stub.Embed(pb.EmbedRequest(model=CHAT, texts=["a"])))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    error = await code_of(served.stub.Embed(pb.EmbedRequest(model="hf:/etc", texts=["a"])))
    assert error.code() == grpc.StatusCode.NOT_FOUND  # local paths are off on this server


async def test_a_model_that_failed_to_load_is_unavailable(served: Served) -> None:
    error = await code_of(served.stub.Embed(pb.EmbedRequest(model=BROKEN, texts=["a"])))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "weights are missing" in error.details()


async def test_overload_is_resource_exhausted_with_a_retry_delay(served: Served) -> None:
    # max_queue_size 20, one batch of 16 runs for 50 ms: 25 texts at once cannot all queue.
    first = served.stub.Embed(pb.EmbedRequest(model=EMBED, texts=[f"a {i}" for i in range(8)]))
    calls = [
        served.stub.Embed(pb.EmbedRequest(model=EMBED, texts=[f"b {i}" for i in range(8)]))
        for _ in range(4)
    ]
    results = await asyncio.gather(first, *calls, return_exceptions=True)
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert errors, "a queue of 20 cannot take 40 texts at once"
    error = errors[0]
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    delay = model_wire.retry_after_of(error)
    assert delay is not None and 0 < delay < 5
    trailers = dict(error.trailing_metadata() or ())
    assert int(trailers[model_wire.RETRY_AFTER_MS]) >= 1
    assert any(isinstance(r, pb.EmbedResponse) for r in results)


# -- generation ---------------------------------------------------------------------------
async def test_generate_reports_text_finish_reason_and_usage(served: Served) -> None:
    reply = await served.stub.Generate(
        pb.GenerateRequest(
            model=CHAT,
            prompt="alpha beta gamma delta",
            params=pb.GenerationParams(max_new_tokens=2),
        )
    )
    assert reply.text == "alpha beta"
    assert reply.finish_reason == pb.FINISH_REASON_LENGTH
    assert reply.usage.input_tokens == 4 and reply.usage.output_tokens == 2
    whole = await served.stub.Generate(pb.GenerateRequest(model=CHAT, prompt="alpha beta"))
    assert whole.finish_reason == pb.FINISH_REASON_STOP


async def test_batches_never_mix_generation_settings(served: Served) -> None:
    served.backends.chat.batch_keys.clear()
    calls = [
        served.stub.Generate(
            pb.GenerateRequest(
                model=CHAT,
                prompt=f"w{i} x y z",
                params=pb.GenerationParams(max_new_tokens=1 + i % 2, temperature=0.1 * (i % 3)),
            )
        )
        for i in range(12)
    ]
    replies = await asyncio.gather(*calls)
    assert [r.text.split()[0] for r in replies] == [f"w{i}" for i in range(12)]
    assert all(len(keys) == 1 for keys in served.backends.chat.batch_keys)
    assert len({k for keys in served.backends.chat.batch_keys for k in keys}) == 6


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (pb.GenerationParams(max_new_tokens=0), "params.max_new_tokens"),
        (pb.GenerationParams(max_new_tokens=65), "params.max_new_tokens"),
        (pb.GenerationParams(temperature=-1), "params.temperature"),
        (pb.GenerationParams(temperature=float("nan")), "params.temperature"),
        (pb.GenerationParams(top_p=0), "params.top_p"),
        (pb.GenerationParams(stop=[""]), "params.stop[0]"),
        (pb.GenerationParams(stop=["s"] * 9), "params.stop"),
    ],
)
async def test_bad_generation_params_name_the_field(
    served: Served, params: pb.GenerationParams, field: str
) -> None:
    error = await code_of(
        served.stub.Generate(pb.GenerateRequest(model=CHAT, prompt="hi", params=params))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(error) == field


async def test_task_rpcs_answer_with_usage(served: Served) -> None:
    summary = await served.stub.Summarize(pb.SummarizeRequest(model=CHAT, text="a long text"))
    assert summary.summary and summary.usage.input_tokens > 3
    rewrite = await served.stub.Rewrite(
        pb.RewriteRequest(model=CHAT, text="some text", instruction="as a pirate")
    )
    assert rewrite.usage.output_tokens > 0
    error = await code_of(served.stub.Rewrite(pb.RewriteRequest(model=CHAT, text="some text")))
    assert field_of(error) == "instruction"
    error = await code_of(served.stub.Translate(pb.TranslateRequest(model=CHAT, text="hola")))
    assert field_of(error) == "target_language"
    answer = await served.stub.AnswerQuestion(
        pb.AnswerQuestionRequest(model=CHAT, question="who?", context="Ada wrote it")
    )
    assert answer.usage.input_tokens > 0


# -- streams ------------------------------------------------------------------------------
async def test_stream_sends_pieces_then_finish_and_usage(served: Served) -> None:
    chunks = [
        chunk
        async for chunk in served.stub.GenerateStream(
            pb.GenerateStreamRequest(model=CHAT, prompt="one two three")
        )
    ]
    assert "".join(c.text_delta for c in chunks) == "one two three"
    assert len(chunks) == 4
    assert chunks[-1].finish_reason == pb.FINISH_REASON_STOP
    assert chunks[-1].usage.output_tokens == 3
    assert all(c.finish_reason == pb.FINISH_REASON_UNSPECIFIED for c in chunks[:-1])


async def test_a_cancelled_stream_stops_generating_and_frees_its_slot(served: Served) -> None:
    words = " ".join(f"w{i}" for i in range(60))
    request = pb.GenerateStreamRequest(
        model=SLOW_CHAT, prompt=words, params=pb.GenerationParams(max_new_tokens=60)
    )
    call = served.stub.GenerateStream(request)
    first = await call.read()
    assert first.text_delta == "w0"
    call.cancel()
    # concurrency 1: the next stream gets the slot only once the first generation stopped.
    short = pb.GenerateStreamRequest(model=SLOW_CHAT, prompt="done now")
    chunks = [chunk async for chunk in served.stub.GenerateStream(short)]
    assert "".join(c.text_delta for c in chunks) == "done now"
    assert served.backends.slow.streamed_words[0] < 20  # stopped early, not all 60 words


async def test_a_stream_past_its_deadline_stops_generating(served: Served) -> None:
    words = " ".join(f"w{i}" for i in range(60))
    request = pb.GenerateStreamRequest(
        model=SLOW_CHAT, prompt=words, params=pb.GenerationParams(max_new_tokens=60)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in served.stub.GenerateStream(request, timeout=0.3):
            pass
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    for _ in range(50):
        if served.backends.slow.streamed_words:
            break
        await asyncio.sleep(0.05)
    assert served.backends.slow.streamed_words[0] < 20


async def test_streams_beyond_the_slots_and_queue_are_resource_exhausted(served: Served) -> None:
    words = " ".join(f"w{i}" for i in range(40))
    request = pb.GenerateStreamRequest(model=SLOW_CHAT, prompt=words)
    running = served.stub.GenerateStream(request)
    await running.read()  # holds the one slot
    waiting = served.stub.GenerateStream(request)  # the one queue place
    waiting_read = asyncio.ensure_future(waiting.read())
    await asyncio.sleep(0.1)
    refused = served.stub.GenerateStream(request)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await refused.read()
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    running.cancel()
    waiting.cancel()
    waiting_read.cancel()


# -- lifecycle ----------------------------------------------------------------------------
async def test_health_per_model_follows_load_and_unload(served: Served) -> None:
    def check(name: str) -> object:
        return served.health.Check(health_pb2.HealthCheckRequest(service=name))

    assert (await check(EMBED)).status == health_pb2.HealthCheckResponse.SERVING  # type: ignore[attr-defined]
    unloaded = await served.stub.UnloadModel(pb.UnloadModelRequest(model=EMBED))
    assert unloaded.was_loaded
    assert (await check(EMBED)).status == health_pb2.HealthCheckResponse.NOT_SERVING  # type: ignore[attr-defined]
    error = await code_of(served.stub.Embed(pb.EmbedRequest(model=EMBED, texts=["a"])))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    loaded = await served.stub.LoadModel(pb.LoadModelRequest(model="hf:org/tiny-embed"))
    assert loaded.model.loaded and loaded.model.dimensions == 64
    assert (await check(EMBED)).status == health_pb2.HealthCheckResponse.SERVING  # type: ignore[attr-defined]
    again = await served.stub.UnloadModel(pb.UnloadModelRequest(model=SLOW_CHAT))
    assert again.was_loaded
    assert not (await served.stub.UnloadModel(pb.UnloadModelRequest(model=SLOW_CHAT))).was_loaded


async def test_load_of_unknown_model_is_not_found(served: Served) -> None:
    error = await code_of(served.stub.LoadModel(pb.LoadModelRequest(model="hf:missing")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = await code_of(served.stub.LoadModel(pb.LoadModelRequest(model="openai:gpt-4o")))
    assert error.code() == grpc.StatusCode.NOT_FOUND  # the gateways serve those


async def test_a_triton_model_without_a_reachable_triton_is_unavailable(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPHMESH_TRITON_URL", "127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("GRAPHMESH_TRITON_TIMEOUT_S", "2")
    error = await code_of(served.stub.LoadModel(pb.LoadModelRequest(model="triton:minilm")))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_model_input_errors_become_invalid_argument_naming_the_field() -> None:
    from graphmesh.model_server.backends.errors import ModelInputError
    from graphmesh.model_server.service.servicer import status_for

    status = status_for(ModelInputError("texts[2]", "is not a string"))
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    assert status.details == "texts[2]: is not a string"


async def test_list_models_is_sorted_and_filters_loaded(served: Served) -> None:
    listed = await served.stub.ListModels(pb.ListModelsRequest())
    names = [m.name for m in listed.models]
    assert names == sorted(names) and set(names) == {EMBED, CHAT, SLOW_CHAT, BROKEN}
    loaded = await served.stub.ListModels(pb.ListModelsRequest(loaded_only=True))
    assert {m.name for m in loaded.models} == {EMBED, CHAT, SLOW_CHAT}
    chat = next(m for m in loaded.models if m.name == CHAT)
    assert pb.MODEL_TASK_KIND_SUMMARIZE in chat.task_kinds and chat.context_window == 8192


async def test_metrics_count_batches_and_requests(served: Served) -> None:
    from prometheus_client import REGISTRY

    def value(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"model": EMBED, "version": ""}) or 0.0

    before = value("nv_inference_request_success_total"), value("nv_inference_exec_count_total")
    await asyncio.gather(
        *(served.stub.Embed(pb.EmbedRequest(model=EMBED, texts=[f"t{i}"])) for i in range(5))
    )
    assert value("nv_inference_request_success_total") == before[0] + 5
    assert before[1] < value("nv_inference_exec_count_total") <= before[1] + 5
    assert value("nv_inference_compute_infer_duration_us_total") > 0
    assert (
        REGISTRY.get_sample_value(
            "graphmesh_model_batch_size_count", {"model": EMBED, "version": ""}
        )
        or 0
    ) > 0
    assert threading.active_count() < 100
