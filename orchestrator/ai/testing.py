"""FakeModelClient: a deterministic in-memory ModelClient for unit tests.

Embeddings are derived from a hash of the text (same text, same unit vector), text calls
return echo-style transforms of their inputs, usage counts words as tokens (input: the
words sent, output: the words returned), and every call is recorded in ``calls``.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphmesh.orchestrator.ai.client import Embedded, Generated, ModelError, ModelInfo, Usage


@dataclass(frozen=True, kw_only=True)
class ModelCall:
    """One recorded call: the method name, the model and the other arguments."""

    method: str
    model: str
    args: Mapping[str, Any] = field(default_factory=dict)


class FakeModelClient:
    """In-memory :class:`~graphmesh.orchestrator.ai.client.ModelClient`.

    ``failures`` maps a model name to the ModelError every call naming that model raises,
    so tests can exercise error paths without a broken real backend.
    """

    def __init__(self, *, dimensions: int = 8, failures: Mapping[str, ModelError] | None = None):
        self.dimensions = dimensions
        self.failures = dict(failures or {})
        self.calls: list[ModelCall] = []

    def calls_to(self, method: str) -> list[ModelCall]:
        return [call for call in self.calls if call.method == method]

    def _record(self, method: str, model: str, **args: Any) -> None:
        self.calls.append(ModelCall(method=method, model=model, args=args))
        failure = self.failures.get(model)
        if failure is not None:
            raise failure

    async def load_model(self, model: str) -> ModelInfo:
        self._record("load_model", model)
        provider = model.split(":", 1)[0] if ":" in model else "default"
        return ModelInfo(name=model, provider=provider, dimensions=self.dimensions)

    async def embed(self, model: str, texts: Sequence[str]) -> Embedded:
        self._record("embed", model, texts=list(texts))
        vectors = [hash_embedding(text, self.dimensions) for text in texts]
        return Embedded(vectors=vectors, usage=Usage(input_tokens=_words(*texts)))

    async def generate(self, model: str, prompt: str, *, max_new_tokens: int = 128) -> Generated:
        self._record("generate", model, prompt=prompt, max_new_tokens=max_new_tokens)
        return _reply(" ".join(f"generated: {prompt}".split()[:max_new_tokens]), prompt)

    async def summarize(self, model: str, text: str) -> Generated:
        self._record("summarize", model, text=text)
        return _reply(f"summary: {text}", text)

    async def rewrite(self, model: str, text: str, prompt: str) -> Generated:
        self._record("rewrite", model, text=text, prompt=prompt)
        return _reply(f"rewrite[{prompt}]: {text}", text, prompt)

    async def translate(self, model: str, text: str, source: str, target: str) -> Generated:
        self._record("translate", model, text=text, source=source, target=target)
        return _reply(f"[{source}->{target}] {text}", text, source, target)

    async def answer_question(self, model: str, question: str, context: str) -> Generated:
        self._record("answer_question", model, question=question, context=context)
        return _reply(f"answer({question}): {context}", question, context)


def _words(*texts: str) -> int:
    return sum(len(text.split()) for text in texts)


def _reply(text: str, *sent: str) -> Generated:
    return Generated(text=text, usage=Usage(input_tokens=_words(*sent), output_tokens=_words(text)))


def hash_embedding(text: str, dimensions: int) -> list[float]:
    """A unit vector that depends only on ``text`` (sha256 stretched to ``dimensions``)."""
    raw = b""
    counter = 0
    while len(raw) < 4 * dimensions:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    ints = struct.unpack(f"<{dimensions}I", raw[: 4 * dimensions])
    vector = [value / 2**31 - 1.0 for value in ints]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]
