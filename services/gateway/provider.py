"""The one interface every provider adapter implements, so the gateway core treats OpenAI,
Anthropic and the in-memory twin alike.

Adapters speak the provider's API through its official SDK, with the SDK's own retries off
(the gateway has one retry loop), and translate every SDK error into the gateway's exception
tree at this seam. ``time_left`` is the seconds the call may take (the caller's deadline,
or the account's timeout if sooner).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from graphmesh.services.gateway.types import (
    ChatRequest,
    Chunk,
    Completion,
    Embeddings,
    RateSignals,
)


@dataclass(frozen=True, kw_only=True)
class OpenedStream:
    """A streamed completion whose response has begun: its request id and limit signals
    (from the headers) and its chunks, the last of which carries the usage."""

    request_id: str | None
    signals: RateSignals
    chunks: AsyncGenerator[Chunk, None]


class Provider(Protocol):
    """Embeddings and chat completions of one provider account."""

    @property
    def name(self) -> str:
        """The provider's name: ``openai``, ``anthropic``."""
        ...

    async def embed(self, model: str, texts: Sequence[str], *, time_left: float) -> Embeddings:
        """One vector per text."""
        ...

    async def generate(self, model: str, request: ChatRequest, *, time_left: float) -> Completion:
        """A whole completion."""
        ...

    def stream(
        self, model: str, request: ChatRequest, *, time_left: float
    ) -> AbstractAsyncContextManager[OpenedStream]:
        """Send the request and yield the stream once the response has begun (errors up to
        then are raised on entry, so they can be retried); leaving closes the chunks and the
        response."""
        ...

    async def aclose(self) -> None:
        """Close the provider's connections."""
        ...
