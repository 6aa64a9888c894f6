"""Checks of what a caller asks the gateway for, before any limit is taken or any provider
called: text that can travel (UTF-8, no NUL), sizes within bounds, finite numbers. Each
failure is an :class:`InvalidRequest` naming the field."""

from __future__ import annotations

import math
from collections.abc import Sequence

from graphmesh.services.gateway.errors import InvalidRequest
from graphmesh.services.gateway.types import ChatRequest

MAX_TEXT_CHARS = 2_000_000  # all the text of one request
MAX_EMBED_TEXTS = 2048
MAX_OUTPUT_TOKENS = 1_000_000
MAX_STOP_SEQUENCES = 4
MAX_TEMPERATURE = 2.0


def check_texts(field: str, texts: Sequence[str]) -> None:
    """Every text is a str that can travel, and all of them together are not too long."""
    total = 0
    for index, text in enumerate(texts):
        name = f"{field}[{index}]"
        if not isinstance(text, str):
            raise InvalidRequest(f"{name} must be a string")
        if "\x00" in text:
            raise InvalidRequest(f"{name} contains a NUL character")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest(f"{name} is not valid UTF-8 (a lone surrogate)") from None
        total += len(text)
    if total > MAX_TEXT_CHARS:
        raise InvalidRequest(f"{field} has {total} characters, more than {MAX_TEXT_CHARS}")


def check_embed(texts: Sequence[str]) -> None:
    """A batch of texts to embed."""
    if isinstance(texts, str) or not 1 <= len(texts) <= MAX_EMBED_TEXTS:
        raise InvalidRequest(f"texts must be a list of 1 to {MAX_EMBED_TEXTS} strings")
    check_texts("texts", texts)


def check_chat(request: ChatRequest) -> None:
    """A chat request."""
    if not request.messages:
        raise InvalidRequest("messages must not be empty")
    roles = [message.role for message in request.messages]
    if any(role not in ("user", "assistant") for role in roles):
        raise InvalidRequest("messages[].role must be 'user' or 'assistant'")
    check_texts("messages", [request.system, *(m.content for m in request.messages)])
    if not 1 <= request.max_tokens <= MAX_OUTPUT_TOKENS:
        raise InvalidRequest(f"max_tokens must be between 1 and {MAX_OUTPUT_TOKENS}")
    temperature = request.temperature
    if temperature is not None and not (
        math.isfinite(temperature) and 0 <= temperature <= MAX_TEMPERATURE
    ):
        raise InvalidRequest(f"temperature must be between 0 and {MAX_TEMPERATURE}")
    if len(request.stop) > MAX_STOP_SEQUENCES:
        raise InvalidRequest(f"stop has more than {MAX_STOP_SEQUENCES} sequences")
    check_texts("stop", request.stop)
