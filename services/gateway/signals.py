"""Reads what a provider's response headers say about its limits (:class:`RateSignals`).

- ``retry-after-ms`` (milliseconds) or ``retry-after`` (seconds, or an HTTP date): wait.
- OpenAI: ``x-ratelimit-remaining-{requests,tokens}`` with ``x-ratelimit-reset-{...}``
  as a Go-style duration (``1s``, ``6m0s``, ``20ms``).
- Anthropic: ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-remaining``
  with ``...-reset`` as an RFC 3339 time.

A bucket whose ``remaining`` is 0 pauses until its reset. Values that do not parse are
ignored, and every wait is capped at :data:`MAX_WAIT_S`, so a broken or hostile header can
neither crash a call nor stop an account for long.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from graphmesh.services.gateway.types import RateSignals

MAX_WAIT_S = 600.0
OPENAI_BUCKETS = ("requests", "tokens")
ANTHROPIC_BUCKETS = ("requests", "tokens", "input-tokens", "output-tokens")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def read_signals(headers: Mapping[str, str], *, now: datetime | None = None) -> RateSignals:
    """The signals in ``headers`` (case-insensitive mapping, as httpx gives), as of ``now``."""
    at = now or datetime.now(UTC)
    pauses = [
        *_exhausted(
            headers,
            "x-ratelimit-remaining-{}",
            "x-ratelimit-reset-{}",
            OPENAI_BUCKETS,
            lambda value: parse_duration(value),
        ),
        *_exhausted(
            headers,
            "anthropic-ratelimit-{}-remaining",
            "anthropic-ratelimit-{}-reset",
            ANTHROPIC_BUCKETS,
            lambda value: _until(parse_rfc3339(value), at),
        ),
    ]
    return RateSignals(retry_after=retry_after(headers, at), pause=max(pauses, default=None))


def retry_after(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds from ``retry-after-ms``, else ``retry-after``; ``None`` if neither parses."""
    milliseconds = _number(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return _capped(milliseconds / 1000)
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is None:
        seconds = _until(_http_date(value), now)
    return None if seconds is None else _capped(seconds)


def parse_duration(value: str) -> float | None:
    """Seconds of a Go-style duration such as ``1m30.5s`` or ``20ms``; ``None`` if malformed."""
    value = value.strip()
    parts = _DURATION.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def parse_rfc3339(value: str) -> datetime | None:
    """A timezone-aware time from RFC 3339 text; ``None`` if malformed or naive."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _exhausted(
    headers: Mapping[str, str],
    remaining_name: str,
    reset_name: str,
    buckets: tuple[str, ...],
    reset_seconds: Callable[[str], float | None],
) -> list[float]:
    """Seconds until reset of every bucket with nothing remaining."""
    pauses = []
    for bucket in buckets:
        remaining = _number(headers.get(remaining_name.format(bucket)))
        reset = headers.get(reset_name.format(bucket))
        if remaining is None or remaining > 0 or reset is None:
            continue
        seconds = reset_seconds(reset)
        if seconds is not None:
            pauses.append(_capped(seconds))
    return pauses


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _until(at: datetime | None, now: datetime) -> float | None:
    return None if at is None else max((at - now).total_seconds(), 0.0)


def _capped(seconds: float) -> float:
    return min(max(seconds, 0.0), MAX_WAIT_S)
