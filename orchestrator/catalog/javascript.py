"""JavaScriptTask: run user JavaScript in a sandbox process (V8 through ``mini-racer``).

The script runs out of process, in a worker of the :mod:`graphmesh.orchestrator.sandbox`
pool: a fresh V8 isolate per run, with a time and a hard memory limit, and no
``require``, ``fetch``, ``process`` or file access: plain ECMAScript only. A script that
crashes its sandbox, or runs it out of memory or CPU time, fails its own task; the
process running the graph never notices.

Code convention (``input`` is the task's input, decoded from JSON):

- an expression: ``input.a + input.b``; if it evaluates to a function, the function is
  called with ``input``: ``(input) => input.map(x => x * 2)``;
- otherwise a function body: ``const n = input.length; return n * 2;``; a body that
  declares ``function main(input) {...}`` and returns nothing gets ``main(input)``.

The result must be JSON-serializable (``undefined`` becomes ``null``). Code runs
synchronously: returning a Promise (an ``async`` function, ``import()``) is an error.
"""

from __future__ import annotations

import json
from typing import Any

from graphmesh.orchestrator.catalog.errors import TaskInputError
from graphmesh.orchestrator.sandbox import SANDBOX_RESOURCE, SandboxPool, Script, shared_pool
from graphmesh.orchestrator.task import Port, Task, TaskContext, TaskInput, TaskOutput, ValueType


class JavaScriptTask(Task):
    """Run JavaScript ``code`` on ``input`` in a sandbox; its result is ``output``.

    Config: ``timeout_sec`` (default 1 s) and ``max_memory`` (bytes, default 64 MiB), at
    most the operator's ``GRAPHMESH_JS_MAX_TIMEOUT_S`` and ``GRAPHMESH_JS_MAX_MEMORY``
    (more is refused). See the module docstring for the code convention.
    """

    type = "JavaScriptTask"
    inputs = (
        Port(id="code", value_type=ValueType.CODE),
        Port(id="input", value_type=ValueType.ANY, default=None),
    )
    outputs = (Port(id="output", value_type=ValueType.ANY),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        code = inputs["code"]
        if not isinstance(code, str):
            raise TaskInputError(f"code must be a JavaScript string, not {type(code).__name__}")
        pool = sandbox_pool(ctx)
        script = Script(
            code=code,
            input_json=_input_json(inputs.get("input")),
            limits=pool.settings.limits(self.config),
        )
        return {"output": await pool.run(script, tenant=ctx.tenant)}


def sandbox_pool(ctx: TaskContext) -> SandboxPool:
    """The pool the runner's resources name, else the process's shared pool."""
    pool = ctx.resources.get(SANDBOX_RESOURCE)
    return pool if isinstance(pool, SandboxPool) else shared_pool()


def _input_json(value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TaskInputError(f"input must be JSON to reach JavaScript: {exc}") from None
    except RecursionError:
        raise TaskInputError("input is nested too deeply to reach JavaScript") from None
