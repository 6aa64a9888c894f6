"""The sandbox worker: one process that runs user JavaScript for the pool, one task at a time.

The pool starts it as ``python -I worker.py SETTINGS_JSON`` with stdin and stdout as its
pipes to the pool (stderr only for V8's own last words). It imports nothing of graphmesh,
only the standard library and mini-racer, so the code that lives next to untrusted
JavaScript is this file alone. The pool imports it too, for the frame format.

Start-up: V8 starts and runs one warm-up context (it reserves its address space then: a
limit set earlier stops V8 itself); then the process locks itself down (see
:func:`lock_down`), says READY, and serves requests until its stdin closes. Each request
runs in a fresh V8 isolate with the task's heap limit and timeout, under per-task soft
limits on committed memory (RLIMIT_DATA) and CPU time (RLIMIT_CPU): past them the kernel,
or V8's own out-of-memory abort, ends the process, and the pool fails that one task.

Frames are a 4-byte big-endian length and that many bytes of UTF-8 JSON.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import math
import os
import resource
import struct
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, Final

HEADER: Final = struct.Struct(">I")
MIB: Final = 1024 * 1024
# An isolate's own reservations (pointer tables, code range) are mapped when it is made:
# the address-space limit leaves room for one beside what start-up mapped.
ISOLATE_ADDRESS_SPACE: Final = 4096 * MIB
# Committed memory a task may use beyond its heap limit: V8 checks the limit only after
# a GC, so a heap grows past it for a while; the Python side needs a little too.
MEMORY_SLACK: Final = 32 * MIB
# Committed memory the worker itself may gain over its life (Python's allocator, V8's
# process-wide caches), beside each task's share.
GROWTH: Final = 64 * MIB
PR_SET_DUMPABLE: Final = 4
PR_SET_NO_NEW_PRIVS: Final = 38

# The code and the input travel as string *values* into this fixed function and are
# compiled inside V8 with ``new Function``: nothing is ever pasted into JavaScript source.
# JSON.parse and JSON.stringify are taken before user code runs, so replacing them
# changes nothing here.
RUNNER: Final = r"""(function () {
  const parse = JSON.parse, stringify = JSON.stringify, SyntaxErrorType = SyntaxError;
  return function (code, inputJson) {
    const input = parse(inputJson);
    let fn;
    try {
      fn = new Function("input", "return (" + code + "\n);");
    } catch (e) {
      if (!(e instanceof SyntaxErrorType)) throw e;
      fn = new Function("input",
        code + "\n;return typeof main === 'function' ? main(input) : undefined;");
    }
    let result = fn(input);
    if (typeof result === "function") result = result(input);
    if (result !== null && typeof result === "object" && typeof result.then === "function") {
      throw new TypeError(
        "the code returned a Promise; JavaScriptTask runs synchronous code only");
    }
    const text = stringify(result);
    return text === undefined ? "null" : text;
  };
})()"""


# -- frames (shared with the pool) -----------------------------------------------------
def encode_frame(message: dict[str, Any]) -> bytes:
    """``message`` as one frame: its length, then its JSON."""
    body = json.dumps(message, ensure_ascii=False, allow_nan=False).encode("utf-8", "surrogatepass")
    return HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> dict[str, Any]:
    message = json.loads(body.decode("utf-8", "surrogatepass"))
    if not isinstance(message, dict):
        raise ValueError("a sandbox frame must hold a JSON object")
    return message


def read_exact(fd: int, size: int) -> bytes:
    """``size`` bytes from ``fd`` (blocking); fewer only at end of file."""
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# -- the worker ------------------------------------------------------------------------
def main() -> None:
    settings = json.loads(sys.argv[1])
    loop = _start_event_loop()
    from py_mini_racer import init_mini_racer

    init_mini_racer()  # mini-racer's default flags (--single-threaded): no V8 threads
    with _isolate(loop) as racer:
        racer.eval(RUNNER)
    baseline = lock_down(settings)
    write_all(1, encode_frame({"ready": True, "pid": os.getpid()}))
    while (request := _next_request()) is not None:
        _set_task_limits(baseline, request)
        reply = serve(request, loop, settings)
        _lift_task_limits()
        if _worn_out(settings):
            reply["retire"] = True
        write_all(1, encode_frame(reply))
        if reply.get("retire"):
            return


def lock_down(settings: dict[str, Any]) -> int:
    """Limit this process for the rest of its life; return its committed memory now.

    No core dumps and not dumpable (no ptrace by its own user), no new privileges, no
    file may grow (RLIMIT_FSIZE 0), no new descriptor (RLIMIT_NOFILE: the descriptors
    it holds are its pipes to the pool, stderr, and its event loop's own wake-up pair,
    so no file, socket or pipe can be opened), address space (RLIMIT_AS) and committed
    memory (RLIMIT_DATA) bounded by the operator's memory maximum, and a lifetime CPU
    budget (RLIMIT_CPU hard limit).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    max_memory = int(settings["max_memory"])
    data = _status_bytes("VmData")
    address_space = _status_bytes("VmSize") + ISOLATE_ADDRESS_SPACE + 2 * max_memory
    limits = {
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_FSIZE: 0,
        resource.RLIMIT_NOFILE: _lowest_free_descriptor(),
        resource.RLIMIT_AS: address_space,
        resource.RLIMIT_DATA: data + GROWTH + 2 * max_memory + MEMORY_SLACK,
        resource.RLIMIT_CPU: math.ceil(float(settings["cpu_budget_s"])),
    }
    for which, value in limits.items():
        resource.setrlimit(which, (value, value))
    return data


def serve(request: dict[str, Any], loop: asyncio.AbstractEventLoop, settings: Any) -> Any:
    """Run one request; the reply says ``ok`` with the JSON text of the result, or
    ``error`` with its kind (``js``, ``timeout``, ``memory``, ``output``) and message."""
    from py_mini_racer import JSEvalException, JSTimeoutException

    timeout = float(request["timeout_s"])
    max_memory = int(request["max_memory"])
    with _isolate(loop) as racer:
        racer.set_hard_memory_limit(max_memory)
        runner = racer.eval(RUNNER)
        try:
            text = runner(request["code"], request["input"], timeout_sec=timeout)
        except JSTimeoutException:
            # Wait for V8 to report the stopped call before the isolate goes.
            with suppress(JSEvalException):
                racer.eval("0", timeout_sec=timeout)
            return {"error": "timeout"}
        except JSEvalException as exc:
            if racer.was_hard_memory_limit_reached():
                return {"error": "memory"}
            return {"error": "js", "message": str(exc)}
    if not isinstance(text, str):
        return {"error": "js", "message": "the code did not return a JSON value"}
    if len(text) > int(settings["max_output_bytes"]):
        return {"error": "output", "size": len(text)}
    return {"ok": text}


def _set_task_limits(baseline: int, request: dict[str, Any]) -> None:
    """Soft limits for one task, under the hard limits set at lock-down: committed memory
    at start-up plus the worker's growth allowance plus twice the task's heap limit plus
    slack; CPU used so far plus its timeout plus a second (V8 stops the script at the
    timeout itself; this is for code that never returns to V8's interrupt checks)."""
    timeout = float(request["timeout_s"])
    data_hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
    data = baseline + GROWTH + 2 * int(request["max_memory"]) + MEMORY_SLACK
    resource.setrlimit(resource.RLIMIT_DATA, (min(data, data_hard), data_hard))
    cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    cpu = math.ceil(_cpu_seconds() + timeout + 1)
    resource.setrlimit(resource.RLIMIT_CPU, (min(cpu, cpu_hard), cpu_hard))


def _lift_task_limits() -> None:
    for which in (resource.RLIMIT_DATA, resource.RLIMIT_CPU):
        hard = resource.getrlimit(which)[1]
        resource.setrlimit(which, (hard, hard))


def _worn_out(settings: dict[str, Any]) -> bool:
    """Retire before a task could be cut short by this worker's own age: too little of
    its lifetime CPU budget left for the longest task the operator allows."""
    cpu_left = resource.getrlimit(resource.RLIMIT_CPU)[1] - _cpu_seconds()
    return cpu_left < float(settings["max_timeout_s"]) + 2


def _next_request() -> dict[str, Any] | None:
    header = read_exact(0, HEADER.size)
    if len(header) < HEADER.size:
        return None  # the pool closed the pipe: it is gone or done with us
    (size,) = HEADER.unpack(header)
    body = read_exact(0, size)
    return decode_body(body) if len(body) == size else None


@contextmanager
def _isolate(loop: asyncio.AbstractEventLoop) -> Iterator[Any]:
    """A fresh V8 isolate and context, driven by this process's one event-loop thread
    (mini-racer would otherwise start a thread and a loop for each)."""
    from py_mini_racer import mini_racer

    with mini_racer(loop) as racer:
        yield racer


def _start_event_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="v8-callbacks", daemon=True).start()
    return loop


def _lowest_free_descriptor() -> int:
    """The number a new descriptor would get: as RLIMIT_NOFILE, it admits none."""
    probe = os.open("/dev/null", os.O_RDONLY)
    os.close(probe)
    return probe


def _status_bytes(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
