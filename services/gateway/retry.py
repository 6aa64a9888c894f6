"""The gateway's one retry loop (the SDKs' own retries are off): retryable failures are
tried again with capped exponential backoff and jitter, never past the caller's deadline.

A failure is retryable when its error says so (:class:`ProviderUnavailable`: connection
errors, 408, 409, 5xx, 529). A provider's ``retry-after`` on such a failure lengthens the
wait. A 429 is not retried here: it goes back to the caller, whose queue reschedules the
work for when the provider allows it, instead of holding a worker meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from graphmesh.services.gateway.errors import DeadlineExceeded, GatewayError

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Up to ``attempts`` tries in all; before try ``n + 1`` wait between half and all of
    ``min(max_delay, base_delay * 2 ** (n - 1))`` seconds (equal jitter)."""

    attempts: int = 4
    base_delay: float = 0.25
    max_delay: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if not 0 < self.base_delay <= self.max_delay:
            raise ValueError("need 0 < base_delay <= max_delay")

    def backoff(self, failures: int, draw: Callable[[], float] = random.random) -> float:
        """The wait after ``failures`` failed tries, ``draw`` giving a number in [0, 1)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (failures - 1))
        return ceiling / 2 + draw() * ceiling / 2


@dataclass(frozen=True, kw_only=True)
class Deadline:
    """A point on the monotonic clock by which a call must be done."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(at=time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds left; zero or less once passed."""
        return self.at - time.monotonic()


async def with_retries(
    attempt: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    deadline: Deadline,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    draw: Callable[[], float] = random.random,
    on_retry: Callable[[GatewayError], None] | None = None,
) -> T:
    """``await attempt()`` until it succeeds, fails for good, runs out of tries, or the next
    wait would pass ``deadline``; the last error is raised as it was. ``on_retry`` hears of
    every failure that is tried again."""
    failures = 0
    while True:
        if deadline.remaining() <= 0:
            raise DeadlineExceeded("the deadline passed before the provider answered")
        try:
            return await attempt()
        except GatewayError as error:
            failures += 1
            if not error.retryable or failures >= policy.attempts:
                raise
            wait = max(policy.backoff(failures, draw), error.retry_after or 0.0)
            if wait >= deadline.remaining():
                raise
            logger.info("retrying in %.2fs after: %s", wait, error)
            if on_retry is not None:
                on_retry(error)
            await sleep(wait)
