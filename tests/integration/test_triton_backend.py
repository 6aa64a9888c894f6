"""The Triton backend against the real ``tritonserver`` of the nvidia-pytriton wheel.

The server runs in explicit model-control mode over a repository the tests create: ``minilm``
(the packaged all-MiniLM-L6-v2 on the python backend, loaded at startup) and ``shout`` (a
deterministic text-generation model, loaded by the tests). Embeddings must equal the
in-process model's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest
from support.triton import TritonProcess, free_port, triton_server
from transformers import AutoTokenizer

from graphmesh.model_server.backends.base import ChatMessage, FinishReason, ModelKind, Sampling
from graphmesh.model_server.backends.errors import (
    ModelInputError,
    ModelKindError,
    ModelLoadError,
    ModelNotFoundError,
    ModelUnavailableError,
)
from graphmesh.model_server.backends.packaged import minilm_directory
from graphmesh.model_server.backends.transformers_backend import TransformersEmbeddingBackend
from graphmesh.model_server.backends.triton import (
    TritonChatBackend,
    TritonConfig,
    TritonEmbeddingBackend,
    TritonModels,
)
from graphmesh.model_server.backends.triton_client import TritonClient, read_signature
from graphmesh.model_server.registry import ModelRegistry
from graphmesh.model_server.service.config import parse_config
from graphmesh.model_server.service.host import ModelHost
from graphmesh.model_server.service.servicer import SERVICE_NAME, ModelServicer
from graphmesh.services.kit.server import GrpcServer, ServiceRegistration
from graphmesh.v1 import model_pb2 as pb
from graphmesh.v1 import model_pb2_grpc

pytestmark = pytest.mark.slow

SENTENCES = [
    "The cat sat on the mat.",
    "Graphs of tasks run as a mesh of services.",
    "Ünïcödé façade — 日本語のテキスト 🚀",
    "",
    "word " * 400,  # past the model's 256 tokens: truncated alike on both sides
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    """One server for the module, MiniLM loaded at startup, ``shout`` in the repository only."""
    with triton_server(
        tmp_path_factory.mktemp("triton"), ["minilm", "shout"], load=["minilm"]
    ) as running:
        yield running


@pytest.fixture(scope="module")
def models(server: TritonProcess) -> Iterator[TritonModels]:
    with TritonModels(TritonConfig(url=server.url, timeout_s=60)) as triton:
        yield triton


@pytest.fixture(scope="module")
def inprocess() -> TransformersEmbeddingBackend:
    return TransformersEmbeddingBackend.from_directory(minilm_directory())


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def test_server_is_live_and_metadata_makes_an_embedding_backend(models: TritonModels) -> None:
    assert models.live()
    assert models.ready("minilm")
    backend = models.load("triton:minilm")
    assert isinstance(backend, TritonEmbeddingBackend)
    assert backend.dimensions == 384
    assert backend.max_input_tokens == 256  # the config's parameters
    assert backend.signature.text_input == "text"
    assert backend.signature.output == "embedding"
    assert backend.signature.max_batch_size == 64
    assert backend.signature.counts == ("input_tokens",)
    assert backend.ready()
    assert sorted(models.names()) == ["triton:minilm", "triton:shout"]


def test_embeddings_equal_the_in_process_model(
    models: TritonModels, inprocess: TransformersEmbeddingBackend
) -> None:
    backend = models.load("triton:minilm")
    assert isinstance(backend, TritonEmbeddingBackend)
    remote = np.array(backend.embed(SENTENCES))
    local = np.array(inprocess.embed(SENTENCES))
    assert remote.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(remote, local, atol=1e-5)
    assert not np.allclose(remote[0], remote[1])


def test_more_texts_than_the_model_batch_are_split_and_kept_in_order(
    models: TritonModels, inprocess: TransformersEmbeddingBackend
) -> None:
    backend = models.load("triton:minilm")
    assert isinstance(backend, TritonEmbeddingBackend)
    texts = [f"sentence number {i} about {'graphs' if i % 2 else 'models'}" for i in range(70)]
    remote = np.array(backend.embed(texts))
    np.testing.assert_allclose(remote, np.array(inprocess.embed(texts)), atol=1e-5)
    assert backend.embed([]) == []


def test_concurrent_callers_from_worker_threads_get_their_own_vectors(
    models: TritonModels, inprocess: TransformersEmbeddingBackend
) -> None:
    backend = models.load("triton:minilm")
    assert isinstance(backend, TritonEmbeddingBackend)
    texts = [f"caller {i} asks about {word}" for i, word in enumerate("abcdefghijklmnop")]
    with ThreadPoolExecutor(max_workers=8) as pool:
        vectors = list(pool.map(lambda text: backend.embed([text])[0], texts))
    np.testing.assert_allclose(np.array(vectors), np.array(inprocess.embed(texts)), atol=1e-5)


def test_token_counts_the_models_report_come_back_per_text(models: TritonModels) -> None:
    embedder = models.load("triton:minilm")
    assert isinstance(embedder, TritonEmbeddingBackend)
    texts = ["hello world", "word " * 400]
    tokenizer = AutoTokenizer.from_pretrained(minilm_directory(), local_files_only=True)
    expected = [len(tokenizer(t, truncation=True, max_length=256)["input_ids"]) for t in texts]
    counted = models.infer_counted(embedder.signature, texts)
    assert [(inp, out) for _, inp, out in counted] == [(expected[0], 0), (256, 0)]

    chat = models.load("triton:shout")
    assert isinstance(chat, TritonChatBackend)
    assert chat.signature.counts == ("input_tokens", "output_tokens")
    counted = models.infer_counted(chat.signature, ["a b c d", "e"], max_tokens=2)
    assert [(row[0], inp, out) for row, inp, out in counted] == [(b"A B", 4, 2), (b"E", 1, 1)]
    models.unload("triton:shout")


async def test_async_client_reads_signature_and_infers(server: TritonProcess) -> None:
    async with TritonClient(server.url) as client:
        assert await client.server_live()
        signature = await client.signature("minilm")
        assert signature.kind is ModelKind.EMBEDDING
        rows = await client.infer(signature, ["one", "two", "three"])
    assert rows.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


def test_explicit_mode_load_chat_unload_and_reload(models: TritonModels) -> None:
    assert not models.ready("shout")  # in the repository, not loaded at startup
    backend = models.load("triton:shout")
    assert isinstance(backend, TritonChatBackend)
    assert models.ready("shout")
    assert backend.context_window == 64
    replies = backend.chat([user("hello there world"), user("a b c d e")], max_new_tokens=3)
    assert replies == ["USER: HELLO THERE", "USER: A B"]

    assert models.unload("triton:shout") is True
    assert not models.ready("shout")
    with pytest.raises(ModelUnavailableError, match="not loaded"):
        backend.chat([user("hi")], max_new_tokens=2)
    assert models.unload("triton:shout") is False

    again = models.load("triton:shout")
    assert isinstance(again, TritonChatBackend)
    assert again.chat([user("back again")], max_new_tokens=5) == ["USER: BACK AGAIN ASSISTANT:"]
    models.unload("triton:shout")


def test_unknown_model_is_not_found_and_names_the_known_ones(models: TritonModels) -> None:
    for call in (models.load, models.kind, models.unload):
        with pytest.raises(ModelNotFoundError) as caught:
            call("triton:no-such-model")
        assert caught.value.name == "triton:no-such-model"
        assert "triton:minilm" in caught.value.known


@pytest.mark.parametrize(
    "name", ["triton:../minilm", "triton:a/b", "triton:", "triton:.hidden", "minilm", "triton:x\0"]
)
def test_hostile_model_names_are_invalid_input(models: TritonModels, name: str) -> None:
    with pytest.raises(ModelInputError) as caught:
        models.load(name)
    assert caught.value.field == "model"


def test_bad_requests_are_invalid_input_naming_the_field(models: TritonModels) -> None:
    chat = models.load("triton:shout")
    assert isinstance(chat, TritonChatBackend)
    for budget in (0, -1, 65):
        with pytest.raises(ModelInputError) as caught:
            chat.chat([user("hi")], max_new_tokens=budget)
        assert caught.value.field == "max_new_tokens"
    with pytest.raises(ModelInputError) as caught:
        chat.chat([[]], max_new_tokens=2)
    assert caught.value.field == "messages"
    embedder = models.load("triton:minilm")
    assert isinstance(embedder, TritonEmbeddingBackend)
    with pytest.raises(ModelInputError) as caught:
        embedder.embed(["fine", b"bytes"])  # type: ignore[list-item]
    assert caught.value.field == "texts[1]"
    # What the server itself refuses (an input the model does not have) is invalid input too.
    wrong = replace(embedder.signature, text_input="not_an_input")
    with pytest.raises(ModelInputError, match="not_an_input") as caught:
        models.infer(wrong, ["text"])
    assert caught.value.field == "inputs"
    models.unload("triton:shout")


def test_registry_routes_triton_names(
    models: TritonModels, inprocess: TransformersEmbeddingBackend
) -> None:
    registry = ModelRegistry(sources=[], aliases={}, triton=models)
    vectors = registry.embedder("triton:minilm").embed(SENTENCES[:2])
    np.testing.assert_allclose(
        np.array(vectors), np.array(inprocess.embed(SENTENCES[:2])), atol=1e-5
    )
    with pytest.raises(ModelKindError):
        registry.chat_model("triton:minilm")
    with pytest.raises(ModelNotFoundError):
        registry.load("triton:nothing-here")

    chat = registry.chat_model("triton:shout")
    assert chat.chat([user("via the registry")], max_new_tokens=3) == ["USER: VIA THE"]
    entries = {entry.name: entry for entry in registry.list()}
    assert entries["triton:shout"].loaded and entries["triton:shout"].kind is ModelKind.CHAT
    assert entries["triton:minilm"].location == f"triton {models.config.url}"

    assert registry.unload("triton:shout") is True
    assert not models.ready("shout")
    assert registry.chat_model("triton:shout").chat([user("x y")], max_new_tokens=9) == [
        "USER: X Y ASSISTANT:"
    ]
    registry.unload("triton:shout")


def test_registry_reads_the_server_url_from_the_environment(
    server: TritonProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPHMESH_TRITON_URL", server.url)
    registry = ModelRegistry(sources=[], aliases={})
    source = registry.resolve("triton:minilm", ModelKind.EMBEDDING)
    try:
        assert source.location == f"triton {server.url}"
        assert len(registry.embedder("triton:minilm").embed(["hello"])[0]) == 384
    finally:
        triton = registry._triton
        assert triton is not None
        triton.close()


def test_a_killed_server_is_unavailable(tmp_path: Path) -> None:
    with triton_server(tmp_path, ["shout"], load=["shout"]) as server:
        triton = TritonModels(TritonConfig(url=server.url, timeout_s=5))
        try:
            backend = triton.load("triton:shout")
            assert isinstance(backend, TritonChatBackend)
            assert backend.chat([user("alive")], max_new_tokens=2) == ["USER: ALIVE"]
            server.kill()
            with pytest.raises(ModelUnavailableError, match=server.url):
                backend.chat([user("anyone there")], max_new_tokens=2)
            assert not triton.live()
            assert not triton.ready("shout")
            with pytest.raises(ModelUnavailableError):
                triton.load("triton:shout")
            with pytest.raises(ModelUnavailableError):
                ModelRegistry(sources=[], aliases={}, triton=triton).load("triton:other")
        finally:
            triton.close()
    with pytest.raises(ModelUnavailableError, match="closed"):
        backend.chat([user("after close")], max_new_tokens=2)


def test_config_validates_url_and_timeouts() -> None:
    config = TritonConfig.from_env(
        {"GRAPHMESH_TRITON_URL": "triton.internal:8001", "GRAPHMESH_TRITON_TIMEOUT_S": "2.5"}
    )
    assert (config.url, config.timeout_s, config.load_timeout_s) == (
        "triton.internal:8001",
        2.5,
        300,
    )
    assert TritonConfig.from_env({}).url == "127.0.0.1:8001"
    for url in ("http://host:8001", "host", "host:0", "host:99999", ":8001"):
        with pytest.raises(ValueError, match="GRAPHMESH_TRITON_URL"):
            TritonConfig(url=url)
    with pytest.raises(ValueError, match="timeout_s"):
        TritonConfig(timeout_s=float("nan"))
    with pytest.raises(ValueError, match="GRAPHMESH_TRITON_LOAD_TIMEOUT_S"):
        TritonConfig.from_env({"GRAPHMESH_TRITON_LOAD_TIMEOUT_S": "soon"})


def test_metadata_that_is_neither_kind_cannot_be_served() -> None:
    text = {"name": "t", "datatype": "BYTES", "shape": ["-1", "1"]}
    batched = {"max_batch_size": 4}
    with pytest.raises(ModelLoadError, match="one output"):
        read_signature("m", {"inputs": [text], "outputs": []}, batched)
    with pytest.raises(ModelLoadError, match="FP32"):
        output = {"name": "o", "datatype": "INT8", "shape": ["-1", "3"]}
        read_signature("m", {"inputs": [text], "outputs": [output]}, batched)
    with pytest.raises(ModelLoadError, match="dims"):
        output = {"name": "o", "datatype": "FP32", "shape": ["-1", "3"]}
        read_signature("m", {"inputs": [text], "outputs": [output]}, {"max_batch_size": 0})
    with pytest.raises(ModelLoadError, match="fixed-width"):
        output = {"name": "o", "datatype": "FP32", "shape": ["-1", "-1"]}
        read_signature("m", {"inputs": [text], "outputs": [output]}, batched)


def test_counted_embeddings_completions_and_streams(
    models: TritonModels, inprocess: TransformersEmbeddingBackend
) -> None:
    embedder = models.load("triton:minilm")
    assert isinstance(embedder, TritonEmbeddingBackend)
    counted = embedder.embed_counted(["hello world", "word " * 400])
    np.testing.assert_allclose(
        np.array([e.vector for e in counted]),
        np.array(inprocess.embed(["hello world", "word " * 400])),
        atol=1e-5,
    )
    assert [e.usage.input_tokens for e in counted] == [4, 256]

    chat = models.load("triton:shout")
    assert isinstance(chat, TritonChatBackend)
    done = chat.complete([user("a b c d"), user("e")], Sampling(max_new_tokens=3))
    assert [(c.text, c.finish_reason) for c in done] == [
        ("USER: A B", FinishReason.LENGTH),
        ("USER: E ASSISTANT:", FinishReason.LENGTH),
    ]
    assert [(c.usage.input_tokens, c.usage.output_tokens) for c in done] == [(6, 3), (3, 3)]
    (short,) = chat.complete([user("x")], Sampling(max_new_tokens=9))
    assert (short.text, short.finish_reason) == ("USER: X ASSISTANT:", FinishReason.STOP)
    (stopped,) = chat.complete([user("x y z")], Sampling(max_new_tokens=9, stop=(" Y",)))
    assert (stopped.text, stopped.finish_reason) == ("USER: X", FinishReason.STOP)

    pieces: list[str] = []
    streamed = chat.stream(user("p q"), Sampling(max_new_tokens=9), pieces.append, lambda: False)
    assert pieces == ["USER: P Q ASSISTANT:"] and streamed.text == pieces[0]
    cancelled = chat.stream(user("p q"), Sampling(max_new_tokens=9), pieces.append, lambda: True)
    assert cancelled.finish_reason is FinishReason.CANCELLED and len(pieces) == 1
    models.unload("triton:shout")


# -- through the model server's gRPC ModelService -----------------------------------------


@pytest.fixture
async def service(models: TritonModels) -> AsyncIterator[model_pb2_grpc.ModelServiceStub]:
    """The ModelService over a registry that knows only the Triton server's models."""
    registry = ModelRegistry(sources=[], aliases={}, allow_local_paths=False, triton=models)
    names = [{"name": "triton:minilm"}, {"name": "triton:shout"}]
    config = parse_config({"models": names, "load_on_demand": True})
    async with ModelHost(registry, config) as host:
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
        async with server, grpc.aio.insecure_channel(server.target) as channel:
            yield model_pb2_grpc.ModelServiceStub(channel)


async def test_model_service_serves_triton_models(
    service: model_pb2_grpc.ModelServiceStub,
    models: TritonModels,
    inprocess: TransformersEmbeddingBackend,
) -> None:
    texts = ["The cat sat on the mat.", "Graphs of tasks."]
    reply = await service.Embed(
        pb.EmbedRequest(model="triton:minilm", texts=texts, normalize=True), timeout=60
    )
    vectors = np.array([list(e.values) for e in reply.embeddings])
    np.testing.assert_allclose(vectors, np.array(inprocess.embed(texts)), atol=1e-5)
    assert reply.dimensions == 384
    assert reply.usage.input_tokens > len(texts)

    loaded = await service.LoadModel(pb.LoadModelRequest(model="triton:shout"), timeout=60)
    assert loaded.model.name == "triton:shout"
    assert models.ready("shout")
    params = pb.GenerationParams(max_new_tokens=4)
    generated = await service.Generate(
        pb.GenerateRequest(model="triton:shout", prompt="make it loud", params=params), timeout=60
    )
    assert generated.text and generated.text == generated.text.upper()
    assert generated.usage.output_tokens == 4
    assert generated.finish_reason == pb.FINISH_REASON_LENGTH
    unloaded = await service.UnloadModel(pb.UnloadModelRequest(model="triton:shout"), timeout=60)
    assert unloaded.was_loaded
    assert not models.ready("shout")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.Embed(pb.EmbedRequest(model="triton:no-such-model", texts=["x"]), timeout=60)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.LoadModel(pb.LoadModelRequest(model="triton:../minilm"), timeout=60)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "model" in (caught.value.details() or "")


async def test_model_service_says_unavailable_when_triton_is_down() -> None:
    dead = TritonModels(TritonConfig(url=f"127.0.0.1:{free_port()}", timeout_s=2))
    registry = ModelRegistry(sources=[], aliases={}, allow_local_paths=False, triton=dead)
    config = parse_config({"models": [{"name": "triton:minilm"}], "load_on_demand": True})
    try:
        async with ModelHost(registry, config) as host:
            servicer = ModelServicer(host)
            server = GrpcServer(
                address="127.0.0.1:0",
                services=[
                    ServiceRegistration(
                        name=SERVICE_NAME,
                        add=lambda s: model_pb2_grpc.add_ModelServiceServicer_to_server(
                            servicer, s
                        ),
                    )
                ],
                grace_period=1.0,
            )
            async with server, grpc.aio.insecure_channel(server.target) as channel:
                stub = model_pb2_grpc.ModelServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.Embed(
                        pb.EmbedRequest(model="triton:minilm", texts=["x"]), timeout=30
                    )
                assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        dead.close()
