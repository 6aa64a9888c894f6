"""The runner's extension chain: each middleware wraps the next handler of a TaskCall."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from graphmesh.orchestrator.runner.cache_key import cache_key, is_cacheable
from graphmesh.orchestrator.storage.base import TaskOutputRepository
from graphmesh.orchestrator.task.base import Task, TaskContext, TaskInput, TaskOutput


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskCall:
    """One invocation of one task: the task, its merged inputs and its context."""

    task: Task
    inputs: TaskInput
    context: TaskContext


Handler = Callable[[TaskCall], Awaitable[TaskOutput]]


class Middleware(Protocol):
    async def __call__(self, call: TaskCall, call_next: Handler) -> TaskOutput: ...


async def invoke_task(call: TaskCall) -> TaskOutput:
    """The innermost handler: run the task itself."""
    return await call.task.run(call.inputs, call.context)


def build_chain(middleware: Sequence[Middleware], innermost: Handler = invoke_task) -> Handler:
    handler = innermost
    for layer in reversed(middleware):
        handler = _bind(layer, handler)
    return handler


def _bind(layer: Middleware, call_next: Handler) -> Handler:
    async def handle(call: TaskCall) -> TaskOutput:
        return await layer(call, call_next)

    return handle


class CacheMiddleware:
    """Serve cacheable tasks from a TaskOutputRepository; a hit skips ``run``."""

    def __init__(self, repository: TaskOutputRepository) -> None:
        self.repository = repository

    async def __call__(self, call: TaskCall, call_next: Handler) -> TaskOutput:
        key = cache_key(call.task, call.inputs) if is_cacheable(call.task) else None
        if key is None:
            return await call_next(call)
        cached = await self.repository.get_output(call.task.type, key)
        if cached is not None:
            call.context.progress(100, "cached")
            return cached
        output = await call_next(call)
        if _is_json(output):
            await self.repository.save_output(call.task.type, key, output)
        return output


def _is_json(output: TaskOutput) -> bool:
    try:
        json.dumps(output, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True
