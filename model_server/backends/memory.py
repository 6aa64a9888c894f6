"""Deterministic in-memory backends: no torch, no files, instant to load.

They stand in for real models where the model's quality is not what a test is about
(batching, routing, lifecycle, the gRPC service), and they behave like the real backends in
every way a caller can observe: batched, ordered, unit-norm vectors, one reply per
conversation, token counts (one token per word), streaming that honours cancellation.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Sequence

from graphmesh.model_server.backends.base import (
    Cancelled,
    Completion,
    Conversation,
    Embedded,
    FinishReason,
    Sampling,
    TextSink,
    Usage,
)

_WORD = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


class HashingEmbeddingBackend:
    """Bag-of-words vectors by feature hashing, so texts sharing words lie close together."""

    def __init__(self, *, dimensions: int = 64, delay: float = 0.0) -> None:
        self._dimensions = dimensions
        self._delay = delay
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
        return [embedded.vector for embedded in self.embed_counted(texts)]

    def embed_counted(self, texts: Sequence[str], *, normalize: bool = True) -> list[Embedded]:
        """Vectors with one token counted per word; ``delay`` seconds per batch."""
        self.batch_sizes.append(len(texts))
        if self._delay:
            time.sleep(self._delay)
        return [
            Embedded(
                vector=self._vector(text, normalize),
                usage=Usage(input_tokens=len(_words(text))),
            )
            for text in texts
        ]

    def _vector(self, text: str, normalize: bool) -> list[float]:
        vector = [0.0] * self._dimensions
        for word in _words(text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            vector[int.from_bytes(digest, "big") % self._dimensions] += 1.0
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector] if normalize else vector


class EchoChatBackend:
    """Replies with the first ``max_new_tokens`` words of the conversation's last message;
    streams them one word every ``word_delay`` seconds."""

    def __init__(self, *, word_delay: float = 0.0) -> None:
        self._word_delay = word_delay
        self.batch_sizes: list[int] = []
        self.batch_keys: list[set[tuple[int, float, float, int | None, tuple[str, ...]]]] = []
        self.streamed_words: list[int] = []

    @property
    def context_window(self) -> int:
        """Nominal window; the echo never reads beyond the last message."""
        return 8192

    def chat(self, conversations: Sequence[Conversation], max_new_tokens: int) -> list[str]:
        """The echoed, truncated last message of each conversation."""
        completions = self.complete(conversations, Sampling(max_new_tokens=max_new_tokens))
        return [completion.text for completion in completions]

    def complete(
        self, conversations: Sequence[Conversation], sampling: Sampling
    ) -> list[Completion]:
        """Echoes, with one token per word of the whole conversation as input."""
        self.batch_sizes.append(len(conversations))
        self.batch_keys.append({sampling.batch_key})
        return [self._echo(conversation, sampling) for conversation in conversations]

    def stream(
        self,
        conversation: Conversation,
        sampling: Sampling,
        on_text: TextSink,
        cancelled: Cancelled,
    ) -> Completion:
        """The echo, one word at a time; stops when ``cancelled()``."""
        whole = self._echo(conversation, sampling)
        sent: list[str] = []
        for word in whole.text.split():
            if cancelled():
                self.streamed_words.append(len(sent))
                return Completion(
                    text=" ".join(sent),
                    finish_reason=FinishReason.CANCELLED,
                    usage=Usage(input_tokens=whole.usage.input_tokens, output_tokens=len(sent)),
                )
            on_text(word if not sent else f" {word}")
            sent.append(word)
            if self._word_delay:
                time.sleep(self._word_delay)
        self.streamed_words.append(len(sent))
        return whole

    def _echo(self, conversation: Conversation, sampling: Sampling) -> Completion:
        words = conversation[-1].content.split()
        reply = words[: sampling.max_new_tokens]
        text = " ".join(reply)
        stopped = False
        for stop in sampling.stop:
            if stop and stop in text:
                text = text[: text.index(stop)].rstrip()
                reply, stopped = text.split(), True
        truncated = len(words) > len(reply) and not stopped
        reason = FinishReason.LENGTH if truncated else FinishReason.STOP
        used = sum(len(_words(message.content)) for message in conversation)
        return Completion(
            text=text,
            finish_reason=reason,
            usage=Usage(input_tokens=used, output_tokens=len(reply)),
        )
