"""What the operator grants: per-tenant task types, data root and database connections.

Frozen values built from the policy file (:mod:`.settings`). :meth:`TaskPolicy.for_tenant`
gives one tenant's :class:`TenantPolicy`: the operator's defaults overlaid with that tenant's
own section. The default with no file at all is deny-by-default: every task type but those
that reach outside the graph (files, databases: ``Task.external_access``), no data root and
no connections.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import SecretStr

from graphmesh.orchestrator.task.base import Task
from graphmesh.orchestrator.task.kinds import ArrayTask

ALL_TYPES = "*"
_TENANT_DIR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True, kw_only=True)
class DatabaseConnection:
    """A Postgres connection the operator names: its DSN (with the role whose privileges
    bound what queries can do), whether tasks may write through it, and a statement
    timeout tasks cannot change."""

    dsn: SecretStr
    read_only: bool = True
    statement_timeout_s: float = 30.0


@dataclass(frozen=True, kw_only=True)
class TenantPolicy:
    """What one tenant's graphs may use. ``task_types`` None: every type without external
    access; a set containing ``"*"``: every type."""

    tenant: str
    task_types: frozenset[str] | None = None
    data_root: Path | None = None
    connections: Mapping[str, DatabaseConnection] = field(default_factory=dict)

    def allows(self, task_type: type[Task]) -> bool:
        """Whether graphs of this tenant may hold a task of this type (an array task: and
        of its item type)."""
        if issubclass(task_type, ArrayTask) and not self.allows(task_type.item_task):
            return False
        if self.task_types is None:
            return not task_type.external_access
        return ALL_TYPES in self.task_types or task_type.type in self.task_types

    def connection(self, name: str) -> DatabaseConnection | None:
        return self.connections.get(name)


@dataclass(frozen=True, kw_only=True)
class TenantRules:
    """One section of the policy file: unset fields fall back to the defaults."""

    task_types: frozenset[str] | None = None
    data_root: Path | None = None
    tenant_data_dirs: bool | None = None
    connections: Mapping[str, DatabaseConnection] | None = None


@dataclass(frozen=True, kw_only=True)
class TaskPolicy:
    """The operator's rules: ``default`` for every tenant, ``tenants`` for some.

    A default ``data_root`` is shared by tenants as ``<data_root>/<tenant>`` (with
    ``tenant_data_dirs``, the default); a tenant's own ``data_root`` is used as it is.
    """

    default: TenantRules = field(default_factory=TenantRules)
    tenants: Mapping[str, TenantRules] = field(default_factory=dict)

    def for_tenant(self, tenant: str) -> TenantPolicy:
        own = self.tenants.get(tenant, TenantRules())
        merged = replace(
            self.default,
            **{name: value for name, value in vars(own).items() if value is not None},
        )
        return TenantPolicy(
            tenant=tenant,
            task_types=merged.task_types,
            data_root=self._data_root(tenant, own, merged),
            connections=dict(merged.connections or {}),
        )

    def _data_root(self, tenant: str, own: TenantRules, merged: TenantRules) -> Path | None:
        if own.data_root is not None:
            return own.data_root
        if merged.data_root is None:
            return None
        if merged.tenant_data_dirs is False:
            return merged.data_root
        if not _TENANT_DIR.match(tenant):
            return None  # a tenant name that is no safe folder name gets no files at all
        return merged.data_root / tenant
