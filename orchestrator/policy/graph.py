"""The task-type rule, checked where a graph arrives and again where each task runs.

:func:`policy_issues` lists every task of a graph (subgraphs and the item type of array
tasks included) whose type the tenant may not use, as graph issues naming the task, so the
API answers INVALID_ARGUMENT with one field violation per task. :class:`PolicyMiddleware`
refuses the same tasks at run time, for runs created before a policy change and resumed
runs: defence in depth.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphmesh.orchestrator.errors import GraphIssue
from graphmesh.orchestrator.policy.access import TaskPolicyError
from graphmesh.orchestrator.policy.model import TaskPolicy, TenantPolicy
from graphmesh.orchestrator.runner.middleware import Handler, TaskCall
from graphmesh.orchestrator.task.base import TaskOutput
from graphmesh.orchestrator.task.registry import TaskRegistry, default_registry

NOT_ALLOWED = "task_not_allowed"


def refusal(task_id: str, task_type: str, tenant: str) -> str:
    return f"task {task_id!r}: tenant {tenant!r} may not use task type {task_type!r}"


def policy_issues(
    graph: Any, policy: TenantPolicy, registry: TaskRegistry = default_registry
) -> list[GraphIssue]:
    """One issue per task of canonical graph JSON ``graph`` its tenant may not use."""
    issues = []
    for task in _tasks(graph):
        task_type = str(task.get("type"))
        if task_type not in registry:
            continue  # loading the graph reports unknown types
        if not policy.allows(registry.get(task_type)):
            message = refusal(str(task.get("id")), task_type, policy.tenant)
            issues.append(
                GraphIssue(code=NOT_ALLOWED, message=message, task_id=str(task.get("id")))
            )
    return issues


def _tasks(graph: Any) -> Iterator[dict[str, Any]]:
    for task in (graph or {}).get("tasks", ()) if isinstance(graph, dict) else ():
        if isinstance(task, dict):
            yield task
            yield from _tasks(task.get("subgraph"))


class PolicyMiddleware:
    """Refuses, at run time, a task whose type its run's tenant may not use."""

    def __init__(self, policy: TaskPolicy) -> None:
        self.policy = policy

    async def __call__(self, call: TaskCall, call_next: Handler) -> TaskOutput:
        tenant = call.context.tenant
        if tenant is not None:
            policy = self.policy.for_tenant(tenant)
            if not policy.allows(type(call.task)):
                raise TaskPolicyError(refusal(call.task.id, call.task.type, tenant))
        return await call_next(call)
