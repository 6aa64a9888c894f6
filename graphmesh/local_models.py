"""The engine's ``ModelClient`` served in-process by the model server's backends.

This is a composition root: the one place where the engine's model interface meets the
model server's registry without gRPC in between. Every call goes through a dynamic batcher
per model, so fifty concurrent one-text embeds (say, an array task's children) become one
forward pass, and concurrent summaries share one padded generation batch.

Nothing here imports torch; the registry imports it on the first model load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Self, TypeVar

from graphmesh.model_server import prompts
from graphmesh.model_server.backends.base import (
    ChatBackend,
    ChatMessage,
    Completion,
    EmbeddingBackend,
    ModelKind,
    Sampling,
)
from graphmesh.model_server.backends.base import Embedded as CountedVector
from graphmesh.model_server.batcher import BatcherClosedError, BatchStats, DynamicBatcher
from graphmesh.model_server.registry import LoadedModel, ModelRegistry, ModelServerError
from graphmesh.orchestrator.ai.client import Embedded, Generated, ModelError, ModelInfo, Usage

__all__ = ["LocalModelClient"]

R = TypeVar("R")

HF_PROVIDER = "hf"
CHAT_TASK_KINDS = ("generate", "summarize", "rewrite", "translate", "answer_question")


@dataclass(frozen=True, kw_only=True)
class _ChatRequest:
    messages: tuple[ChatMessage, ...]
    max_new_tokens: int


@contextmanager
def _model_errors() -> Iterator[None]:
    """Translate the model server's errors into the engine's one ``ModelError``."""
    try:
        yield
    except ModelServerError as exc:
        raise ModelError(str(exc)) from exc
    except BatcherClosedError as exc:
        raise ModelError("the local model client is closed") from exc


class LocalModelClient:
    """``async with LocalModelClient() as models:`` — a ``ModelClient`` running models here.

    ``task_max_new_tokens`` bounds summaries, rewrites, translations and answers, whose
    interface takes no length; ``generate`` takes its own.
    """

    def __init__(
        self,
        registry: ModelRegistry | None = None,
        *,
        task_max_new_tokens: int = 128,
        embed_batch_size: int = 64,
        chat_batch_size: int = 8,
        max_delay: float = 0.005,
        threads: int = 4,
    ) -> None:
        self._registry = registry or ModelRegistry()
        self._task_max_new_tokens = task_max_new_tokens
        self._embed_batch_size = embed_batch_size
        self._chat_batch_size = chat_batch_size
        self._max_delay = max_delay
        # Threads mostly wait (on a model load, or on torch, which runs its own intra-op
        # threads), so a few more than the batchers that can run at once is cheap insurance
        # against one slow load stalling every other model.
        self._threads = threads
        self._executor: ThreadPoolExecutor | None = None
        self._embedders: dict[str, DynamicBatcher[str, CountedVector]] = {}
        self._chatters: dict[str, DynamicBatcher[_ChatRequest, Completion]] = {}

    @property
    def registry(self) -> ModelRegistry:
        """The registry resolving and loading this client's models."""
        return self._registry

    async def __aenter__(self) -> Self:
        self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="graphmesh-model")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Finish queued calls, then stop the batchers and their worker threads."""
        closing = [b.aclose() for b in self._embedders.values()]
        closing += [b.aclose() for b in self._chatters.values()]
        self._embedders.clear()
        self._chatters.clear()
        await asyncio.gather(*closing)
        if self._executor is not None:
            executor, self._executor = self._executor, None
            # A model load cannot be interrupted; wait for it off the event loop.
            await asyncio.to_thread(executor.shutdown, wait=True)

    def batch_stats(self) -> dict[str, BatchStats]:
        """How calls were batched so far, keyed by ``embed:<model>`` / ``chat:<model>``."""
        stats = {f"embed:{name}": b.stats for name, b in self._embedders.items()}
        stats.update({f"chat:{name}": b.stats for name, b in self._chatters.items()})
        return stats

    async def load_model(self, model: str) -> ModelInfo:
        """Load ``model`` now (it would otherwise load on first use) and describe it."""
        with _model_errors():
            loaded = await self._in_thread(self._registry.load, model)
        return _model_info(model, loaded)

    async def unload_model(self, model: str) -> bool:
        """Free ``model``'s memory; False if it was not loaded."""
        with _model_errors():
            return await self._in_thread(self._registry.unload, model)

    async def embed(self, model: str, texts: Sequence[str]) -> Embedded:
        """One unit-length vector per text, batched with every other caller's texts; usage
        is the tokens the model's tokenizer read."""
        with _model_errors():
            batcher = self._embedder(model)
            counted = await asyncio.gather(*(batcher.submit(text) for text in texts))
        tokens = sum(item.usage.input_tokens for item in counted)
        return Embedded(vectors=[item.vector for item in counted], usage=Usage(input_tokens=tokens))

    async def generate(self, model: str, prompt: str, *, max_new_tokens: int = 128) -> Generated:
        """The model's reply to ``prompt`` as a user message, through its chat template."""
        return await self._chat(model, prompts.generate(prompt), max_new_tokens)

    async def summarize(self, model: str, text: str) -> Generated:
        """A one or two sentence summary of ``text``."""
        return await self._chat(model, prompts.summarize(text))

    async def rewrite(self, model: str, text: str, prompt: str) -> Generated:
        """``text`` rewritten as the instruction ``prompt`` asks."""
        return await self._chat(model, prompts.rewrite(text, prompt))

    async def translate(self, model: str, text: str, source: str, target: str) -> Generated:
        """``text`` translated from ``source`` into ``target`` (language names or codes)."""
        return await self._chat(model, prompts.translate(text, source, target))

    async def answer_question(self, model: str, question: str, context: str) -> Generated:
        """A short answer to ``question`` drawn from ``context``."""
        return await self._chat(model, prompts.answer_question(question, context))

    async def _chat(
        self, model: str, messages: Sequence[ChatMessage], max_new_tokens: int | None = None
    ) -> Generated:
        limit = self._task_max_new_tokens if max_new_tokens is None else max_new_tokens
        if limit < 1:
            raise ModelError(f"max_new_tokens must be at least 1, not {limit}")
        request = _ChatRequest(messages=tuple(messages), max_new_tokens=limit)
        with _model_errors():
            reply = await self._chatter(model).submit(request)
        usage = Usage(
            input_tokens=reply.usage.input_tokens, output_tokens=reply.usage.output_tokens
        )
        return Generated(text=reply.text, usage=usage)

    def _embedder(self, model: str) -> DynamicBatcher[str, CountedVector]:
        # Batchers are keyed by canonical name, so aliases of one model share its batches.
        name = self._registry.resolve(model, ModelKind.EMBEDDING).name
        if name not in self._embedders:
            self._embedders[name] = DynamicBatcher(
                lambda texts: self._registry.embedder(name).embed_counted(texts),
                max_batch_size=self._embed_batch_size,
                max_delay=self._max_delay,
                executor=self._running_executor(),
            )
        return self._embedders[name]

    def _chatter(self, model: str) -> DynamicBatcher[_ChatRequest, Completion]:
        name = self._registry.resolve(model, ModelKind.CHAT).name
        if name not in self._chatters:
            self._chatters[name] = DynamicBatcher(
                lambda requests: self._chat_batch(name, requests),
                max_batch_size=self._chat_batch_size,
                max_delay=self._max_delay,
                executor=self._running_executor(),
            )
        return self._chatters[name]

    def _chat_batch(self, name: str, requests: list[_ChatRequest]) -> list[Completion]:
        """Runs in a worker thread: one generation per distinct length limit in the batch."""
        backend = self._registry.chat_model(name)
        replies: list[Completion | None] = [None] * len(requests)
        for limit in sorted({request.max_new_tokens for request in requests}):
            indexes = [i for i, r in enumerate(requests) if r.max_new_tokens == limit]
            sampling = Sampling(max_new_tokens=limit)
            outputs = backend.complete([requests[i].messages for i in indexes], sampling)
            for index, reply in zip(indexes, outputs, strict=True):
                replies[index] = reply
        return [reply for reply in replies if reply is not None]  # every index was filled

    def _running_executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            raise ModelError("LocalModelClient is not open: use 'async with LocalModelClient()'")
        return self._executor

    async def _in_thread(self, fn: Callable[[str], R], model: str) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._running_executor(), fn, model)


def _model_info(requested: str, loaded: LoadedModel) -> ModelInfo:
    backend = loaded.backend
    params = {"kind": loaded.kind.value, "canonical_name": loaded.name}
    if isinstance(backend, EmbeddingBackend):
        return ModelInfo(
            name=requested,
            provider=HF_PROVIDER,
            task_kinds=("embed",),
            dimensions=backend.dimensions,
            context_window=backend.max_input_tokens,
            location=loaded.location,
            params=params,
        )
    if not isinstance(backend, ChatBackend):
        raise ModelError(f"{requested!r} loaded as {type(backend).__name__}, an unknown backend")
    return ModelInfo(
        name=requested,
        provider=HF_PROVIDER,
        task_kinds=CHAT_TASK_KINDS,
        context_window=backend.context_window,
        location=loaded.location,
        params=params,
    )
