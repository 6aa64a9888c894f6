"""The operator's task policy for graphs that arrive over the API.

A remote tenant's graph reaches only what the operator grants that tenant: task types,
a data root for file and SQLite tasks, and named database connections. The local user
(embedded mode, ``TaskContext.tenant is None``) is not confined. See ``docs/security.md``.
"""

from graphmesh.orchestrator.policy.access import (
    POLICY_RESOURCE,
    TaskPolicyError,
    tenant_access,
)
from graphmesh.orchestrator.policy.graph import PolicyMiddleware, policy_issues
from graphmesh.orchestrator.policy.model import (
    DatabaseConnection,
    TaskPolicy,
    TenantPolicy,
)
from graphmesh.orchestrator.policy.settings import PolicySettings, load_policy

__all__ = [
    "POLICY_RESOURCE",
    "DatabaseConnection",
    "PolicyMiddleware",
    "PolicySettings",
    "TaskPolicy",
    "TaskPolicyError",
    "TenantPolicy",
    "load_policy",
    "policy_issues",
    "tenant_access",
]
