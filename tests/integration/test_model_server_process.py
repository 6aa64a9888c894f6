"""A real ``graphmesh serve model-server`` process with the packaged models, over gRPC on
loopback: embeddings equal the in-process model's, generation and streaming, cancellation,
errors, health, reflection, metrics, and a SIGTERM that drains calls in flight.

One server (both models) serves the module; the drain test starts its own embed-only one.
Generation stays short: SmolLM2-135M makes a few dozen tokens/s on a small CPU.
"""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from support.model_server import MINILM, SMOLLM2, model_server_process

from graphmesh.model_server.backends import gguf_cache, transformers_backend
from graphmesh.model_server.backends.base import ChatMessage, FinishReason, Sampling
from graphmesh.model_server.backends.packaged import smollm2_gguf
from graphmesh.model_server.registry import ModelRegistry
from graphmesh.v1 import model_pb2 as pb
from graphmesh.v1 import model_pb2_grpc

pytestmark = pytest.mark.slow

CONFIG = f"""
metrics_listen = "127.0.0.1:0"
grace_period = 5.0
[[models]]
name = "{MINILM}"
device = "cpu"
[models.batching]
max_batch_size = 32
max_queue_delay_ms = 5
[[models]]
name = "{SMOLLM2}"
device = "cpu"
[models.batching]
max_batch_size = 4
concurrency = 1
"""
SENTENCES = [
    "The Eiffel Tower is in Paris.",
    "A cat sat on the mat.",
    "Quantum computers use qubits.",
    "graphmesh runs task graphs as gRPC services.",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The address of a server with both packaged models loaded, and its metrics address."""
    directory = tmp_path_factory.mktemp("model-server")
    with model_server_process(directory, CONFIG, ready_models=2) as started:
        assert started.metrics is not None
        yield started.address, started.metrics


@pytest.fixture
async def stub(server: tuple[str, str]) -> AsyncIterator[model_pb2_grpc.ModelServiceStub]:
    async with grpc.aio.insecure_channel(server[0]) as channel:
        yield model_pb2_grpc.ModelServiceStub(channel)


async def test_embeddings_equal_the_in_process_model(
    stub: model_pb2_grpc.ModelServiceStub,
) -> None:
    replies = await asyncio.gather(
        *(stub.Embed(pb.EmbedRequest(model=MINILM, texts=[s], normalize=True)) for s in SENTENCES)
    )
    local = ModelRegistry().embedder(MINILM).embed_counted(SENTENCES)
    for reply, expected in zip(replies, local, strict=True):
        assert reply.dimensions == 384
        assert list(reply.embeddings[0].values) == pytest.approx(expected.vector, abs=1e-5)
        assert reply.usage.input_tokens == expected.usage.input_tokens > 5


async def test_generate_and_stream_agree_with_usage(stub: model_pb2_grpc.ModelServiceStub) -> None:
    params = pb.GenerationParams(max_new_tokens=12)
    prompt = "What is the capital of France?"
    whole = await stub.Generate(pb.GenerateRequest(model=SMOLLM2, prompt=prompt, params=params))
    assert "Paris" in whole.text
    assert whole.usage.input_tokens > 10 and 0 < whole.usage.output_tokens <= 12
    chunks = [
        chunk
        async for chunk in stub.GenerateStream(
            pb.GenerateStreamRequest(model=SMOLLM2, prompt=prompt, params=params)
        )
    ]
    assert len(chunks) > 3  # token by token, not one piece at the end
    assert "".join(c.text_delta for c in chunks).strip() == whole.text
    assert chunks[-1].usage.input_tokens == whole.usage.input_tokens
    assert chunks[-1].finish_reason in (pb.FINISH_REASON_STOP, pb.FINISH_REASON_LENGTH)


async def test_a_cancelled_stream_frees_the_only_slot(
    stub: model_pb2_grpc.ModelServiceStub,
) -> None:
    long = pb.GenerateStreamRequest(
        model=SMOLLM2,
        prompt="Write a very long story about a dragon, in many chapters.",
        params=pb.GenerationParams(max_new_tokens=1500),
    )
    call = stub.GenerateStream(long)
    await call.read()
    await call.read()
    call.cancel()
    started = time.monotonic()
    short = pb.GenerateStreamRequest(
        model=SMOLLM2, prompt="Say hi", params=pb.GenerationParams(max_new_tokens=4)
    )
    chunks = [chunk async for chunk in stub.GenerateStream(short, timeout=60)]
    assert chunks[-1].usage.output_tokens <= 4
    # 1500 tokens take well over a minute here; the slot came back long before that.
    assert time.monotonic() - started < 30


async def test_errors_have_their_codes(stub: model_pb2_grpc.ModelServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Embed(pb.EmbedRequest(model="hf:no-such-model", texts=["a"]))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Embed(pb.EmbedRequest(model=MINILM, texts=[]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "texts" in (caught.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Generate(
            pb.GenerateRequest(
                model=SMOLLM2, prompt="hi", params=pb.GenerationParams(temperature=9)
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "params.temperature" in (caught.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Generate(pb.GenerateRequest(model=MINILM, prompt="hi"))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_health_reflection_and_list(server: tuple[str, str]) -> None:
    async with grpc.aio.insecure_channel(server[0]) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "graphmesh.v1.ModelService", MINILM, SMOLLM2):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
        listed = await model_pb2_grpc.ModelServiceStub(channel).ListModels(
            pb.ListModelsRequest(loaded_only=True)
        )
        assert [m.name for m in listed.models] == sorted([MINILM, SMOLLM2])
    with grpc.insecure_channel(server[0]) as sync_channel:
        services = ProtoReflectionDescriptorDatabase(sync_channel).get_services()
    assert "graphmesh.v1.ModelService" in services


def test_sigterm_drains_calls_in_flight(tmp_path: Path) -> None:
    config = f'grace_period = 60.0\n[[models]]\nname = "{MINILM}"\ndevice = "cpu"\n'
    with model_server_process(tmp_path, config, ready_models=1) as started:
        process, address = started.process, started.address
        finished: list[float] = []

        async def one(stub: model_pb2_grpc.ModelServiceStub, i: int) -> pb.EmbedResponse:
            # 4 texts of ~120 tokens each: 16 calls are a few seconds of work on a CPU
            texts = [f"call {i} sentence {j} " * 30 for j in range(4)]
            reply = await stub.Embed(pb.EmbedRequest(model=MINILM, texts=texts))
            finished.append(time.monotonic())
            return reply

        async def burst() -> tuple[float, list[object]]:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = model_pb2_grpc.ModelServiceStub(channel)
                await stub.Embed(pb.EmbedRequest(model=MINILM, texts=["connect first"]))
                calls = [asyncio.ensure_future(one(stub, i)) for i in range(16)]
                await asyncio.sleep(0.5)  # every call has reached its handler
                signalled = time.monotonic()
                process.send_signal(signal.SIGTERM)
                return signalled, await asyncio.gather(*calls, return_exceptions=True)

        signalled, results = asyncio.run(burst())
        assert process.wait(timeout=30) == 0
        assert process.stdout is not None
        output = process.stdout.read()
        assert "SIGTERM, draining" in output and "stopped" in output
    failed = [r for r in results if not isinstance(r, pb.EmbedResponse)]
    assert not failed, failed[:2]
    assert max(finished) > signalled  # calls were still running when the signal came


def test_the_chat_model_loads_from_the_gguf_cache_the_second_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gguf = smollm2_gguf()
    transformers_backend.TransformersChatBackend.from_directory(gguf.parent, gguf_file=gguf.name)
    entry = gguf_cache.entry_for(gguf)
    assert gguf_cache.is_complete(entry)

    def no_dequantizing(path: Path, name: str) -> object:
        raise AssertionError("de-quantized again instead of reading the cache")

    monkeypatch.setattr(transformers_backend, "_load_gguf", no_dequantizing)
    again = transformers_backend.TransformersChatBackend.from_directory(
        gguf.parent, gguf_file=gguf.name
    )
    assert again.loaded_from == entry
    conversation = [ChatMessage(role="user", content="What is the capital of France?")]
    pieces: list[str] = []
    cancelled = again.stream(
        conversation, Sampling(max_new_tokens=200), pieces.append, lambda: len(pieces) >= 3
    )
    assert cancelled.finish_reason is FinishReason.CANCELLED
    assert cancelled.usage.output_tokens <= 5 and 3 <= len(pieces) <= 5


def test_metrics_are_exposed_under_triton_names(server: tuple[str, str]) -> None:
    async def embed() -> None:
        async with grpc.aio.insecure_channel(server[0]) as channel:
            stub = model_pb2_grpc.ModelServiceStub(channel)
            await asyncio.gather(
                *(stub.Embed(pb.EmbedRequest(model=MINILM, texts=[s])) for s in SENTENCES)
            )

    asyncio.run(embed())
    with urllib.request.urlopen(f"http://{server[1]}/metrics", timeout=10) as response:
        text = response.read().decode()
    labels = f'model="{MINILM}",version=""'
    for name in (
        "nv_inference_request_success_total",
        "nv_inference_exec_count_total",
        "nv_inference_queue_duration_us_total",
        "nv_inference_compute_infer_duration_us_total",
        "graphmesh_model_batch_size_count",
    ):
        assert f"{name}{{{labels}" in text, name
