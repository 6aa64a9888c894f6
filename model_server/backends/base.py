"""The small synchronous interfaces every in-process model backend implements.

Backends are synchronous because torch is: a call blocks its thread for the whole forward
pass. Async callers (the dynamic batcher, the gRPC servicer, the embedded client) offload
them to worker threads and hand each call a whole batch, since one batched forward pass
costs little more than a single one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable


class ModelKind(StrEnum):
    """What a loaded model can do."""

    EMBEDDING = "embedding"
    CHAT = "chat"


@dataclass(frozen=True, kw_only=True)
class ChatMessage:
    """One turn of a conversation, in the roles chat templates understand."""

    role: str
    content: str

    def as_dict(self) -> dict[str, str]:
        """The mapping form chat templates expect."""
        return {"role": self.role, "content": self.content}


Conversation = Sequence[ChatMessage]


@dataclass(frozen=True, kw_only=True)
class Usage:
    """Token counts of one call, as the model's own tokenizer counts them."""

    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )


class FinishReason(StrEnum):
    """Why a generation stopped."""

    STOP = "stop"  # the model ended its answer, or a stop string was reached
    LENGTH = "length"  # max_new_tokens was reached
    CANCELLED = "cancelled"  # the caller gave up (stream cancelled, deadline passed)


@dataclass(frozen=True, kw_only=True)
class Embedded:
    """One text's vector and the tokens it took."""

    vector: list[float]
    usage: Usage


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """How to generate: greedy when ``temperature`` is 0, else sampled (``seed`` repeats it)."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def batch_key(self) -> tuple[int, float, float, int | None, tuple[str, ...]]:
        """Requests with equal keys can share one generation batch; any difference in
        settings splits them, so no request is generated with another's settings."""
        return (self.max_new_tokens, self.temperature, self.top_p, self.seed, self.stop)


@dataclass(frozen=True, kw_only=True)
class Completion:
    """One generated reply with why it stopped and the tokens it took."""

    text: str
    finish_reason: FinishReason
    usage: Usage


Cancelled = Callable[[], bool]
"""Polled during generation; True stops it after the current token."""
TextSink = Callable[[str], None]
"""Receives each piece of text as it is produced."""


@runtime_checkable
class EmbeddingBackend(Protocol):
    """Turns texts into fixed-size vectors."""

    @property
    def dimensions(self) -> int:
        """Length of every vector ``embed`` returns."""
        ...

    @property
    def max_input_tokens(self) -> int:
        """Inputs are truncated to this many tokens."""
        ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in input order."""
        ...

    def embed_counted(self, texts: Sequence[str], *, normalize: bool = True) -> list[Embedded]:
        """One vector and token count per text, in input order; unit length if ``normalize``."""
        ...


@runtime_checkable
class ChatBackend(Protocol):
    """Continues conversations with an assistant turn."""

    @property
    def context_window(self) -> int:
        """Tokens of prompt plus completion the model can attend to."""
        ...

    def chat(self, conversations: Sequence[Conversation], max_new_tokens: int) -> list[str]:
        """One assistant reply per conversation, in input order."""
        ...

    def complete(
        self, conversations: Sequence[Conversation], sampling: Sampling
    ) -> list[Completion]:
        """One reply per conversation, with finish reason and usage, in input order."""
        ...

    def stream(
        self,
        conversation: Conversation,
        sampling: Sampling,
        on_text: TextSink,
        cancelled: Cancelled,
    ) -> Completion:
        """Generate one reply, handing ``on_text`` each new piece as it is produced; stops
        early (``FinishReason.CANCELLED``) once ``cancelled()`` is true."""
        ...


Backend = EmbeddingBackend | ChatBackend


DEVICES_HELP = "cpu, cuda, cuda:N or auto"
DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True, kw_only=True)
class LoadOptions:
    """Where and how a backend loads: ``device`` is cpu, cuda, cuda:N or auto (cuda when
    present); ``dtype`` one of ``DTYPES`` (auto: float32 on cpu, float16 on cuda)."""

    device: str = "auto"
    dtype: str = "auto"
    warm_up: bool = True

    def __post_init__(self) -> None:
        if not _valid_device(self.device):
            raise ValueError(f"device {self.device!r} is not one of {DEVICES_HELP}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")


def _valid_device(device: str) -> bool:
    if device in ("auto", "cpu", "cuda"):
        return True
    prefix, _, index = device.partition(":")
    return prefix == "cuda" and index.isdigit()
