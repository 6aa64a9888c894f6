"""Per-task cost of a trivial JavaScriptTask script through the sandbox pool.

Measured: ``input + 1`` run N times, one after another (p50 latency, tasks/s), and N
at once from 8 concurrent callers (tasks/s), through a warm :class:`SandboxPool` (worker
processes, a fresh V8 isolate per task, pipes to the worker). Also the cold start: the
first task of a new pool with no warm worker.

Reference, measured in the same run: the old in-thread call that ran V8 inside the
orchestrator process (a fresh ``MiniRacer`` per task on a thread of the default executor,
as ``JavaScriptTask`` did before the sandbox). Prints one JSON line.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, and bench/queue.py would shadow the
# standard library's ``queue`` (which concurrent.futures imports): drop the folder first.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from graphmesh.orchestrator.sandbox import SandboxLimits, SandboxPool, SandboxSettings, Script

N = 400
CONCURRENCY = 8
CODE = "input + 1"
LIMITS = SandboxLimits(timeout_s=1.0, max_memory=64 * 1024 * 1024)
RUNNER = r"""(function (code, inputJson) {
  const input = JSON.parse(inputJson);
  const fn = new Function("input", "return (" + code + "\n);");
  return JSON.stringify(fn(input));
})"""


def in_thread(code: str, input_json: str) -> Any:
    """The old path: V8 in this process, a fresh context per call."""
    from py_mini_racer import MiniRacer

    with MiniRacer() as racer:
        racer.set_hard_memory_limit(LIMITS.max_memory)
        runner = racer.eval(RUNNER)
        return json.loads(str(runner(code, input_json, timeout_sec=LIMITS.timeout_s)))


async def measure(call: Callable[[int], Awaitable[Any]]) -> dict[str, float]:
    latencies = []
    started = time.perf_counter()
    for i in range(N):
        begun = time.perf_counter()
        assert await call(i) == i + 1
        latencies.append(time.perf_counter() - begun)
    sequential = N / (time.perf_counter() - started)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def bounded(i: int) -> Any:
        async with gate:
            return await call(i)

    started = time.perf_counter()
    await asyncio.gather(*(bounded(i) for i in range(N)))
    concurrent = N / (time.perf_counter() - started)
    return {
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "tasks_per_s": round(sequential),
        "concurrent_tasks_per_s": round(concurrent),
    }


async def main() -> dict[str, Any]:
    async def old(i: int) -> Any:
        return await asyncio.to_thread(in_thread, CODE, str(i))

    await old(0)  # V8 started once in this process, as a long-lived server would have it
    reference = await measure(old)
    cold_started = time.perf_counter()
    async with SandboxPool(SandboxSettings(warm_workers=0, workers=CONCURRENCY)) as cold:
        await cold.run(Script(code=CODE, input_json="0", limits=LIMITS), tenant=None)
        cold_ms = (time.perf_counter() - cold_started) * 1000
    async with SandboxPool(SandboxSettings(workers=CONCURRENCY)) as pool:

        async def sandboxed(i: int) -> Any:
            script = Script(code=CODE, input_json=str(i), limits=LIMITS)
            return await pool.run(script, tenant=None)

        figures = await measure(sandboxed)
    return {
        "bench": "javascript",
        "tasks": N,
        **figures,
        "cold_start_ms": round(cold_ms, 1),
        "in_thread": reference,
        "ratio": round(figures["tasks_per_s"] / reference["tasks_per_s"], 3),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
