"""OpenAI through the official ``openai`` SDK (``AsyncOpenAI``): embeddings and chat
completions, plain and streamed. The client is built with the account's base URL,
organization and timeout, and ``max_retries=0``: the gateway retries, not the SDK."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import openai
from openai import AsyncOpenAI
from pydantic import SecretStr

from graphmesh.services.gateway.provider import OpenedStream
from graphmesh.services.gateway.sdk_errors import SdkErrors, Seam
from graphmesh.services.gateway.signals import read_signals
from graphmesh.services.gateway.types import ChatRequest, Chunk, Completion, Embeddings, Usage

ERRORS = SdkErrors(
    base=openai.APIError,
    status=openai.APIStatusError,
    timeout=openai.APITimeoutError,
    connection=openai.APIConnectionError,
)
REQUEST_ID = "x-request-id"


class OpenAIProvider:
    """One OpenAI account."""

    name = "openai"

    def __init__(
        self,
        *,
        api_key: SecretStr,
        base_url: str | None = None,
        organization: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        key = api_key.get_secret_value()
        self._client = AsyncOpenAI(
            api_key=key,
            base_url=base_url,
            organization=organization,
            timeout=timeout,
            max_retries=0,
        )
        self._seam = Seam(
            provider=self.name, errors=ERRORS, request_id_header=REQUEST_ID, secrets=(key,)
        )

    async def embed(self, model: str, texts: Sequence[str], *, time_left: float) -> Embeddings:
        """One vector per text, in order."""
        with self._seam.translated():
            raw = await self._client.embeddings.with_raw_response.create(
                model=model, input=list(texts), timeout=time_left
            )
            body = raw.parse()
        ordered = sorted(body.data, key=lambda item: item.index)
        return Embeddings(
            vectors=tuple(tuple(item.embedding) for item in ordered),
            usage=Usage(input_tokens=body.usage.prompt_tokens),
            request_id=raw.headers.get(REQUEST_ID),
            signals=read_signals(raw.headers),
        )

    async def generate(self, model: str, request: ChatRequest, *, time_left: float) -> Completion:
        """A whole chat completion."""
        with self._seam.translated():
            raw = await self._client.chat.completions.with_raw_response.create(
                **chat_arguments(model, request), timeout=time_left
            )
            body = raw.parse()
        choice = body.choices[0]
        usage = body.usage
        return Completion(
            text=choice.message.content or "",
            usage=Usage(
                input_tokens=usage.prompt_tokens if usage else 0,
                output_tokens=usage.completion_tokens if usage else 0,
            ),
            finish_reason=choice.finish_reason or "",
            request_id=raw.headers.get(REQUEST_ID),
            signals=read_signals(raw.headers),
        )

    @asynccontextmanager
    async def stream(
        self, model: str, request: ChatRequest, *, time_left: float
    ) -> AsyncIterator[OpenedStream]:
        """A streamed chat completion; its last chunk has the usage."""
        with self._seam.translated():
            stream = await self._client.chat.completions.create(
                **chat_arguments(model, request),
                stream=True,
                stream_options={"include_usage": True},
                timeout=time_left,
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

    async def _chunks(self, stream: openai.AsyncStream[Any]) -> AsyncGenerator[Chunk, None]:
        usage, finish = Usage(), ""
        with self._seam.translated():
            async for event in stream:
                if event.usage is not None:
                    usage = Usage(
                        input_tokens=event.usage.prompt_tokens,
                        output_tokens=event.usage.completion_tokens,
                    )
                for choice in event.choices:
                    finish = choice.finish_reason or finish
                    if choice.delta.content:
                        yield Chunk(text=choice.delta.content)
        yield Chunk(usage=usage, finish_reason=finish)

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._client.close()


def chat_arguments(model: str, request: ChatRequest) -> dict[str, Any]:
    """The ``chat.completions.create`` arguments of ``request``."""
    messages = [{"role": "system", "content": request.system}] if request.system else []
    messages += [{"role": m.role, "content": m.content} for m in request.messages]
    arguments: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_completion_tokens": request.max_tokens,
    }
    if request.temperature is not None:
        arguments["temperature"] = request.temperature
    if request.stop:
        arguments["stop"] = list(request.stop)
    return arguments
