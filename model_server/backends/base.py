"""The small synchronous interfaces every in-process model backend implements.

Backends are synchronous because torch is: a call blocks its thread for the whole forward
pass. Async callers (the dynamic batcher, the gRPC servicer, the embedded client) offload
them to worker threads and hand each call a whole batch, since one batched forward pass
costs little more than a single one.
"""

from __future__ import annotations

from collections.abc import Sequence
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


Backend = EmbeddingBackend | ChatBackend
