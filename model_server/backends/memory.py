"""Deterministic in-memory backends: no torch, no files, instant to load.

They stand in for real models where the model's quality is not what a test is about
(batching, routing, lifecycle), and they behave like the real backends in every way a
caller can observe: batched, ordered, unit-norm vectors, one reply per conversation.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

from graphmesh.model_server.backends.base import Conversation

_WORD = re.compile(r"\w+")


class HashingEmbeddingBackend:
    """Bag-of-words vectors by feature hashing, so texts sharing words lie close together."""

    def __init__(self, *, dimensions: int = 64) -> None:
        self._dimensions = dimensions
        self.batch_sizes: list[int] = []

    @property
    def dimensions(self) -> int:
        """Length of every vector."""
        return self._dimensions

    @property
    def max_input_tokens(self) -> int:
        """No truncation happens; reported for interface parity."""
        return 1_000_000

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalised hashed bag-of-words vector per text."""
        self.batch_sizes.append(len(texts))
        return [self._vector(text) for text in texts]

    def _vector(self, text: str) -> list[float]:
        vector = [0.0] * self._dimensions
        for word in _WORD.findall(text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            vector[int.from_bytes(digest, "big") % self._dimensions] += 1.0
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]


class EchoChatBackend:
    """Replies with the first ``max_new_tokens`` words of the conversation's last message."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    @property
    def context_window(self) -> int:
        """Nominal window; the echo never reads beyond the last message."""
        return 8192

    def chat(self, conversations: Sequence[Conversation], max_new_tokens: int) -> list[str]:
        """The echoed, truncated last message of each conversation."""
        self.batch_sizes.append(len(conversations))
        return [" ".join(c[-1].content.split()[:max_new_tokens]) for c in conversations]
