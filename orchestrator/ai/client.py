"""The one interface AI tasks call models through.

The engine never imports a model runtime. In embedded mode the composition root hands the
runner an in-process implementation (``graphmesh.local_models.LocalModelClient``); in
the service mesh it is a gRPC client that routes by model-name prefix (``hf:``, ``triton:``,
``openai:``, ``anthropic:``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable


@dataclass(frozen=True, kw_only=True, slots=True)
class Usage:
    """Token counts of model calls: what was read and what was produced."""

    input_tokens: int = 0
    output_tokens: int = 0

    def __post_init__(self) -> None:
        if self.input_tokens < 0 or self.output_tokens < 0:
            raise ValueError(f"token counts cannot be negative: {self}")

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


NO_USAGE: Final = Usage()


@dataclass(frozen=True, kw_only=True, slots=True)
class Generated:
    """The text a model produced and what producing it used."""

    text: str
    usage: Usage = NO_USAGE


@dataclass(frozen=True, kw_only=True, slots=True)
class Embedded:
    """One vector per input text, in input order, and what computing them used."""

    vectors: list[list[float]]
    usage: Usage = NO_USAGE


class ModelError(Exception):
    """A model call failed; ``retryable`` tells a queue whether trying again can help."""

    def __init__(self, message: str, *, retryable: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """What is known about one model: its routed name and how it is served."""

    name: str
    provider: str
    task_kinds: tuple[str, ...] = ()
    dimensions: int | None = None
    context_window: int | None = None
    location: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class ModelClient(Protocol):
    """Model calls by routed model name (``hf:all-MiniLM-L6-v2``, ``openai:gpt-4o`` ...).

    Every call returns its token counts (``.usage``) beside its result, so the runner can
    meter each task (``graphmesh.orchestrator.ai.usage``).
    """

    async def load_model(self, model: str) -> ModelInfo: ...

    async def embed(self, model: str, texts: Sequence[str]) -> Embedded: ...

    async def generate(
        self, model: str, prompt: str, *, max_new_tokens: int = 128
    ) -> Generated: ...

    async def summarize(self, model: str, text: str) -> Generated: ...

    async def rewrite(self, model: str, text: str, prompt: str) -> Generated: ...

    async def translate(self, model: str, text: str, source: str, target: str) -> Generated: ...

    async def answer_question(self, model: str, question: str, context: str) -> Generated: ...
