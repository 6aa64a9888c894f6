"""ModelRegistry: name resolution, aliases, local directories, load-once, unload.

Sources here load the in-memory backends, so nothing imports torch; the real packaged
models are exercised in ``tests/integration/test_local_models.py``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from graphmesh.model_server.backends.base import (
    Backend,
    ChatBackend,
    ChatMessage,
    EmbeddingBackend,
    LoadOptions,
    ModelKind,
)
from graphmesh.model_server.backends.memory import EchoChatBackend, HashingEmbeddingBackend
from graphmesh.model_server.registry import (
    ModelKindError,
    ModelLoadError,
    ModelNotFoundError,
    ModelRegistry,
    ModelSource,
)


class CountingLoader:
    """A loader that is slow enough for concurrent callers to overlap, and counts its calls."""

    def __init__(self, make: type[HashingEmbeddingBackend] | type[EchoChatBackend]) -> None:
        self.calls = 0
        self._make = make
        self._lock = threading.Lock()

    def __call__(self, options: LoadOptions) -> HashingEmbeddingBackend | EchoChatBackend:
        with self._lock:
            self.calls += 1
            self.options = options
        time.sleep(0.05)
        return self._make()


@pytest.fixture
def loaders() -> dict[str, CountingLoader]:
    return {
        "embed": CountingLoader(HashingEmbeddingBackend),
        "chat": CountingLoader(EchoChatBackend),
    }


@pytest.fixture
def registry(loaders: dict[str, CountingLoader]) -> ModelRegistry:
    sources = [
        ModelSource(
            name="hf:tiny-embed", kind=ModelKind.EMBEDDING, location="memory", load=loaders["embed"]
        ),
        ModelSource(
            name="hf:tiny-chat", kind=ModelKind.CHAT, location="memory", load=loaders["chat"]
        ),
    ]
    return ModelRegistry(sources, aliases={"hf:org/tiny-embed": "hf:tiny-embed"})


def write_config(directory: Path, architecture: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = {"architectures": [architecture], "model_type": "test"}
    (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory


def test_packaged_models_and_their_aliases_resolve_without_loading() -> None:
    registry = ModelRegistry()
    minilm = registry.resolve("hf:all-MiniLM-L6-v2")
    assert minilm.kind is ModelKind.EMBEDDING
    assert registry.resolve("hf:sentence-transformers/all-MiniLM-L6-v2") is minilm
    smol = registry.resolve("hf:HuggingFaceTB/SmolLM2-135M-Instruct")
    assert (smol.name, smol.kind) == ("hf:SmolLM2-135M-Instruct", ModelKind.CHAT)
    entries = {entry.name: entry for entry in registry.list()}
    assert set(entries) == {"hf:all-MiniLM-L6-v2", "hf:SmolLM2-135M-Instruct"}
    assert not any(entry.loaded for entry in entries.values())
    assert entries["hf:SmolLM2-135M-Instruct"].aliases == (
        "hf:HuggingFaceTB/SmolLM2-135M-Instruct",
    )


@pytest.mark.parametrize("name", ["hf:no-such-model", "openai:gpt-4o", "all-MiniLM-L6-v2"])
def test_unknown_names_fail_naming_the_model_and_the_known_ones(name: str) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        ModelRegistry().resolve(name)
    message = str(caught.value)
    assert repr(name) in message
    assert "hf:all-MiniLM-L6-v2" in message and "hf:SmolLM2-135M-Instruct" in message
    assert caught.value.name == name


def test_concurrent_first_uses_load_the_model_once(
    registry: ModelRegistry, loaders: dict[str, CountingLoader]
) -> None:
    names = ["hf:tiny-embed", "hf:org/tiny-embed"] * 4
    with ThreadPoolExecutor(8) as pool:
        backends = list(pool.map(registry.embedder, names))
    assert loaders["embed"].calls == 1
    assert all(backend is backends[0] for backend in backends)
    assert isinstance(backends[0], EmbeddingBackend)
    assert [e.loaded for e in registry.list()] == [True, False]


def test_asking_a_model_for_the_other_capability_is_a_kind_error(registry: ModelRegistry) -> None:
    with pytest.raises(
        ModelKindError, match="'hf:tiny-embed' is an embedding model, not a chat model"
    ):
        registry.chat_model("hf:tiny-embed")
    assert isinstance(registry.chat_model("hf:tiny-chat"), ChatBackend)


def test_unload_frees_the_model_and_the_next_use_loads_it_again(
    registry: ModelRegistry, loaders: dict[str, CountingLoader]
) -> None:
    assert registry.unload("hf:tiny-chat") is False
    registry.chat_model("hf:tiny-chat")
    assert registry.unload("hf:tiny-chat") is True
    assert registry.unload("hf:tiny-chat") is False
    registry.chat_model("hf:tiny-chat")
    assert loaders["chat"].calls == 2


def test_a_failed_load_is_retried_on_the_next_use() -> None:
    attempts: list[int] = []

    def flaky(options: LoadOptions) -> HashingEmbeddingBackend:
        attempts.append(1)
        if len(attempts) == 1:
            raise ModelLoadError("disk hiccup")
        return HashingEmbeddingBackend()

    source = ModelSource(name="hf:flaky", kind=ModelKind.EMBEDDING, location="memory", load=flaky)
    registry = ModelRegistry([source], aliases={})
    with pytest.raises(ModelLoadError, match="disk hiccup"):
        registry.embedder("hf:flaky")
    assert registry.embedder("hf:flaky").dimensions == 64


@pytest.mark.parametrize(
    ("architecture", "kind"),
    [
        ("BertModel", ModelKind.EMBEDDING),
        ("LlamaForCausalLM", ModelKind.CHAT),
        ("GPT2LMHeadModel", ModelKind.CHAT),
        ("T5ForConditionalGeneration", ModelKind.CHAT),
    ],
)
def test_local_directories_are_typed_by_their_config(
    tmp_path: Path, architecture: str, kind: ModelKind
) -> None:
    directory = write_config(tmp_path / "model", architecture)
    source = ModelRegistry().resolve(f"hf:{directory}")
    assert (source.kind, source.location) == (kind, str(directory.resolve()))


def test_an_explicit_kind_overrides_a_local_config(tmp_path: Path) -> None:
    directory = write_config(tmp_path / "model", "BertModel")
    registry = ModelRegistry()
    source = registry.resolve(f"hf:{directory}", ModelKind.CHAT)
    assert source.kind is ModelKind.CHAT
    assert f"hf:{directory.resolve()}" in {entry.name for entry in registry.list()}


def test_a_gguf_file_or_a_directory_holding_one_is_a_chat_model(tmp_path: Path) -> None:
    (tmp_path / "tiny.gguf").write_bytes(b"GGUF")
    registry = ModelRegistry()
    assert registry.resolve(f"hf:{tmp_path / 'tiny.gguf'}").kind is ModelKind.CHAT
    assert registry.resolve(f"hf:{tmp_path}").kind is ModelKind.CHAT
    with pytest.raises(ModelKindError):
        registry.resolve(f"hf:{tmp_path}", ModelKind.EMBEDDING)


def test_a_directory_without_model_files_cannot_load(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        ModelRegistry().resolve(f"hf:{tmp_path}")


def test_local_paths_can_be_switched_off(tmp_path: Path) -> None:
    directory = write_config(tmp_path / "model", "BertModel")
    with pytest.raises(ModelNotFoundError):
        ModelRegistry(allow_local_paths=False).resolve(f"hf:{directory}")


def test_in_memory_backends_behave_like_real_ones() -> None:
    embedder = HashingEmbeddingBackend(dimensions=32)
    vectors = embedder.embed(["the cat sat", "the cat sat down", "stock prices fell"])
    assert all(len(v) == 32 and math.isclose(sum(x * x for x in v), 1.0) for v in vectors)
    similarity = [sum(a * b for a, b in zip(vectors[0], v, strict=True)) for v in vectors[1:]]
    assert similarity[0] > similarity[1]
    chat = EchoChatBackend()
    replies = chat.chat([[ChatMessage(role="user", content="one two three")]], max_new_tokens=2)
    assert replies == ["one two"]
    assert (embedder.batch_sizes, chat.batch_sizes) == ([3], [1])


def test_load_options_reach_the_loader_by_canonical_name(
    registry: ModelRegistry, loaders: dict[str, CountingLoader]
) -> None:
    registry.set_options("hf:org/tiny-embed", LoadOptions(device="cpu", dtype="bfloat16"))
    registry.embedder("hf:tiny-embed")
    assert loaders["embed"].options == LoadOptions(device="cpu", dtype="bfloat16")


@pytest.mark.parametrize(
    ("field", "value"), [("device", "gpu"), ("device", "cuda:x"), ("dtype", "int3")]
)
def test_bad_load_options_name_the_field(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field):
        LoadOptions(**{field: value})


def test_a_hub_id_in_the_local_hub_cache_loads_by_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--someorg--tiny-encoder"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123", encoding="utf-8")
    write_config(snapshot, "BertModel")
    registry = ModelRegistry([], aliases={})
    source = registry.resolve("hf:someorg/tiny-encoder")
    assert source.name == "hf:someorg/tiny-encoder"
    assert source.kind is ModelKind.EMBEDDING
    assert source.location == str(snapshot.resolve())
    with pytest.raises(ModelNotFoundError):
        registry.resolve("hf:someorg/not-cached")
    with pytest.raises(ModelNotFoundError):
        ModelRegistry([], aliases={}, allow_local_paths=False).resolve("hf:someorg/tiny-encoder")


def test_an_allowed_name_loads_even_when_callers_may_not_name_paths(tmp_path: Path) -> None:
    directory = write_config(tmp_path / "encoder", "BertModel")
    registry = ModelRegistry([], aliases={}, allow_local_paths=False)
    with pytest.raises(ModelNotFoundError):
        registry.resolve(f"hf:{directory}")
    registry.allow(f"hf:{directory}")
    assert registry.resolve(f"hf:{directory}").kind is ModelKind.EMBEDDING
    with pytest.raises(ModelNotFoundError):
        registry.resolve(f"hf:{tmp_path}")


def test_models_load_one_at_a_time_in_a_process() -> None:
    """transformers' from_pretrained is not thread-safe: two loads at once once left a
    model's weights on the meta device. Different models' loads never overlap."""
    inside = 0
    most = 0
    guard = threading.Lock()

    def slow_load(backend: Backend) -> Callable[[LoadOptions], Backend]:
        def load(_options: LoadOptions) -> Backend:
            nonlocal inside, most
            with guard:
                inside += 1
                most = max(most, inside)
            time.sleep(0.05)
            with guard:
                inside -= 1
            return backend

        return load

    sources = [
        ModelSource(
            name=f"hf:model-{n}",
            kind=ModelKind.EMBEDDING,
            location="memory",
            load=slow_load(HashingEmbeddingBackend(dimensions=4)),
        )
        for n in range(4)
    ]
    registry = ModelRegistry(sources, aliases={})
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda s: registry.load(s.name), sources))
    assert most == 1
    assert all(entry.loaded for entry in registry.list())
