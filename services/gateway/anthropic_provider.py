"""Anthropic through the official ``anthropic`` SDK (``AsyncAnthropic``): messages, plain
and streamed. Anthropic has no embeddings API, so :meth:`AnthropicProvider.embed` refuses.
The client is built with the account's base URL and timeout, and ``max_retries=0``."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anthropic
from anthropic import AsyncAnthropic
from pydantic import SecretStr

from graphmesh.services.gateway.errors import InvalidRequest
from graphmesh.services.gateway.provider import OpenedStream
from graphmesh.services.gateway.sdk_errors import SdkErrors, Seam
from graphmesh.services.gateway.signals import read_signals
from graphmesh.services.gateway.types import ChatRequest, Chunk, Completion, Embeddings, Usage

ERRORS = SdkErrors(
    base=anthropic.APIError,
    status=anthropic.APIStatusError,
    timeout=anthropic.APITimeoutError,
    connection=anthropic.APIConnectionError,
)
REQUEST_ID = "request-id"


class AnthropicProvider:
    """One Anthropic account."""

    name = "anthropic"

    def __init__(
        self, *, api_key: SecretStr, base_url: str | None = None, timeout: float = 60.0
    ) -> None:
        key = api_key.get_secret_value()
        self._client = AsyncAnthropic(
            api_key=key, base_url=base_url, timeout=timeout, max_retries=0
        )
        self._seam = Seam(
            provider=self.name, errors=ERRORS, request_id_header=REQUEST_ID, secrets=(key,)
        )

    async def embed(self, model: str, texts: Sequence[str], *, time_left: float) -> Embeddings:
        """Refused: Anthropic offers no embeddings."""
        raise InvalidRequest(
            f"anthropic has no embeddings API, so anthropic:{model} cannot embed; "
            "use an openai: or hf: model",
            provider=self.name,
        )

    async def generate(self, model: str, request: ChatRequest, *, time_left: float) -> Completion:
        """A whole message."""
        with self._seam.translated():
            raw = await self._client.messages.with_raw_response.create(
                **message_arguments(model, request), timeout=time_left
            )
            body = await raw.parse()
        text = "".join(block.text for block in body.content if block.type == "text")
        return Completion(
            text=text,
            usage=Usage(
                input_tokens=body.usage.input_tokens, output_tokens=body.usage.output_tokens
            ),
            finish_reason=body.stop_reason or "",
            request_id=raw.headers.get(REQUEST_ID),
            signals=read_signals(raw.headers),
        )

    @asynccontextmanager
    async def stream(
        self, model: str, request: ChatRequest, *, time_left: float
    ) -> AsyncIterator[OpenedStream]:
        """A streamed message; its last chunk has the usage."""
        with self._seam.translated():
            stream = await self._client.messages.create(
                **message_arguments(model, request), stream=True, timeout=time_left
            )
        chunks = self._chunks(stream)
        try:
            headers = stream.response.headers
            yield OpenedStream(
                request_id=headers.get(REQUEST_ID), signals=read_signals(headers), chunks=chunks
            )
        finally:
            await chunks.aclose()
            await stream.close()

    async def _chunks(self, stream: anthropic.AsyncStream[Any]) -> AsyncGenerator[Chunk, None]:
        input_tokens = output_tokens = 0
        finish = ""
        with self._seam.translated():
            async for event in stream:
                if event.type == "message_start":
                    input_tokens = event.message.usage.input_tokens
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    yield Chunk(text=event.delta.text)
                elif event.type == "message_delta":
                    output_tokens = event.usage.output_tokens
                    finish = event.delta.stop_reason or finish
        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
        yield Chunk(usage=usage, finish_reason=finish)

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._client.close()


def message_arguments(model: str, request: ChatRequest) -> dict[str, Any]:
    """The ``messages.create`` arguments of ``request``."""
    arguments: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
    }
    if request.system:
        arguments["system"] = request.system
    if request.temperature is not None:
        arguments["temperature"] = request.temperature
    if request.stop:
        arguments["stop_sequences"] = list(request.stop)
    return arguments
