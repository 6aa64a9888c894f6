"""Service settings from the environment (prefix ``GRAPHMESH_``) or keyword arguments.

Tokens come from ``GRAPHMESH_TOKENS`` (a JSON object ``{"<token>": "<tenant>"}``) and/or
``GRAPHMESH_TOKENS_FILE`` (the same JSON object, or one ``TOKEN TENANT`` pair per line,
``#`` comments allowed). They are kept out of ``repr`` so a logged settings object never
shows them; the database URL is a secret for the same reason (it may hold a password).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from graphmesh.services.kit.server import TlsFiles


class ServiceSettings(BaseSettings):
    """Where a service listens, who may call it, and how it shuts down."""

    model_config = SettingsConfigDict(env_prefix="GRAPHMESH_", extra="ignore")

    listen: str = Field(default="127.0.0.1:50051", description="HOST:PORT; port 0 picks one")
    auth: bool = Field(default=True, description="false: no tokens, every caller is 'default'")
    tokens: dict[str, str] = Field(default_factory=dict, repr=False)
    tokens_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = Field(
        default=None, description="set for mTLS: clients must present a cert signed by it"
    )
    database_url: SecretStr | None = None
    grace_period: float = Field(default=10.0, ge=0, description="seconds in-flight calls get")
    metrics_listen: str | None = Field(
        default=None, description="HOST:PORT of Prometheus /metrics (port 0 picks one); unset: off"
    )

    def token_tenants(self) -> dict[str, str]:
        """Every configured token and its tenant (the file's entries win over the env's)."""
        tokens = dict(self.tokens)
        if self.tokens_file is not None:
            tokens.update(load_tokens(self.tokens_file))
        return tokens

    def tls(self) -> TlsFiles | None:
        """The TLS files, or None for plaintext; a cert without its key is an error."""
        if self.tls_cert_file is None and self.tls_key_file is None:
            return None
        if self.tls_cert_file is None or self.tls_key_file is None:
            raise ValueError("TLS needs both GRAPHMESH_TLS_CERT_FILE and GRAPHMESH_TLS_KEY_FILE")
        return TlsFiles(
            cert_file=self.tls_cert_file,
            key_file=self.tls_key_file,
            client_ca_file=self.tls_client_ca_file,
        )


def load_tokens(path: Path) -> dict[str, str]:
    """``{token: tenant}`` from a JSON object file or ``TOKEN TENANT`` lines."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        data = json.loads(text)
        return {str(token): str(tenant) for token, tenant in data.items()}
    tokens: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 2:
            # The line number only: the line itself holds a token.
            raise ValueError(f"{path}:{number}: expected 'TOKEN TENANT'")
        tokens[fields[0]] = fields[1]
    return tokens
