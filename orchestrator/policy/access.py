"""How a running task learns what its tenant may reach.

:func:`tenant_access` gives ``None`` for the local user (embedded mode: not confined) and
the tenant's :class:`~.model.TenantPolicy` otherwise: from the operator's policy in the
runner's resources (``resources["policy"]``), or the deny-by-default policy when the
composition root passed none, so a forgotten wiring never opens anything up.
"""

from __future__ import annotations

from graphmesh.orchestrator.errors import GraphmeshError
from graphmesh.orchestrator.policy.model import TaskPolicy, TenantPolicy
from graphmesh.orchestrator.task.base import TaskContext

POLICY_RESOURCE = "policy"
_DEFAULT = TaskPolicy()


class TaskPolicyError(GraphmeshError, ValueError):
    """A task asked for something its tenant's policy does not grant (permanent)."""


def tenant_access(ctx: TaskContext) -> TenantPolicy | None:
    """The running task's tenant policy; ``None`` for the local user."""
    if ctx.tenant is None:
        return None
    policy = ctx.resources.get(POLICY_RESOURCE)
    if not isinstance(policy, TaskPolicy):
        policy = _DEFAULT
    return policy.for_tenant(ctx.tenant)
