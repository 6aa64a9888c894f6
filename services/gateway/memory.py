"""The in-memory twin of a provider: the gateway core runs against it in unit tests.

It answers like the loopback fake provider of the tests (the text echoes the last user
message, usage counts words, vectors derive from the text) and passes the same provider
contract suite. ``fail_next`` makes its next calls raise given gateway errors, as a
provider's faults would after translation; ``calls`` records what it was asked.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager

from graphmesh.services.gateway.errors import GatewayError, InvalidRequest
from graphmesh.services.gateway.provider import OpenedStream
from graphmesh.services.gateway.types import (
    NO_SIGNALS,
    ChatRequest,
    Chunk,
    Completion,
    Embeddings,
    RateSignals,
    Usage,
)

VECTOR_SIZE = 8


class MemoryProvider:
    """A provider answering from memory. ``embeddings=False`` refuses to embed, as Anthropic
    does; ``signals`` go on every successful answer."""

    def __init__(self, *, name: str = "memory", embeddings: bool = True) -> None:
        self._name = name
        self._embeddings = embeddings
        self._failures: deque[GatewayError] = deque()
        self.signals: RateSignals = NO_SIGNALS
        self.calls: list[tuple[str, str]] = []  # (operation, model)

    @property
    def name(self) -> str:
        return self._name

    def fail_next(self, *errors: GatewayError) -> None:
        """Raise these errors from the next calls, one each, in order."""
        self._failures.extend(errors)

    async def embed(self, model: str, texts: Sequence[str], *, time_left: float) -> Embeddings:
        """One vector per text."""
        self._begin("embed", model)
        if not self._embeddings:
            raise InvalidRequest(f"{self._name} has no embeddings API", provider=self._name)
        return Embeddings(
            vectors=tuple(vector(text) for text in texts),
            usage=Usage(input_tokens=sum(len(text.split()) for text in texts)),
            request_id=self._request_id(),
            signals=self.signals,
        )

    async def generate(self, model: str, request: ChatRequest, *, time_left: float) -> Completion:
        """The echo of the last user message."""
        self._begin("generate", model)
        text = reply_text(request)
        return Completion(
            text=text,
            usage=usage_of(request, text),
            finish_reason="stop",
            request_id=self._request_id(),
            signals=self.signals,
        )

    @asynccontextmanager
    async def stream(
        self, model: str, request: ChatRequest, *, time_left: float
    ) -> AsyncIterator[OpenedStream]:
        """The echo, a word per chunk."""
        self._begin("stream", model)
        chunks = _chunks(request)
        try:
            yield OpenedStream(request_id=self._request_id(), signals=self.signals, chunks=chunks)
        finally:
            await chunks.aclose()

    async def aclose(self) -> None:
        """Nothing to close."""

    def _begin(self, operation: str, model: str) -> None:
        self.calls.append((operation, model))
        if self._failures:
            raise self._failures.popleft()

    def _request_id(self) -> str:
        return f"mem_{len(self.calls)}"


async def _chunks(request: ChatRequest) -> AsyncGenerator[Chunk, None]:
    text = reply_text(request)
    for index, word in enumerate(text.split()):
        yield Chunk(text=word if index == 0 else f" {word}")
    yield Chunk(usage=usage_of(request, text), finish_reason="stop")


def reply_text(request: ChatRequest) -> str:
    """``echo:`` and the last user message."""
    users = [message.content for message in request.messages if message.role == "user"]
    return f"echo: {users[-1] if users else ''}".strip()


def usage_of(request: ChatRequest, text: str) -> Usage:
    words = len(request.system.split())
    words += sum(len(message.content.split()) for message in request.messages)
    return Usage(input_tokens=words, output_tokens=len(text.split()))


def vector(text: str) -> tuple[float, ...]:
    digest = hashlib.sha256(text.encode()).digest()
    return tuple(byte / 255 for byte in digest[:VECTOR_SIZE])
