"""The de-quantized GGUF cache: built once, reused, rebuilt when damaged or stale.

A tiny randomly initialised Llama stands in for the de-quantized model (what transformers
hands back from a GGUF file is an ordinary model like it); the packaged SmolLM2 goes through
the same code in the integration tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from transformers import LlamaConfig, LlamaForCausalLM

from graphmesh.model_server.backends import gguf_cache


class FakeTokenizer:
    def save_pretrained(self, directory: Path) -> None:
        (Path(directory) / "tokenizer.json").write_text("{}", encoding="utf-8")


class Loader:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> tuple[Any, Any]:
        self.calls += 1
        config = LlamaConfig(
            vocab_size=64,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
        )
        model = LlamaForCausalLM(config)
        model.hf_quantizer = object()  # as a GGUF load leaves it: refuses save_pretrained
        return model, FakeTokenizer()


@pytest.fixture
def gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(gguf_cache.CACHE_ENV, str(tmp_path / "cache"))
    path = tmp_path / "model.Q4.gguf"
    path.write_bytes(b"GGUF fake weights")
    return path


def test_the_second_use_reads_the_cache_without_loading(gguf: Path) -> None:
    load = Loader()
    first = gguf_cache.cached(gguf, load)
    assert first == gguf_cache.entry_for(gguf)
    assert first.parent == gguf.parent / "cache"
    assert gguf_cache.is_complete(first) and (first / "config.json").is_file()
    assert list(first.glob("*.safetensors"))
    assert gguf_cache.cached(gguf, load) == first
    assert load.calls == 1
    # the entry loads back as an ordinary checkpoint
    restored = LlamaForCausalLM.from_pretrained(first, local_files_only=True)
    assert restored.config.hidden_size == 16
    assert not list(first.parent.glob(".*"))  # no staging directory left behind


def test_a_damaged_entry_is_rebuilt(gguf: Path) -> None:
    load = Loader()
    entry = gguf_cache.cached(gguf, load)
    for weights in entry.glob("*.safetensors"):
        weights.write_bytes(b"not safetensors")
    assert gguf_cache.cached(gguf, load) == entry
    assert load.calls == 2
    (entry / gguf_cache.MARKER).unlink()  # an interrupted write
    gguf_cache.cached(gguf, load)
    assert load.calls == 3 and gguf_cache.is_complete(entry)


def test_a_changed_file_gets_a_new_entry(gguf: Path) -> None:
    load = Loader()
    entry = gguf_cache.cached(gguf, load)
    stat = gguf.stat()
    os.utime(gguf, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert gguf_cache.cached(gguf, load) != entry
    assert load.calls == 2


def test_a_failed_load_leaves_no_entry(gguf: Path) -> None:
    def fail() -> tuple[Any, Any]:
        raise OSError("unreadable")

    with pytest.raises(OSError, match="unreadable"):
        gguf_cache.cached(gguf, fail)
    assert not gguf_cache.entry_for(gguf).exists()
