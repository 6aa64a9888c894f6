"""What a sandbox's reply or death means, as the catalog's JavaScript errors.

Every error here is permanent: it says what the script did (threw, ran too long, used
too much memory, crashed its sandbox), and running it again would do the same. Only a
sandbox that could not start is retryable. Texts name the script's limits, never the
worker's own output (its stderr, which holds host paths, goes to the log only).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final

from graphmesh.orchestrator.catalog.errors import (
    JavaScriptError,
    JavaScriptMemoryError,
    JavaScriptSandboxError,
    JavaScriptTimeoutError,
)
from graphmesh.orchestrator.sandbox.process import SandboxGone
from graphmesh.orchestrator.sandbox.settings import SandboxLimits, SandboxSettings

log = logging.getLogger(__name__)
_LOCATION_PREFIX: Final = re.compile(r"^[^:\n]*:\d+: ")


def reply_error(
    reply: dict[str, Any], limits: SandboxLimits, settings: SandboxSettings
) -> JavaScriptError:
    """The error a worker reported for a script it survived."""
    kind = reply.get("error")
    if kind == "timeout":
        return JavaScriptTimeoutError(
            f"JavaScript ran longer than {limits.timeout_s:g} s and was stopped"
        )
    if kind == "memory":
        return JavaScriptMemoryError(
            f"JavaScript used more than {limits.max_memory} bytes and was stopped"
        )
    if kind == "output":
        return JavaScriptError(
            f"the JavaScript result is {reply.get('size')} characters of JSON, more than "
            f"this server allows ({settings.max_output_bytes}, GRAPHMESH_JS_MAX_OUTPUT_BYTES)"
        )
    return js_error(str(reply.get("message", "")))


def js_error(text: str) -> JavaScriptError:
    """A JS exception: its first line, without V8's ``file:line:`` prefix, as the
    message; the whole text (the stack) as ``details``."""
    text = text.strip()
    first = text.splitlines()[0] if text else "JavaScript failed"
    return JavaScriptError(_LOCATION_PREFIX.sub("", first), details=text)


def last_words(stderr: str) -> str:
    """The lines of a dead worker's stderr that say why (V8's ``# Fatal ...`` banner or
    a failed check), without its stack trace."""
    lines = [line.strip("# ").strip() for line in stderr.splitlines()]
    reasons = [line for line in lines if line.startswith(("Fatal", "Check failed", "[FATAL"))]
    return "; ".join(reasons)[:500] if reasons else stderr.strip()[:200]


def death_error(gone: SandboxGone, limits: SandboxLimits, pid: int) -> JavaScriptError:
    """The error for a script whose worker ended under it."""
    log.warning(
        "JavaScript sandbox %d ended (%s): %s",
        pid,
        gone.signal_name or gone.exit_code,
        last_words(gone.stderr) or "no message",
    )
    if gone.out_of_memory:
        return JavaScriptMemoryError(
            f"JavaScript ran out of memory (limit {limits.max_memory} bytes) and its "
            "sandbox was stopped"
        )
    if gone.deadline or gone.out_of_cpu:
        return JavaScriptTimeoutError(
            f"JavaScript ran longer than {limits.timeout_s:g} s and its sandbox was stopped"
        )
    how = gone.signal_name or f"exit code {gone.exit_code}"
    return JavaScriptSandboxError(f"the JavaScript sandbox process died ({how})")
