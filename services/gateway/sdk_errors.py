"""Translation of the provider SDKs' errors into the gateway's tree, done here once.

The ``openai`` and ``anthropic`` SDKs raise the same family of errors (``APIStatusError``
with the HTTP status and response, ``APITimeoutError``, ``APIConnectionError``), so one
table serves both. The SDK's exception is dropped (``from None``): it holds the request and
a message that may quote the API key; what survives is the status, the provider's own
message (key redacted), its request id and the rate-limit signals of its headers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from graphmesh.services.gateway.errors import (
    DeadlineExceeded,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
    clean_message,
)
from graphmesh.services.gateway.signals import read_signals

# When a 429 names no wait, the caller still needs one to reschedule.
DEFAULT_RETRY_AFTER_S = 1.0
RETRYABLE_CLIENT_STATUSES = frozenset({408, 409})


@dataclass(frozen=True, kw_only=True)
class SdkErrors:
    """One SDK's error classes (``openai.APIStatusError`` ...)."""

    base: type[Exception]
    status: type[Exception]
    timeout: type[Exception]
    connection: type[Exception]


@dataclass(frozen=True, kw_only=True)
class Seam:
    """Where one provider account's SDK calls are translated: the provider's name, its SDK's
    error classes, the header holding its request id, and the secrets never to show."""

    provider: str
    errors: SdkErrors
    request_id_header: str
    secrets: Sequence[str] = field(repr=False)

    @contextmanager
    def translated(self) -> Iterator[None]:
        """Run SDK calls, turning their errors into the gateway's."""
        try:
            yield
        except GatewayError:
            raise
        except self.errors.timeout:
            raise DeadlineExceeded(f"{self.provider} did not answer in time") from None
        except self.errors.connection:
            raise ProviderUnavailable(f"could not reach {self.provider}") from None
        except self.errors.status as error:
            raise self.status_error(error) from None
        except self.errors.base:
            message = f"{self.provider} sent a response that could not be read"
            raise ProviderUnavailable(message) from None

    def status_error(self, error: Exception) -> GatewayError:
        """The gateway error for an SDK status error (``status_code``, ``response``, ``body``)."""
        status = int(getattr(error, "status_code", 0))
        response = getattr(error, "response", None)
        headers: Mapping[str, str] = getattr(response, "headers", {})
        text = provider_message(getattr(error, "body", None), str(getattr(error, "message", "")))
        message = f"{self.provider} answered {status}: {clean_message(text, self.secrets)}"
        request_id = headers.get(self.request_id_header)
        return from_status(status, message, self.provider, request_id, headers)


def from_status(
    status: int, message: str, provider: str, request_id: str | None, headers: Mapping[str, str]
) -> GatewayError:
    """The error an HTTP status means (see :mod:`graphmesh.services.gateway.errors`)."""
    signals = read_signals(headers)
    if status == 429:
        wait = signals.wait if signals.wait is not None else DEFAULT_RETRY_AFTER_S
        return RateLimited(
            message, retry_after=wait, provider=provider, request_id=request_id, signals=signals
        )
    kind = _STATUS_ERRORS.get(status)
    if kind is None:
        retryable = status >= 500 or status in RETRYABLE_CLIENT_STATUSES
        kind = ProviderUnavailable if retryable else InvalidRequest
    return kind(message, provider=provider, request_id=request_id, signals=signals)


_STATUS_ERRORS: dict[int, type[GatewayError]] = {
    400: InvalidRequest,
    401: PermissionDenied,
    403: PermissionDenied,
    404: ModelNotFound,
    422: InvalidRequest,
}


def provider_message(body: object, fallback: str) -> str:
    """The provider's own error message from a decoded error body (OpenAI's ``{"message"}``,
    Anthropic's ``{"error": {"message"}}``), else ``fallback``."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return fallback
