"""A loopback HTTP server that speaks enough of the OpenAI and Anthropic APIs for the official
SDKs, with faults on demand and a log of what it received.

::

    async with FakeProvider.start(api_key="sk-test") as fake:
        client = AsyncOpenAI(api_key="sk-test", base_url=fake.openai_url, max_retries=0)
        fake.inject(Fault(status=429, headers={"retry-after": "2"}))   # the next request
        ...
        fake.received  # every request, with the time it arrived

Endpoints: ``POST /v1/chat/completions`` and ``POST /v1/messages``, each plain or streamed
(SSE: OpenAI's ``data:`` chunks ending in ``[DONE]``, with a usage chunk when
``stream_options.include_usage`` is set; Anthropic's ``message_start`` ...
``message_stop`` events), and ``POST /v1/embeddings``. Replies are deterministic: the text
echoes the last user message, usage counts words, vectors are derived from the text.

Faults are taken one per request, in order (``inject``); ``delay`` slows every answer;
``success_headers`` go on every successful answer (rate-limit headers); ``enforce(limit,
window)`` makes the server a rate-limited provider that answers 429 beyond ``limit``
requests in any ``window`` seconds (counted in ``over_limit``). A key other than ``api_key``
gets a 401 whose message, like a careless provider's, repeats the key it was sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_api_key", 429: "rate_limit"}
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
VECTOR_SIZE = 8


@dataclass(frozen=True, kw_only=True)
class Fault:
    """One injected answer: ``status`` with ``message`` and ``headers``, after ``delay``
    seconds; ``echo_key`` puts the caller's key into the message."""

    status: int
    message: str = "injected fault"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    echo_key: bool = False


@dataclass(frozen=True, kw_only=True)
class Received:
    """One request as it arrived (``at``: POSIX seconds)."""

    path: str
    at: float
    api_key: str
    model: str
    stream: bool
    body: dict[str, Any]


class FakeProvider:
    """The server's state; :meth:`start` runs it on a free loopback port."""

    def __init__(self, *, api_key: str) -> None:
        self.api_key = api_key
        self.received: list[Received] = []
        self.faults: deque[Fault] = deque()
        self.delay = 0.0
        self.success_headers: dict[str, str] = {}
        self.over_limit = 0
        self._enforced: tuple[int, float] | None = None
        self._served = 0
        self.port = 0

    @classmethod
    @asynccontextmanager
    async def start(cls, *, api_key: str) -> AsyncIterator[Self]:
        """Serve on ``127.0.0.1`` until the block ends."""
        fake = cls(api_key=api_key)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", fake._chat)
        app.router.add_post("/v1/embeddings", fake._embeddings)
        app.router.add_post("/v1/messages", fake._messages)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        fake.port = runner.addresses[0][1]
        try:
            yield fake
        finally:
            await runner.cleanup()

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(self, *faults: Fault) -> None:
        """Answer the next requests with these faults, one each, in order."""
        self.faults.extend(faults)

    def enforce(self, limit: int, window: float) -> None:
        """Answer 429 (with ``retry-after``) to requests beyond ``limit`` in ``window`` s."""
        self._enforced = (limit, window)

    def most_in_any_window(self, window: float) -> int:
        """The most requests that arrived within one ``window`` starting at any request."""
        times = sorted(request.at for request in self.received)
        return max((sum(1 for u in times if t <= u < t + window) for t in times), default=0)

    # Request handling -------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        body, refusal = await self._admit(request, key, "openai")
        if refusal is not None:
            return refusal
        text = reply_text(body.get("messages", []))
        usage = {"prompt_tokens": words(body.get("messages", [])), "completion_tokens": 0}
        usage["completion_tokens"] = len(text.split())
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.get("stream"):
            include = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._openai_stream(request, body, text, usage if include else None)
        return web.json_response(
            {
                "id": f"chatcmpl-{self._served}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", ""),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            },
            headers=self._headers("openai"),
        )

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        body, refusal = await self._admit(request, key, "openai")
        if refusal is not None:
            return refusal
        texts = body.get("input", [])
        texts = [texts] if isinstance(texts, str) else texts
        tokens = sum(len(str(text).split()) for text in texts)
        data = [
            {"object": "embedding", "index": index, "embedding": vector(str(text))}
            for index, text in enumerate(texts)
        ]
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", ""),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            headers=self._headers("openai"),
        )

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        # Anthropic's own header, or a bearer token as newer SDKs send the key.
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        key = request.headers.get("x-api-key", bearer)
        body, refusal = await self._admit(request, key, "anthropic")
        if refusal is not None:
            return refusal
        text = reply_text(body.get("messages", []))
        usage = {
            "input_tokens": words(body.get("messages", []))
            + len(content_text(body.get("system", "")).split()),
            "output_tokens": len(text.split()),
        }
        if body.get("stream"):
            return await self._anthropic_stream(request, body, text, usage)
        return web.json_response(
            {
                "id": f"msg_{self._served}",
                "type": "message",
                "role": "assistant",
                "model": body.get("model", ""),
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": usage,
            },
            headers=self._headers("anthropic"),
        )

    async def _admit(
        self, request: web.Request, key: str, dialect: str
    ) -> tuple[dict[str, Any], web.Response | None]:
        """Log the request, then the refusal it gets (fault, bad key, over the limit), if any."""
        body = await request.json()
        now = time.time()
        self.received.append(
            Received(
                path=request.path,
                at=now,
                api_key=key,
                model=str(body.get("model", "")),
                stream=bool(body.get("stream")),
                body=body,
            )
        )
        self._served += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.faults:
            fault = self.faults.popleft()
            await asyncio.sleep(fault.delay)
            message = f"{fault.message}: {key}" if fault.echo_key else fault.message
            return body, self._error(dialect, fault.status, message, fault.headers)
        if key != self.api_key:
            message = f"Incorrect API key provided: {key}"
            return body, self._error(dialect, 401, message, {})
        if self._over_limit(now):
            self.over_limit += 1
            return body, self._error(dialect, 429, "rate limit", {"retry-after": "1"})
        return body, None

    def _over_limit(self, now: float) -> bool:
        if self._enforced is None:
            return False
        limit, window = self._enforced
        recent = [r for r in self.received[:-1] if r.at > now - window]
        return len(recent) >= limit

    def _error(
        self, dialect: str, status: int, message: str, headers: Mapping[str, str]
    ) -> web.Response:
        if dialect == "openai":
            kind = OPENAI_ERROR_TYPES.get(status, "server_error")
            payload: dict[str, Any] = {
                "error": {"message": message, "type": kind, "param": None, "code": kind}
            }
        else:
            kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error")
            payload = {"type": "error", "error": {"type": kind, "message": message}}
        return web.json_response(
            payload, status=status, headers={**self._request_id(dialect), **headers}
        )

    def _headers(self, dialect: str) -> dict[str, str]:
        return {**self._request_id(dialect), **self.success_headers}

    def _request_id(self, dialect: str) -> dict[str, str]:
        name = "x-request-id" if dialect == "openai" else "request-id"
        return {name: f"req_{self._served}"}

    async def _openai_stream(
        self, request: web.Request, body: dict[str, Any], text: str, usage: dict[str, int] | None
    ) -> web.StreamResponse:
        response = await self._sse(request, "openai")
        base = {
            "id": f"chatcmpl-{self._served}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", ""),
        }
        for index, word in enumerate(text.split()):
            delta = {"role": "assistant", "content": word if index == 0 else f" {word}"}
            choice = {"index": 0, "delta": delta, "finish_reason": None}
            await send(response, None, {**base, "choices": [choice]})
        await send(
            response,
            None,
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        )
        if usage is not None:
            await send(response, None, {**base, "choices": [], "usage": usage})
        await response.write(b"data: [DONE]\n\n")
        return response

    async def _anthropic_stream(
        self, request: web.Request, body: dict[str, Any], text: str, usage: dict[str, int]
    ) -> web.StreamResponse:
        response = await self._sse(request, "anthropic")
        message = {
            "id": f"msg_{self._served}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", ""),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1},
        }
        await send(response, "message_start", {"type": "message_start", "message": message})
        block = {"type": "content_block_start", "index": 0}
        await send(response, "content_block_start", {**block, "content_block": _empty_text()})
        await send(response, "ping", {"type": "ping"})
        for index, word in enumerate(text.split()):
            delta = {"type": "text_delta", "text": word if index == 0 else f" {word}"}
            event = {"type": "content_block_delta", "index": 0, "delta": delta}
            await send(response, "content_block_delta", event)
        await send(response, "content_block_stop", {"type": "content_block_stop", "index": 0})
        end = {"stop_reason": "end_turn", "stop_sequence": None}
        last = {"output_tokens": usage["output_tokens"]}
        await send(
            response, "message_delta", {"type": "message_delta", "delta": end, "usage": last}
        )
        await send(response, "message_stop", {"type": "message_stop"})
        return response

    async def _sse(self, request: web.Request, dialect: str) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", **self._headers(dialect)}
        )
        await response.prepare(request)
        return response


def _empty_text() -> dict[str, str]:
    return {"type": "text", "text": ""}


async def send(response: web.StreamResponse, event: str | None, data: dict[str, Any]) -> None:
    """Write one SSE event."""
    head = f"event: {event}\n" if event else ""
    await response.write(f"{head}data: {json.dumps(data)}\n\n".encode())


def content_text(content: Any) -> str:
    """The text of a message's content: a string or a list of text blocks."""
    if isinstance(content, str):
        return content
    return " ".join(str(block.get("text", "")) for block in content if isinstance(block, dict))


def words(messages: list[dict[str, Any]]) -> int:
    return sum(len(content_text(message.get("content", "")).split()) for message in messages)


def reply_text(messages: list[dict[str, Any]]) -> str:
    """``echo:`` and the last user message."""
    users = [m for m in messages if m.get("role") == "user"]
    return f"echo: {content_text(users[-1].get('content', '')) if users else ''}".strip()


def vector(text: str) -> list[float]:
    """A deterministic unit-free vector of the text."""
    digest = hashlib.sha256(text.encode()).digest()
    return [byte / 255 for byte in digest[:VECTOR_SIZE]]
