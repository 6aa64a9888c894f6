"""The gateway's value objects: what a provider call takes and gives back.

Provider SDK types and protobuf types never get past the adapters; everything the gateway
core and (later) its servicer handle is one of these frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["user", "assistant"]


@dataclass(frozen=True, kw_only=True)
class Usage:
    """Tokens a provider says one call used."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, kw_only=True)
class RateSignals:
    """What a provider's answer says about its limits, in seconds from when it arrived:
    ``retry_after`` (``retry-after``/``retry-after-ms``: wait before the next request) and
    ``pause`` (a rate-limit bucket is empty until its reset). ``None``: nothing said."""

    retry_after: float | None = None
    pause: float | None = None

    @property
    def wait(self) -> float | None:
        """The longest wait either signal asks for, or ``None``."""
        waits = [wait for wait in (self.retry_after, self.pause) if wait is not None]
        return max(waits) if waits else None


NO_SIGNALS = RateSignals()


@dataclass(frozen=True, kw_only=True)
class Message:
    """One turn of a chat."""

    role: Role
    content: str


@dataclass(frozen=True, kw_only=True)
class ChatRequest:
    """A chat completion: ``messages`` after an optional ``system`` prompt, at most
    ``max_tokens`` generated, stopping at any of ``stop``."""

    messages: tuple[Message, ...]
    system: str = ""
    max_tokens: int = 512
    temperature: float | None = None
    stop: tuple[str, ...] = ()

    @classmethod
    def prompt(cls, text: str, *, system: str = "", max_tokens: int = 512) -> ChatRequest:
        """A single user turn."""
        return cls(
            messages=(Message(role="user", content=text),), system=system, max_tokens=max_tokens
        )


@dataclass(frozen=True, kw_only=True)
class Completion:
    """A generated text, with its usage and the provider's request id."""

    text: str
    usage: Usage
    finish_reason: str = ""
    request_id: str | None = None
    signals: RateSignals = field(default=NO_SIGNALS)


@dataclass(frozen=True, kw_only=True)
class Embeddings:
    """One vector per input text, in input order."""

    vectors: tuple[tuple[float, ...], ...]
    usage: Usage
    request_id: str | None = None
    signals: RateSignals = field(default=NO_SIGNALS)


@dataclass(frozen=True, kw_only=True)
class Chunk:
    """A piece of a streamed completion: new ``text``; the last piece has ``usage`` and the
    ``finish_reason``."""

    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
