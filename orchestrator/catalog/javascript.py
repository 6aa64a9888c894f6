"""JavaScriptTask: run user JavaScript in an embedded V8 sandbox (``mini-racer``).

The sandbox is a fresh V8 context per run, with a time and a hard memory limit, and no
``require``, ``fetch``, ``process`` or file access: plain ECMAScript only.

Code convention (``input`` is the task's input, decoded from JSON):

- an expression: ``input.a + input.b``; if it evaluates to a function, the function is
  called with ``input``: ``(input) => input.map(x => x * 2)``;
- otherwise a function body: ``const n = input.length; return n * 2;``; a body that
  declares ``function main(input) {...}`` and returns nothing gets ``main(input)``.

The result must be JSON-serializable (``undefined`` becomes ``null``). Code runs
synchronously: returning a Promise (an ``async`` function, ``import()``) is an error.
"""

from __future__ import annotations

import asyncio
import json
import re
from contextlib import suppress
from typing import Any, Final

from graphmesh.orchestrator.catalog.errors import (
    JavaScriptError,
    JavaScriptMemoryError,
    JavaScriptTimeoutError,
    TaskInputError,
)
from graphmesh.orchestrator.task import Port, Task, TaskContext, TaskInput, TaskOutput, ValueType

DEFAULT_TIMEOUT_SEC: Final = 1.0
DEFAULT_MAX_MEMORY: Final = 64 * 1024 * 1024

# The code and the input travel as string *values* into this fixed function and are
# compiled inside V8 with ``new Function``: nothing is ever pasted into JavaScript source.
_RUNNER: Final = r"""(function (code, inputJson) {
  const input = JSON.parse(inputJson);
  let fn;
  try {
    fn = new Function("input", "return (" + code + "\n);");
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    fn = new Function("input",
      code + "\n;return typeof main === 'function' ? main(input) : undefined;");
  }
  let result = fn(input);
  if (typeof result === "function") result = result(input);
  if (result !== null && typeof result === "object" && typeof result.then === "function") {
    throw new TypeError("the code returned a Promise; JavaScriptTask runs synchronous code only");
  }
  const text = JSON.stringify(result);
  return text === undefined ? "null" : text;
})"""

_LOCATION_PREFIX = re.compile(r"^[^:\n]*:\d+: ")


class JavaScriptTask(Task):
    """Run JavaScript ``code`` on ``input`` in a sandbox; its result is ``output``.

    Config: ``timeout_sec`` (default 1 s) and ``max_memory`` (bytes, default 64 MiB).
    See the module docstring for the code convention.
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
        input_json = _input_json(inputs.get("input"))
        limits = self.limits()
        # V8 runs on its own threads, but setting it up and waiting on it blocks: keep
        # that off the event loop.
        output = await asyncio.to_thread(run_javascript, code, input_json, *limits)
        return {"output": output}

    def limits(self) -> tuple[float, int]:
        """(timeout in seconds, memory limit in bytes) from config, with defaults."""
        timeout = self.config.get("timeout_sec", DEFAULT_TIMEOUT_SEC)
        memory = self.config.get("max_memory", DEFAULT_MAX_MEMORY)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            raise TaskInputError(f"config timeout_sec must be a positive number, not {timeout!r}")
        if not isinstance(memory, int) or isinstance(memory, bool) or memory <= 0:
            raise TaskInputError(f"config max_memory must be a positive integer, not {memory!r}")
        return float(timeout), memory


def _input_json(value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TaskInputError(f"input must be JSON to reach JavaScript: {exc}") from None


def run_javascript(code: str, input_json: str, timeout_sec: float, max_memory: int) -> Any:
    """Run ``code`` on the JSON ``input_json`` in a fresh V8 context (blocking)."""
    from py_mini_racer import JSEvalException, JSFunction, JSTimeoutException, MiniRacer

    with MiniRacer() as racer:
        racer.set_hard_memory_limit(max_memory)
        runner = racer.eval(_RUNNER)
        assert isinstance(runner, JSFunction)
        try:
            result = runner(code, input_json, timeout_sec=timeout_sec)
        except JSTimeoutException:
            # Wait for V8 to report the stopped call before the context closes; otherwise
            # its late callback lands on a closed event loop.
            with suppress(JSEvalException):
                racer.eval("0", timeout_sec=timeout_sec)
            raise JavaScriptTimeoutError(
                f"JavaScript ran longer than {timeout_sec:g} s and was stopped"
            ) from None
        except JSEvalException as exc:
            if racer.was_hard_memory_limit_reached():
                raise JavaScriptMemoryError(
                    f"JavaScript used more than {max_memory} bytes and was stopped"
                ) from None
            raise _js_error(exc) from None
    return json.loads(str(result))


def _js_error(exc: Exception) -> JavaScriptError:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else "JavaScript failed"
    return JavaScriptError(_LOCATION_PREFIX.sub("", first), details=text)
