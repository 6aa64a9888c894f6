"""Untrusted JavaScript out of process: a fair pool of locked-down V8 worker processes.

:class:`SandboxPool` runs a :class:`Script` for a tenant; :func:`shared_pool` is the
process's pool (``GRAPHMESH_JS_*`` settings, :class:`SandboxSettings`), which a
``JavaScriptTask`` uses unless its runner's resources hold another under
:data:`SANDBOX_RESOURCE`; a server opens it at start-up with :func:`serving_pool`. The
worker itself is :mod:`.worker`.
"""

from typing import Final

from graphmesh.orchestrator.sandbox.fair import FairSlots
from graphmesh.orchestrator.sandbox.pool import (
    SandboxPool,
    Script,
    serving_pool,
    set_shared_pool,
    shared_pool,
)
from graphmesh.orchestrator.sandbox.settings import SandboxLimits, SandboxSettings

SANDBOX_RESOURCE: Final = "javascript_sandbox"
"""The runner resource that names the :class:`SandboxPool` for JavaScript tasks."""

__all__ = [
    "SANDBOX_RESOURCE",
    "FairSlots",
    "SandboxLimits",
    "SandboxPool",
    "SandboxSettings",
    "Script",
    "serving_pool",
    "set_shared_pool",
    "shared_pool",
]
