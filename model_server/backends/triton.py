"""Models served by a Triton Inference Server, as the registry's routed names ``triton:<model>``.

:class:`TritonModels` is one server: it resolves names to :class:`ModelSource` entries (the
kind read from the model's metadata), loads and unloads models in Triton's explicit
model-control mode, and hands out :class:`TritonEmbeddingBackend` and
:class:`TritonChatBackend`. Those implement the synchronous backend interface that the batcher
and the servicer call from worker threads; the async ``tritonclient.grpc.aio`` channel behind
them lives on one event loop in a daemon thread of its own, so any thread may call them.

Token counts come from the model's optional ``input_tokens``/``output_tokens`` outputs (zero
usage where it has none); sampling settings other than ``max_new_tokens`` are the model's own
(stop strings cut the reply here), and a stream arrives as one piece when the model has
answered (the KServe unary call has no partial results).

Configuration: ``GRAPHMESH_TRITON_URL`` (``host:port`` of Triton's gRPC endpoint, default
``127.0.0.1:8001``), ``GRAPHMESH_TRITON_TIMEOUT_S`` (per request, default 30) and
``GRAPHMESH_TRITON_LOAD_TIMEOUT_S`` (per load or unload, default 300).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Self, TypeVar

from graphmesh.model_server.backends.base import (
    Backend,
    Cancelled,
    Completion,
    Conversation,
    Embedded,
    FinishReason,
    ModelKind,
    Sampling,
    TextSink,
    Usage,
)
from graphmesh.model_server.backends.errors import ModelInputError, ModelUnavailableError
from graphmesh.model_server.backends.triton_client import (
    DEFAULT_CONTEXT_WINDOW,
    DEFAULT_MAX_INPUT_TOKENS,
    MESSAGES_INPUT,
    TRITON_PREFIX,
    TritonClient,
    TritonSignature,
    check_model_name,
    messages_json,
)

__all__ = [
    "TRITON_PREFIX",
    "TritonChatBackend",
    "TritonConfig",
    "TritonEmbeddingBackend",
    "TritonModels",
]

URL_VARIABLE = "GRAPHMESH_TRITON_URL"
TIMEOUT_VARIABLE = "GRAPHMESH_TRITON_TIMEOUT_S"
LOAD_TIMEOUT_VARIABLE = "GRAPHMESH_TRITON_LOAD_TIMEOUT_S"
DEFAULT_URL = "127.0.0.1:8001"
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class TritonConfig:
    """Where the Triton server is and how long to wait for it."""

    url: str = DEFAULT_URL
    timeout_s: float = 30.0
    load_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        host, _, port = self.url.rpartition(":")
        if "/" in self.url or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{URL_VARIABLE}: {self.url!r} is not host:port (Triton's gRPC port)")
        timeouts = (("timeout_s", self.timeout_s), ("load_timeout_s", self.load_timeout_s))
        for field, value in timeouts:
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"triton {field}: {value!r} is not a positive number of seconds")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TritonConfig:
        """The configuration the ``GRAPHMESH_TRITON_*`` variables describe."""
        return cls(
            url=environ.get(URL_VARIABLE, DEFAULT_URL),
            timeout_s=_seconds(environ, TIMEOUT_VARIABLE, 30.0),
            load_timeout_s=_seconds(environ, LOAD_TIMEOUT_VARIABLE, 300.0),
        )


def _seconds(environ: Mapping[str, str], variable: str, default: float) -> float:
    raw = environ.get(variable)
    try:
        return default if raw is None else float(raw)
    except ValueError:
        raise ValueError(f"{variable}: {raw!r} is not a number of seconds") from None


class TritonModels:
    """One Triton server's models; thread-safe. ``with TritonModels(config) as triton:``, or
    ``close()`` when done."""

    def __init__(self, config: TritonConfig) -> None:
        self.config = config
        self._client = TritonClient(
            config.url, timeout_s=config.timeout_s, load_timeout_s=config.load_timeout_s
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"triton {config.url}", daemon=True
        )
        self._thread.start()
        self._call(self._client.__aenter__())
        self._kinds: dict[str, ModelKind] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel and stop the connection's thread; later calls fail."""
        if self._loop.is_closed():
            return
        try:
            self._call(self._client.__aexit__(None, None, None))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def live(self) -> bool:
        """Whether the server answers and says it is live."""
        return self._call(self._client.server_live())

    def ready(self, model: str) -> bool:
        """Whether ``model`` (without the ``triton:`` prefix) is loaded and ready."""
        return self._call(self._client.model_ready(model))

    def names(self) -> list[str]:
        """The routed names of every model in the server's repository."""
        return [f"{TRITON_PREFIX}{name}" for name in self._call(self._client.repository())]

    def kind(self, name: str) -> ModelKind:
        """What ``triton:<model>`` does: read from its metadata once, loading it if needed."""
        model = _model(name)
        known = self._kinds.get(model)
        return known if known is not None else self._ensure_loaded(model).kind

    def load(self, name: str) -> Backend:
        """A backend for ``triton:<model>``, loading the model on the server if needed."""
        signature = self._ensure_loaded(_model(name))
        if signature.kind is ModelKind.EMBEDDING:
            return TritonEmbeddingBackend(self, signature)
        return TritonChatBackend(self, signature)

    def unload(self, name: str) -> bool:
        """Unload ``triton:<model>`` on the server; False if it was not loaded."""
        model = _model(name)
        was_ready = self.ready(model)
        self._call(self._client.unload(model))
        return was_ready

    def infer(
        self, signature: TritonSignature, texts: Sequence[str], *, max_tokens: int | None = None
    ) -> list[Any]:
        """One output row per text, sent in requests of at most the model's batch size."""
        return [row for row, _, _ in self.infer_counted(signature, texts, max_tokens=max_tokens)]

    def infer_counted(
        self, signature: TritonSignature, texts: Sequence[str], *, max_tokens: int | None = None
    ) -> list[tuple[Any, int, int]]:
        """(output row, input tokens, output tokens) per text; counts are 0 where the model
        reports none. Requests hold at most the model's batch size."""
        step = max(signature.max_batch_size or len(texts), 1)
        rows: list[tuple[Any, int, int]] = []
        for start in range(0, len(texts), step):
            chunk = texts[start : start + step]
            out = self._call(self._client.infer_counted(signature, chunk, max_tokens=max_tokens))
            rows.extend(zip(out.rows, out.input_tokens, out.output_tokens, strict=True))
        return rows

    def _ensure_loaded(self, model: str) -> TritonSignature:
        if not self.ready(model):
            self._call(self._client.load(model))
        signature = self._call(self._client.signature(model))
        self._kinds[model] = signature.kind
        return signature

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("TritonModels is synchronous: call it from a worker thread")
        if self._loop.is_closed():
            coroutine.close()
            raise ModelUnavailableError(f"the connection to triton at {self.config.url} is closed")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        # The client's own deadlines end every call; this only guards against a stuck loop.
        try:
            return future.result(timeout=self.config.load_timeout_s + self.config.timeout_s)
        except FutureTimeout:
            future.cancel()
            raise ModelUnavailableError(f"triton at {self.config.url} did not answer") from None


class TritonEmbeddingBackend:
    """An embedding model on Triton: texts in, one FP32 vector each out."""

    def __init__(self, models: TritonModels, signature: TritonSignature) -> None:
        self._models = models
        self.signature = signature

    @property
    def dimensions(self) -> int:
        """Width of the model's output vectors (from its metadata)."""
        return self.signature.dimensions

    @property
    def max_input_tokens(self) -> int:
        """The config parameter ``max_input_tokens``, else 512; the model truncates."""
        return self.signature.parameter("max_input_tokens", DEFAULT_MAX_INPUT_TOKENS)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in input order."""
        return [embedded.vector for embedded in self.embed_counted(texts, normalize=False)]

    def embed_counted(self, texts: Sequence[str], *, normalize: bool = True) -> list[Embedded]:
        """Vectors as the model gives them (scaled to unit length if ``normalize``) and the
        input tokens it reports."""
        rows = self._models.infer_counted(self.signature, _texts(texts, "texts"))
        return [
            Embedded(vector=_vector(row, normalize), usage=Usage(input_tokens=tokens))
            for row, tokens, _ in rows
        ]

    def ready(self) -> bool:
        """Whether the model is loaded and ready on its server."""
        return self._models.ready(self.signature.model)


class TritonChatBackend:
    """A text-generation model on Triton: a prompt in, the completion out.

    A model whose text input is named ``messages`` gets the conversation as a JSON list of
    ``{"role", "content"}`` (it applies its own chat template); any other text input gets a
    plain transcript, one ``role: content`` line per turn, ending ``assistant:``.
    """

    def __init__(self, models: TritonModels, signature: TritonSignature) -> None:
        self._models = models
        self.signature = signature

    @property
    def context_window(self) -> int:
        """The config parameter ``context_window``, else 2048."""
        return self.signature.parameter("context_window", DEFAULT_CONTEXT_WINDOW)

    def chat(self, conversations: Sequence[Conversation], max_new_tokens: int) -> list[str]:
        """One reply per conversation, in input order."""
        sampling = Sampling(max_new_tokens=max_new_tokens)
        return [completion.text for completion in self.complete(conversations, sampling)]

    def complete(
        self, conversations: Sequence[Conversation], sampling: Sampling
    ) -> list[Completion]:
        """One reply per conversation with the token counts the model reports; stop strings
        cut the reply here (the model receives only the token budget)."""
        budget = sampling.max_new_tokens
        if isinstance(budget, bool) or not 0 < budget <= self.context_window:
            raise ModelInputError(
                "max_new_tokens", f"must be 1..{self.context_window}, got {budget!r}"
            )
        prompts = [self._prompt(conversation) for conversation in conversations]
        rows = self._models.infer_counted(self.signature, prompts, max_tokens=budget)
        return [_completion(_text(row), sampling, inp, out) for row, inp, out in rows]

    def stream(
        self,
        conversation: Conversation,
        sampling: Sampling,
        on_text: TextSink,
        cancelled: Cancelled,
    ) -> Completion:
        """The whole reply as one piece (the KServe unary call has no partial results); a
        cancel before the call skips it, one during the call drops the reply."""
        if cancelled():
            return Completion(text="", finish_reason=FinishReason.CANCELLED, usage=Usage())
        (completion,) = self.complete([conversation], sampling)
        if cancelled():
            return Completion(text="", finish_reason=FinishReason.CANCELLED, usage=completion.usage)
        if completion.text:
            on_text(completion.text)
        return completion

    def ready(self) -> bool:
        """Whether the model is loaded and ready on its server."""
        return self._models.ready(self.signature.model)

    def _prompt(self, conversation: Conversation) -> str:
        if not conversation:
            raise ModelInputError("messages", "a conversation needs at least one message")
        if self.signature.text_input == MESSAGES_INPUT:
            return messages_json([message.as_dict() for message in conversation])
        turns = [f"{message.role}: {message.content}" for message in conversation]
        return "\n".join([*turns, "assistant:"])


def _vector(row: Any, normalize: bool) -> list[float]:
    vector = [float(x) for x in row]
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if normalize and norm > 0 else vector


def _completion(text: str, sampling: Sampling, input_tokens: int, output_tokens: int) -> Completion:
    # A model that reports its output tokens tells us whether the budget ended the reply.
    reason = FinishReason.LENGTH if output_tokens >= sampling.max_new_tokens else FinishReason.STOP
    cuts = [i for i in (text.find(stop) for stop in sampling.stop if stop) if i >= 0]
    if cuts:
        text, reason = text[: min(cuts)], FinishReason.STOP
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    return Completion(text=text, finish_reason=reason, usage=usage)


def _model(name: str) -> str:
    if not name.startswith(TRITON_PREFIX):
        raise ModelInputError("model", f"{name[:80]!r} is not a '{TRITON_PREFIX}<model>' name")
    return check_model_name(name.removeprefix(TRITON_PREFIX))


def _texts(texts: Sequence[str], field: str) -> list[str]:
    checked = list(texts)
    for index, text in enumerate(checked):
        if not isinstance(text, str):
            kind = type(text).__name__
            raise ModelInputError(f"{field}[{index}]", f"must be a string, not {kind}")
    return checked


def _text(row: Any) -> str:
    value = row[0] if getattr(row, "ndim", 0) else row
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
