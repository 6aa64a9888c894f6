"""SandboxProcess: the pool's handle on one sandbox worker process (blocking calls).

The worker (:mod:`.worker`) runs as ``python -I`` from the root directory, in a session
of its own, with an environment of ``PATH`` and a locale only (none of the orchestrator's
settings, tokens or database URLs), and with no descriptor but its stdin, stdout and
stderr pipes. Every read waits at most until a deadline; past it the process is killed.
A call runs in one pool thread at a time; :meth:`SandboxProcess.kill` may come from any
thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any, Final

from graphmesh.orchestrator.sandbox.settings import SandboxSettings
from graphmesh.orchestrator.sandbox.worker import HEADER, decode_body, encode_frame, write_all

log = logging.getLogger(__name__)
WORKER: Final = Path(__file__).with_name("worker.py")
STDERR_TAIL: Final = 64 * 1024


class SandboxGone(Exception):
    """The process ended, or was killed, before it answered."""

    def __init__(self, *, exit_code: int | None, stderr: str, deadline: bool = False) -> None:
        super().__init__(f"sandbox process ended (exit code {exit_code})")
        self.exit_code = exit_code
        self.stderr = stderr
        self.deadline = deadline

    @property
    def signal_name(self) -> str | None:
        if self.exit_code is None or self.exit_code >= 0:
            return None
        with contextlib.suppress(ValueError):
            return signal.Signals(-self.exit_code).name
        return f"signal {-self.exit_code}"

    @property
    def out_of_memory(self) -> bool:
        """V8's out-of-memory abort, or Python's MemoryError in the worker itself."""
        text = self.stderr.lower()
        return "out of memory" in text or "memoryerror" in text

    @property
    def out_of_cpu(self) -> bool:
        return self.exit_code == -signal.SIGXCPU


class SandboxProcess:
    """One started worker: :meth:`start` it, :meth:`call` it, :meth:`close` it."""

    def __init__(self, popen: subprocess.Popen[bytes], *, max_frame: int) -> None:
        self._popen = popen
        self._max_frame = max_frame
        self._stdin = _pipe(popen.stdin)
        self._stdout = _pipe(popen.stdout)
        self._stderr = _pipe(popen.stderr)
        os.set_blocking(self._stderr.fileno(), False)
        self._poll = select.poll()
        self._poll.register(self._stdout.fileno(), select.POLLIN)
        self.tasks = 0

    @property
    def pid(self) -> int:
        return self._popen.pid

    @classmethod
    def start(cls, settings: SandboxSettings) -> SandboxProcess:
        """Start a worker and wait for its READY (blocking)."""
        popen = subprocess.Popen(
            [sys.executable, "-I", str(WORKER), json.dumps(settings.worker_settings())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
            cwd="/",
            env={"PATH": os.defpath, "LC_ALL": "C.UTF-8"},
            start_new_session=True,
        )
        process = cls(popen, max_frame=6 * settings.max_output_bytes + 64 * 1024)
        try:
            ready = process._receive(time.monotonic() + settings.start_timeout_s)
        except SandboxGone as gone:
            log.warning("a JavaScript sandbox failed to start: %s", gone.stderr[-2000:])
            raise
        if not ready.get("ready"):
            process.close()
            raise SandboxGone(exit_code=process._popen.returncode, stderr="no READY frame")
        return process

    def call(self, request: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Send ``request`` and wait for the reply until ``deadline`` (monotonic).

        Raises :class:`SandboxGone` if the process dies, is killed, or misses the
        deadline (then it is killed); the process is closed then."""
        try:
            write_all(self._stdin.fileno(), encode_frame(request))
        except OSError:
            raise self._gone(deadline=False) from None
        reply = self._receive(deadline)
        self._discard_stderr()
        return reply

    def kill(self) -> None:
        """End the process now (any thread); the thread in :meth:`call` sees it gone."""
        with contextlib.suppress(OSError):
            self._popen.kill()

    def close(self) -> None:
        """Kill the process, reap it and close its pipes (no call may be running)."""
        self.kill()
        self._reap()
        for pipe in (self._stdin, self._stdout, self._stderr):
            with contextlib.suppress(OSError):
                pipe.close()

    def retire(self) -> None:
        """Let an idle worker exit on its own: it ends when its stdin closes."""
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            self._popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.close()

    # -- reading -----------------------------------------------------------------------
    def _receive(self, deadline: float) -> dict[str, Any]:
        header = self._read(HEADER.size, deadline)
        (size,) = HEADER.unpack(header)
        if size > self._max_frame:
            raise self._gone(deadline=False)
        try:
            return decode_body(self._read(size, deadline))
        except ValueError:  # not our frame format: the worker is not itself any more
            raise self._gone(deadline=False) from None

    def _read(self, size: int, deadline: float) -> bytes:
        data = bytearray()
        fd = self._stdout.fileno()
        while len(data) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._poll.poll(remaining * 1000):
                raise self._gone(deadline=True)
            chunk = os.read(fd, min(size - len(data), 1 << 20))
            if not chunk:
                raise self._gone(deadline=False)
            data += chunk
        return bytes(data)

    def _gone(self, *, deadline: bool) -> SandboxGone:
        self.kill()
        exit_code = self._reap()
        stderr = self._stderr_tail()
        self.close()
        return SandboxGone(exit_code=exit_code, stderr=stderr, deadline=deadline)

    def _reap(self) -> int | None:
        try:
            return self._popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.error("JavaScript sandbox %d did not end after SIGKILL", self.pid)
            return None

    def _stderr_tail(self) -> str:
        with contextlib.suppress(OSError):
            return os.read(self._stderr.fileno(), STDERR_TAIL).decode("utf-8", "replace")
        return ""

    def _discard_stderr(self) -> None:
        with contextlib.suppress(OSError):
            os.read(self._stderr.fileno(), STDERR_TAIL)


def _pipe(stream: IO[bytes] | None) -> IO[bytes]:
    assert stream is not None, "the worker's pipes are opened with the process"
    return stream
