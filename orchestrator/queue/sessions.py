"""Whether a worker session's process still lives: what SQLite and Postgres ask before
they rescue its attempts.

On SQLite a session is a row naming its process: the pid, the host, and a random token
drawn once per process, so a pid reused by a later process (a restarted container's
process is often pid 1 again) is not taken for the old one. :func:`process_alive` can
only answer for processes of this host; for any other it says alive, and their attempts'
leases decide, as before sessions existed.

On Postgres a session's advisory lock says whether it lives. A lock seen released may be
a worker whose connection broke (a network blip, a server restart) and that is taking it
again: :class:`GoneSessions` takes a session for dead only once it is still gone a while
later.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable
from typing import Any

# Drawn once per process (a forked child shares it, but not its parent's pid).
THIS_PROCESS = uuid.uuid4().hex
THIS_HOST = socket.gethostname()


def this_process() -> dict[str, Any]:
    """The columns naming this process in a session row: pid, host, process."""
    return {"pid": os.getpid(), "host": THIS_HOST, "process": THIS_PROCESS}


def process_alive(*, pid: int, host: str, process: str) -> bool:
    """Whether the process a session row names may still run (see the module docs)."""
    if host != THIS_HOST or os.name == "nt":  # cannot tell (and os.kill(pid, 0) kills on Windows)
        return True
    if pid == os.getpid():
        return process == THIS_PROCESS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user
    return True


class GoneSessions:
    """Sessions seen gone, each with when it was first seen so; a session seen live again
    is forgotten. :meth:`confirmed` names those gone for ``confirm_s`` or more."""

    def __init__(self, confirm_s: float) -> None:
        self._confirm_s = confirm_s
        self._since: dict[int, float] = {}

    def confirmed(self, gone: Iterable[int], now: float) -> list[int]:
        """Record that ``gone`` are the sessions gone at ``now``; return those gone since
        ``confirm_s`` ago at least."""
        self._since = {session: self._since.get(session, now) for session in gone}
        return sorted(s for s, since in self._since.items() if now - since >= self._confirm_s)
