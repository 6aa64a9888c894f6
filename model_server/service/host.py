"""The models a server process holds: loading states, one batcher per model and task,
stream slots; what the gRPC servicer calls, with no gRPC in it.

A model is *ready* once loaded. A call for a known model that is loading, failed to load, or
was never loaded raises :class:`ModelNotReadyError` (UNAVAILABLE) — unless the config's
``load_on_demand`` lets the call load it. Unknown names raise ``ModelNotFoundError``.

Embeds and unary generations go through a :class:`DynamicBatcher` per model (texts of one
model share forward passes; a generation batch only holds requests with equal settings).
Streams cannot share a batch (tokens go to one caller as produced), so each takes one of the
model's ``concurrency`` slots for as long as its generation thread runs; a cancelled stream
stops its generation at the next token and only then frees the slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from graphmesh.model_server.backends.base import (
    ChatBackend,
    ChatMessage,
    Completion,
    Embedded,
    EmbeddingBackend,
    ModelKind,
    Sampling,
)
from graphmesh.model_server.backends.errors import (
    ModelLoadError,
    ModelServerError,
    ModelUnavailableError,
)
from graphmesh.model_server.batcher import DynamicBatcher, QueueFullError
from graphmesh.model_server.registry import LoadedModel, ModelRegistry
from graphmesh.model_server.service import metrics
from graphmesh.model_server.service.config import BatchingConfig, ServerConfig

__all__ = ["ModelHost", "ModelNotReadyError", "ModelState", "QueueFullError"]

_T = TypeVar("_T")
_R = TypeVar("_R")
StateListener = Callable[[str, bool], Awaitable[None]]


class ModelNotReadyError(ModelUnavailableError):
    """The model is known but cannot serve now (loading, failed, not loaded)."""


class ModelState(enum.StrEnum):
    """Where a model is in its life on this server."""

    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True, kw_only=True)
class _ChatItem:
    messages: tuple[ChatMessage, ...]
    sampling: Sampling


@dataclass(frozen=True, kw_only=True)
class _EmbedItem:
    text: str
    normalize: bool


class ModelHost:
    """Holds the registry and every model's batchers; use as an async context manager."""

    def __init__(
        self,
        registry: ModelRegistry,
        config: ServerConfig,
        *,
        on_state: StateListener | None = None,
    ) -> None:
        self.registry = registry
        self.config = config
        self._on_state = on_state
        self._states: dict[str, ModelState] = {}
        self._failures: dict[str, str] = {}
        self._embedders: dict[str, DynamicBatcher[_EmbedItem, Embedded]] = {}
        self._chatters: dict[str, DynamicBatcher[_ChatItem, Completion]] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._waiting: dict[str, int] = {}
        self._loads: dict[str, asyncio.Task[LoadedModel]] = {}
        # Loads and streams run here; batches run on each batcher's own threads.
        self._executor = ThreadPoolExecutor(
            max(4, 2 * sum(self._batching(m.name).concurrency for m in config.models)),
            thread_name_prefix="graphmesh-model-host",
        )

    async def __aenter__(self) -> ModelHost:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Finish queued batches, then stop every batcher and thread."""
        closing = [b.aclose() for b in self._embedders.values()]
        closing += [b.aclose() for b in self._chatters.values()]
        self._embedders.clear()
        self._chatters.clear()
        await asyncio.gather(*closing)
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    # -- lifecycle ------------------------------------------------------------------------
    def state(self, name: str) -> ModelState | None:
        """The model's state, or None when it was never asked to load."""
        return self._states.get(self.registry.canonical(name))

    async def preload(self) -> None:
        """Load the config's models one after another (loads compete for the same cores);
        a failure is logged in the model's state and does not stop the others."""
        for model in self.config.models:
            with contextlib.suppress(ModelServerError):  # kept in the model's state
                await self.load(model.name)

    async def load(self, name: str) -> LoadedModel:
        """Load ``name`` (once, however many callers ask at the same time)."""
        source = self.registry.resolve(name)  # NOT_FOUND before any state changes
        canonical = source.name
        loaded = self.registry.loaded(name)
        if loaded is not None:
            return loaded
        task = self._loads.get(canonical)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(name, canonical))
            self._loads[canonical] = task
        return await asyncio.shield(task)

    async def _load(self, name: str, canonical: str) -> LoadedModel:
        self._states[canonical] = ModelState.LOADING
        await self._notify(canonical, False)
        loop = asyncio.get_running_loop()
        try:
            loaded = await loop.run_in_executor(self._executor, self.registry.load, name)
        except Exception as exc:
            self._states[canonical] = ModelState.FAILED
            self._failures[canonical] = str(exc)
            if isinstance(exc, ModelServerError):
                raise
            raise ModelLoadError(f"loading {name!r} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            self._loads.pop(canonical, None)
        self._states[canonical] = ModelState.READY
        self._failures.pop(canonical, None)
        await self._notify(canonical, True)
        return loaded

    async def unload(self, name: str) -> bool:
        """Stop the model's batchers (finishing their queued work) and free it."""
        canonical = self.registry.resolve(name).name
        closing = [
            batchers.pop(canonical)
            for batchers in (self._embedders, self._chatters)
            if canonical in batchers
        ]
        await asyncio.gather(*(batcher.aclose() for batcher in closing))
        was_loaded = await asyncio.to_thread(self.registry.unload, name)
        self._states.pop(canonical, None)
        await self._notify(canonical, False)
        return was_loaded

    async def ready(self, name: str, kind: ModelKind) -> LoadedModel:
        """The loaded model, or ModelNotReadyError saying why it cannot serve now."""
        source = self.registry.resolve(name, kind)
        loaded = self.registry.loaded(name)
        if loaded is not None:
            return loaded
        state = self._states.get(source.name)
        if state is ModelState.LOADING:
            raise ModelNotReadyError(f"model {name!r} is still loading")
        if state is ModelState.FAILED and not self.config.load_on_demand:
            reason = self._failures.get(source.name, "unknown error")
            raise ModelNotReadyError(f"model {name!r} failed to load: {reason}")
        if not self.config.load_on_demand:
            raise ModelNotReadyError(f"model {name!r} is not loaded; LoadModel it first")
        return await self.load(name)

    # -- work -----------------------------------------------------------------------------
    async def embed(self, name: str, texts: Sequence[str], *, normalize: bool) -> list[Embedded]:
        """One vector (with its token count) per text, batched with other callers' texts."""
        loaded = await self.ready(name, ModelKind.EMBEDDING)
        batcher = self._embedder(loaded.name)
        return await batcher.submit_many([_EmbedItem(text=t, normalize=normalize) for t in texts])

    async def complete(
        self, name: str, messages: Sequence[ChatMessage], sampling: Sampling
    ) -> Completion:
        """A whole reply, batched with other callers' requests of equal settings."""
        loaded = await self.ready(name, ModelKind.CHAT)
        item = _ChatItem(messages=tuple(messages), sampling=sampling)
        return await self._chatter(loaded.name).submit(item)

    async def stream(
        self, name: str, messages: Sequence[ChatMessage], sampling: Sampling
    ) -> AsyncGenerator[str | Completion, None]:
        """Text pieces as the model produces them, then the whole :class:`Completion`.

        Close the iterator (or cancel its consumer) to stop the generation."""
        loaded = await self.ready(name, ModelKind.CHAT)
        backend = loaded.backend
        if not isinstance(backend, ChatBackend):
            raise ModelServerError(f"{name!r} is not a chat model")
        slots = self._stream_slots(loaded.name)
        batching = self._batching(loaded.name)
        if slots.locked() and self._waiting.get(loaded.name, 0) >= batching.max_queue_size:
            raise QueueFullError(self._waiting[loaded.name], 1.0)
        self._waiting[loaded.name] = self._waiting.get(loaded.name, 0) + 1
        try:
            await slots.acquire()
        finally:
            self._waiting[loaded.name] -= 1
        try:
            async for piece in self._generate_stream(loaded.name, backend, messages, sampling):
                yield piece
        finally:
            slots.release()

    async def _generate_stream(
        self,
        name: str,
        backend: ChatBackend,
        messages: Sequence[ChatMessage],
        sampling: Sampling,
    ) -> AsyncGenerator[str | Completion, None]:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        cancelled = threading.Event()

        def on_text(text: str) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, text)

        def generate() -> Completion:
            started = time.perf_counter()
            try:
                return backend.stream(messages, sampling, on_text, cancelled.is_set)
            finally:
                metrics.record_execution(name, compute_seconds=time.perf_counter() - started)
                loop.call_soon_threadsafe(pieces.put_nowait, None)

        work = loop.run_in_executor(self._executor, generate)
        try:
            while (piece := await pieces.get()) is not None:
                yield piece
            yield await work
        finally:
            # Reached early when the caller went away: stop the model at its next token and
            # keep the slot until the thread is really done.
            cancelled.set()
            await asyncio.wait([work])

    # -- batchers -------------------------------------------------------------------------
    def _batching(self, name: str) -> BatchingConfig:
        for model in self.config.models:
            if self.registry.canonical(model.name) == name or model.name == name:
                return model.batching or self.config.batching
        return self.config.batching

    def _new_batcher(self, name: str, fn: Callable[[list[_T]], list[_R]]) -> DynamicBatcher[_T, _R]:
        batching = self._batching(name)
        return DynamicBatcher(
            fn,
            max_batch_size=batching.max_batch_size,
            max_delay=batching.max_queue_delay_ms / 1000,
            max_queue_size=batching.max_queue_size,
            concurrency=batching.concurrency,
            name=f"batch-{name[-24:]}",
            on_batch=lambda report: metrics.record_batch(name, report),
        )

    def _embedder(self, name: str) -> DynamicBatcher[_EmbedItem, Embedded]:
        if name not in self._embedders:
            self._embedders[name] = self._new_batcher(name, lambda items: self._embed(name, items))
        return self._embedders[name]

    def _chatter(self, name: str) -> DynamicBatcher[_ChatItem, Completion]:
        if name not in self._chatters:
            self._chatters[name] = self._new_batcher(
                name, lambda items: self._complete(name, items)
            )
        return self._chatters[name]

    def _stream_slots(self, name: str) -> asyncio.Semaphore:
        if name not in self._slots:
            self._slots[name] = asyncio.Semaphore(self._batching(name).concurrency)
        return self._slots[name]

    def _embed(self, name: str, items: list[_EmbedItem]) -> list[Embedded]:
        """Runs in a batch thread: one forward pass per normalize setting."""
        backend: EmbeddingBackend = self.registry.embedder(name)
        results: list[Embedded | None] = [None] * len(items)
        for normalize in (True, False):
            indexes = [i for i, item in enumerate(items) if item.normalize is normalize]
            if indexes:
                vectors = backend.embed_counted(
                    [items[i].text for i in indexes], normalize=normalize
                )
                for index, vector in zip(indexes, vectors, strict=True):
                    results[index] = vector
        return [result for result in results if result is not None]

    def _complete(self, name: str, items: list[_ChatItem]) -> list[Completion]:
        """Runs in a batch thread: one generation per distinct set of settings."""
        backend: ChatBackend = self.registry.chat_model(name)
        results: list[Completion | None] = [None] * len(items)
        keys = sorted({item.sampling.batch_key for item in items}, key=repr)
        for key in keys:
            indexes = [i for i, item in enumerate(items) if item.sampling.batch_key == key]
            sampling = items[indexes[0]].sampling
            replies = backend.complete([items[i].messages for i in indexes], sampling)
            for index, reply in zip(indexes, replies, strict=True):
                results[index] = reply
        return [result for result in results if result is not None]

    async def _notify(self, name: str, serving: bool) -> None:
        if self._on_state is not None:
            await self._on_state(name, serving)
