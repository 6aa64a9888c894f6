"""A pool of replicas behind one route prefix: least-outstanding choice, failed ones benched.

Every replica has its own channel. A call goes to the replica with the fewest calls in
flight (ties in turn, so an idle pool is round-robin); a replica that failed to answer is
skipped for ``down_s`` seconds, yet still tried last when every replica is down, so a pool
whose replicas all restarted recovers on the next call.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import grpc

from graphmesh.v1 import model_pb2_grpc

# Reconnect soon after a replica comes back (gRPC's default backoff grows to two minutes).
CHANNEL_OPTIONS = (
    # An endpoint that resolves to several addresses (dns:/// of a Kubernetes headless
    # Service) spreads its calls over all of them, and re-resolves as pods come and go.
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
)


class Replica:
    """One endpoint of a pool and what the pool knows about it."""

    __slots__ = ("channel", "down_until", "outstanding", "stub", "target")

    def __init__(self, target: str, interceptors: Sequence[Any]) -> None:
        self.target = target
        self.channel = grpc.aio.insecure_channel(
            target, options=CHANNEL_OPTIONS, interceptors=list(interceptors) or None
        )
        self.stub = model_pb2_grpc.ModelServiceStub(self.channel)
        self.outstanding = 0
        self.down_until = 0.0


class ReplicaPool:
    """The replicas serving one route prefix."""

    def __init__(
        self, prefix: str, targets: Sequence[str], *, down_s: float, interceptors: Sequence[Any]
    ) -> None:
        self.prefix = prefix
        self.replicas = [Replica(target, interceptors) for target in targets]
        self.down_s = down_s
        self._turn = itertools.count()

    def order(self) -> list[Replica]:
        """Replicas to try, best first: up ones by calls in flight, then benched ones."""
        now = time.monotonic()
        start = next(self._turn) % len(self.replicas)
        rotated = self.replicas[start:] + self.replicas[:start]
        up = sorted((r for r in rotated if r.down_until <= now), key=lambda r: r.outstanding)
        down = sorted((r for r in rotated if r.down_until > now), key=lambda r: r.down_until)
        return up + down

    def mark_down(self, replica: Replica) -> None:
        replica.down_until = time.monotonic() + self.down_s

    def mark_up(self, replica: Replica) -> None:
        replica.down_until = 0.0

    async def aclose(self) -> None:
        for replica in self.replicas:
            await replica.channel.close(grace=None)
