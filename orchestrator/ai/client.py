"""The one interface AI tasks call models through.

The engine never imports a model runtime. In embedded mode the composition root hands the
runner an in-process implementation (``graphmesh.local_models.LocalModelClient``); in
the service mesh it is a gRPC client that routes by model-name prefix (``hf:``, ``triton:``,
``openai:``, ``anthropic:``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


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
    """Model calls by routed model name (``hf:all-MiniLM-L6-v2``, ``openai:gpt-4o`` ...)."""

    async def load_model(self, model: str) -> ModelInfo: ...

    async def embed(self, model: str, texts: Sequence[str]) -> list[list[float]]: ...

    async def generate(self, model: str, prompt: str, *, max_new_tokens: int = 128) -> str: ...

    async def summarize(self, model: str, text: str) -> str: ...

    async def rewrite(self, model: str, text: str, prompt: str) -> str: ...

    async def translate(self, model: str, text: str, source: str, target: str) -> str: ...

    async def answer_question(self, model: str, question: str, context: str) -> str: ...
