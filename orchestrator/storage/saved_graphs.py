"""Saved graphs per tenant, with names, labels and versions, over a TaskGraphRepository.

The repository stores plain graph JSON by id; this adds what SaveGraph/ListGraphs need by
storing, under ``<tenant>/<graph_id>``, the canonical graph JSON plus one extra key,
``saved``, with the metadata (graph loaders ignore unknown keys). No protobuf here: the
wire layer (:mod:`graphmesh.orchestrator.wire.convert`) converts.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from graphmesh.orchestrator.errors import GraphIssue, GraphmeshError, GraphValidationError
from graphmesh.orchestrator.graph import graph_from_json, graph_to_json
from graphmesh.orchestrator.runs.paging import PageTokens, default_page_tokens, label_scope
from graphmesh.orchestrator.runs.records import JsonObject, Page
from graphmesh.orchestrator.storage.base import TaskGraphRepository
from graphmesh.orchestrator.task.registry import TaskRegistry, default_registry

_META = "saved"


class GraphNotFoundError(GraphmeshError):
    """No saved graph with that id is visible to the caller's tenant."""


@dataclass(frozen=True, kw_only=True)
class SavedGraph:
    """A stored graph and its metadata; ``graph`` is empty in listings."""

    graph_id: str
    name: str = ""
    description: str = ""
    graph: JsonObject = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    version: int = 1


def check_graph(
    data: Any, registry: TaskRegistry = default_registry
) -> tuple[JsonObject | None, list[GraphIssue]]:
    """A graph's canonical JSON (None when it does not load) and every problem found:
    loading errors, else validation issues."""
    try:
        graph = graph_from_json(data, registry)
    except GraphValidationError as exc:
        return None, list(exc.issues)
    return graph_to_json(graph), graph.validate()


def canonical_graph(data: Any, registry: TaskRegistry = default_registry) -> JsonObject:
    """Canonical graph JSON; raises GraphValidationError for anything that does not load."""
    return graph_to_json(graph_from_json(data, registry))


class SavedGraphStore:
    """Tenant-scoped saved graphs. Required inputs may stay open (a run gives them)."""

    def __init__(
        self,
        repository: TaskGraphRepository,
        registry: TaskRegistry = default_registry,
        page_tokens: PageTokens | None = None,
    ) -> None:
        self.repository = repository
        self.registry = registry
        self._page_tokens = page_tokens or default_page_tokens()

    async def save(
        self,
        *,
        tenant: str,
        graph: Any,
        graph_id: str = "",
        name: str = "",
        description: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> SavedGraph:
        data = self._checked(graph)
        graph_id = graph_id or uuid.uuid4().hex
        previous = await self._load(tenant, graph_id)
        moment = datetime.now(UTC)
        saved = SavedGraph(
            graph_id=graph_id,
            name=name,
            description=description,
            graph=data,
            labels=dict(labels or {}),
            created_at=previous.created_at if previous else moment,
            updated_at=moment,
            version=previous.version + 1 if previous else 1,
        )
        await self.repository.save_graph(_key(tenant, graph_id), _document(saved))
        return saved

    async def get(self, *, tenant: str, graph_id: str) -> SavedGraph:
        saved = await self._load(tenant, graph_id)
        if saved is None:
            raise GraphNotFoundError(f"no saved graph {graph_id!r}")
        return saved

    async def list_graphs(
        self,
        *,
        tenant: str,
        labels: Mapping[str, str] | None = None,
        page_size: int = 50,
        page_token: str = "",
    ) -> Page[SavedGraph]:
        """Most recently updated first, without the graphs themselves; the token holds the
        (update time, id) of the page's last graph (keyset)."""
        tokens, scope = self._page_tokens, label_scope(labels or {})
        found = [saved for saved in await self._all(tenant) if _has_labels(saved, labels or {})]
        found.sort(key=_order, reverse=True)
        if page_token:
            after = tokens.decode(page_token, listing="graphs", tenant=tenant, scope=scope)
            found = [saved for saved in found if list(_order(saved)) < after]
        page = found[: max(1, page_size)]
        token = ""
        if len(found) > len(page):
            position = list(_order(page[-1]))
            token = tokens.encode(listing="graphs", tenant=tenant, scope=scope, position=position)
        return Page(items=[_without_graph(saved) for saved in page], next_page_token=token)

    def _checked(self, graph: Any) -> JsonObject:
        data = canonical_graph(graph, self.registry)
        _, issues = check_graph(data, self.registry)
        issues = [issue for issue in issues if issue.code != "missing_input"]
        if issues:
            raise GraphValidationError(issues)
        return data

    async def _load(self, tenant: str, graph_id: str) -> SavedGraph | None:
        document = await self.repository.get_graph(_key(tenant, graph_id))
        return None if document is None else _from_document(graph_id, document)

    async def _all(self, tenant: str) -> list[SavedGraph]:
        prefix = _key(tenant, "")
        keys = [key for key in await self.repository.list_graphs() if key.startswith(prefix)]
        loaded = [await self._load(tenant, key.removeprefix(prefix)) for key in keys]
        return [saved for saved in loaded if saved is not None]


def _key(tenant: str, graph_id: str) -> str:
    return f"{tenant}/{graph_id}"


def _document(saved: SavedGraph) -> JsonObject:
    meta = {
        "name": saved.name,
        "description": saved.description,
        "labels": dict(saved.labels),
        "created_at": saved.created_at.isoformat(),
        "updated_at": saved.updated_at.isoformat(),
        "version": saved.version,
    }
    return {**saved.graph, _META: meta}


def _from_document(graph_id: str, document: JsonObject) -> SavedGraph:
    meta = document.get(_META) or {}
    now = datetime.now(UTC).isoformat()  # a graph saved by another tool has no metadata
    return SavedGraph(
        graph_id=graph_id,
        name=str(meta.get("name", "")),
        description=str(meta.get("description", "")),
        graph={key: value for key, value in document.items() if key != _META},
        labels=dict(meta.get("labels", {})),
        created_at=datetime.fromisoformat(meta.get("created_at", now)),
        updated_at=datetime.fromisoformat(meta.get("updated_at", now)),
        version=int(meta.get("version", 1)),
    )


def _without_graph(saved: SavedGraph) -> SavedGraph:
    return SavedGraph(
        graph_id=saved.graph_id,
        name=saved.name,
        description=saved.description,
        labels=saved.labels,
        created_at=saved.created_at,
        updated_at=saved.updated_at,
        version=saved.version,
    )


def _has_labels(saved: SavedGraph, labels: Mapping[str, str]) -> bool:
    return all(saved.labels.get(key) == value for key, value in labels.items())


def _order(saved: SavedGraph) -> tuple[str, str]:
    return (saved.updated_at.isoformat(), saved.graph_id)
