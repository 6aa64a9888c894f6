"""The gateway's one exception tree. Provider SDK errors are translated into it once, at the
adapter seam (:mod:`graphmesh.services.gateway.sdk_errors`); the servicer maps it to gRPC
status codes in one table::

    GatewayError
    ├── InvalidRequest        400, 422, a request no limit could ever admit  → INVALID_ARGUMENT
    ├── PermissionDenied      401, 403                                       → PERMISSION_DENIED
    ├── ModelNotFound         404, a model name with no route                → NOT_FOUND
    ├── RateLimited           429, a provider's quota pause, the shared limiter says wait
    │                         (``retry_after`` seconds)                      → RESOURCE_EXHAUSTED
    ├── DeadlineExceeded      the caller's deadline or the provider's timeout → DEADLINE_EXCEEDED
    ├── ProviderUnavailable   retryable: connection errors, 408, 409, 5xx, 529 → UNAVAILABLE
    └── LimiterUnavailable    the shared limiter's database is unreachable    → UNAVAILABLE

Messages are safe to show a caller: a provider's own message is kept (cleaned, cut short,
and with any API key replaced), and so is its request id; nothing else from inside.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import ClassVar

from graphmesh.services.gateway.types import NO_SIGNALS, RateSignals

MAX_MESSAGE = 500
REDACTED = "[redacted]"
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class GatewayError(Exception):
    """A provider call that did not succeed. ``provider`` names the provider (``openai``),
    ``request_id`` is the provider's id of the request, ``signals`` what its answer said
    about its limits."""

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        request_id: str | None = None,
        signals: RateSignals = NO_SIGNALS,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.request_id = request_id
        self.signals = signals

    def __str__(self) -> str:
        if self.request_id:
            return f"{self.message} (request id {self.request_id})"
        return self.message

    @property
    def retry_after(self) -> float | None:
        """Seconds the provider asked to wait before trying again, if it said."""
        return self.signals.wait


class InvalidRequest(GatewayError):
    """The request can never succeed as it is."""


class PermissionDenied(GatewayError):
    """The provider refused the account's credentials or access to the model."""


class ModelNotFound(GatewayError):
    """No such model, at the provider or in the gateway's routes."""


class RateLimited(GatewayError):
    """Not now: try again in :attr:`retry_after` seconds (always set)."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        provider: str | None = None,
        request_id: str | None = None,
        signals: RateSignals = NO_SIGNALS,
    ) -> None:
        super().__init__(message, provider=provider, request_id=request_id, signals=signals)
        self._retry_after = retry_after

    @property
    def retry_after(self) -> float:
        return self._retry_after


class DeadlineExceeded(GatewayError):
    """The call did not finish within the caller's deadline or the provider's timeout."""


class ProviderUnavailable(GatewayError):
    """The provider could not be reached or failed on its side; worth trying again."""

    retryable: ClassVar[bool] = True


class LimiterUnavailable(GatewayError):
    """The shared rate limiter cannot be consulted, so no provider call is made."""


def clean_message(text: str, secrets: Iterable[str] = ()) -> str:
    """A provider's message fit to pass on: every secret replaced, control characters and
    lone surrogates dropped, at most :data:`MAX_MESSAGE` characters."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = _UNPRINTABLE.sub("", text).strip()
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"
