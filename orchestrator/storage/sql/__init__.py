"""The SQL of the Postgres and SQLite backends, one folder per dialect.

Each folder holds ordered migrations (``0001_storage.sql``, ``0002_...``), applied by
:mod:`graphmesh.orchestrator.storage.migrations`, and named-query files: every other
``*.sql`` file, where a ``-- name: <query_name>`` line starts each query. The queries are
parsed once, at import, into :data:`POSTGRES_QUERIES` and :data:`SQLITE_QUERIES`.
Postgres queries take ``%(param)s`` placeholders (psycopg), SQLite ones ``:param``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib.resources import files
from importlib.resources.abc import Traversable
from types import MappingProxyType
from typing import Literal

Dialect = Literal["postgres", "sqlite"]

MIGRATION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>\w+)\.sql$")
_QUERY_HEADER = re.compile(r"^-- name: (?P<name>\w+)[ \t]*$", re.MULTILINE)


def dialect_folder(dialect: Dialect) -> Traversable:
    """The folder holding ``dialect``'s SQL files."""
    return files(__name__) / dialect


def parse_queries(text: str) -> dict[str, str]:
    """Split a named-queries file into ``{name: sql}``; text before the first header is ignored."""
    headers = list(_QUERY_HEADER.finditer(text))
    queries: dict[str, str] = {}
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        end = len(text) if following is None else following.start()
        name = header["name"]
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = text[header.end() : end].strip().removesuffix(";").strip()
    return queries


def load_queries(dialect: Dialect) -> Mapping[str, str]:
    """Every named query of ``dialect``, from all its non-migration ``.sql`` files."""
    queries: dict[str, str] = {}
    for entry in sorted(dialect_folder(dialect).iterdir(), key=lambda entry: entry.name):
        if not entry.name.endswith(".sql") or MIGRATION_FILE.match(entry.name):
            continue
        for name, sql in parse_queries(entry.read_text(encoding="utf-8")).items():
            if name in queries:
                raise ValueError(f"{dialect} query {name!r} is defined twice")
            queries[name] = sql
    return MappingProxyType(queries)


POSTGRES_QUERIES = load_queries("postgres")
SQLITE_QUERIES = load_queries("sqlite")
