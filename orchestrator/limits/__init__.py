"""Limiters: rate (sliding-window log), concurrency (leased slots) and composite.

The interface is :class:`~graphmesh.orchestrator.limits.base.Limiter`. Rate and concurrency
limiters keep their state in a :class:`~graphmesh.orchestrator.limits.store.LimitStore`,
imported from its own module so a caller only pulls in the driver it uses: ``memory`` (one
process), ``sqlite`` (embedded mode, every process on one file) and ``postgres`` (the
service mesh: global across processes). All pass ``tests/contract/test_limiters.py``::

    async with PostgresLimitStore.open(dsn) as store:
        openai = CompositeLimiter(
            ConcurrencyLimiter(store, name="openai-concurrency", limit=8, lease=60),
            RateLimiter(store, name="openai-rpm", limit=500, window=60),
        )
        async with openai.slot("openai"):
            ...
"""

from graphmesh.orchestrator.limits.base import (
    Decision,
    Limiter,
    LimiterBase,
    Permit,
    seconds_from_now,
)
from graphmesh.orchestrator.limits.composite import CompositeLimiter
from graphmesh.orchestrator.limits.memory import MemoryLimitStore
from graphmesh.orchestrator.limits.store import LimitStore, Taken
from graphmesh.orchestrator.limits.stored import ConcurrencyLimiter, RateLimiter

__all__ = [
    "CompositeLimiter",
    "ConcurrencyLimiter",
    "Decision",
    "LimitStore",
    "Limiter",
    "LimiterBase",
    "MemoryLimitStore",
    "Permit",
    "RateLimiter",
    "Taken",
    "seconds_from_now",
]
