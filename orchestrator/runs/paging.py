"""Page tokens of every listing (ListRuns, ListGraphs), made in one place.

A token names a keyset position (the sort key of the last item of the page), so items
created while a client pages are neither skipped nor repeated. It is opaque and bound to
its listing, its tenant and its filter by an HMAC: another tenant's token, a token of
another filter, and an edited or forged one are all :class:`InvalidPageTokenError`.

The key comes from ``GRAPHMESH_PAGE_TOKEN_KEY``; without it, replicas that share a database
(``GRAPHMESH_DATABASE_URL``) derive the same key from its URL, so a token one replica made
works on every other; a process with neither draws its own, and its tokens only work on it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from functools import cache
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from graphmesh.orchestrator.runs.records import InvalidPageTokenError, RunFilter

MAX_TOKEN_LENGTH = 2048
_MAC_BYTES = 16
Position = list[Any]


class PageTokenSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRAPHMESH_", extra="ignore")

    page_token_key: SecretStr | None = None
    database_url: SecretStr | None = None


class PageTokens:
    """Encodes and checks page tokens with one HMAC key (random unless given)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def encode(self, *, listing: str, tenant: str, scope: Any, position: Position) -> str:
        """The token for ``position`` of ``listing`` (e.g. ``"runs"``) as ``tenant``
        sees it through the filter ``scope`` (any JSON value)."""
        body = _canonical(position)
        mac = self._mac(listing, tenant, scope, body)
        return f"{_b64(body)}.{_b64(mac)}"

    def decode(self, token: str, *, listing: str, tenant: str, scope: Any) -> Position:
        """The position of a token this codec made for the same listing, tenant and
        scope; :class:`InvalidPageTokenError` for anything else."""
        body, mac = self._split(token)
        expected = self._mac(listing, tenant, scope, body)
        if not hmac.compare_digest(mac, expected):
            raise InvalidPageTokenError(
                "invalid page token: not from this listing, its filter or its caller"
            )
        position = json.loads(body)
        if not isinstance(position, list):
            raise InvalidPageTokenError("invalid page token")
        return position

    def _split(self, token: str) -> tuple[bytes, bytes]:
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise InvalidPageTokenError("invalid page token")
        body, _, mac = token.partition(".")
        try:
            return _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError):
            raise InvalidPageTokenError("invalid page token") from None

    def _mac(self, listing: str, tenant: str, scope: Any, body: bytes) -> bytes:
        message = _canonical([listing, tenant, scope]) + b"\n" + body
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_MAC_BYTES]


@cache
def default_page_tokens() -> PageTokens:
    """The process's codec (see the module docstring for where its key comes from)."""
    settings = PageTokenSettings()
    if settings.page_token_key is not None:
        secret = settings.page_token_key.get_secret_value()
    elif settings.database_url is not None:
        secret = "graphmesh page tokens\n" + settings.database_url.get_secret_value()
    else:
        return PageTokens()
    return PageTokens(hashlib.sha256(secret.encode()).digest())


def label_scope(labels: Mapping[str, str]) -> list[list[str]]:
    """A label filter as a canonical scope value."""
    return sorted([str(key), str(value)] for key, value in labels.items())


def run_scope(run_filter: RunFilter) -> list[Any]:
    """The scope of a ListRuns token: its statuses and labels (the tenant is bound
    apart)."""
    return [sorted(status.value for status in run_filter.statuses), label_scope(run_filter.labels)]


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
