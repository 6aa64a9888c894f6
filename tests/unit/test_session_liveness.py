"""Which process a SQLite worker session names, and when a freed Postgres session lock is
believed gone (``graphmesh.orchestrator.queue.sessions``)."""

from __future__ import annotations

import os
import subprocess
import sys

from graphmesh.orchestrator.queue.sessions import (
    THIS_HOST,
    THIS_PROCESS,
    GoneSessions,
    process_alive,
)


def test_this_process_lives_and_an_earlier_one_of_the_same_pid_does_not() -> None:
    pid = os.getpid()
    assert process_alive(pid=pid, host=THIS_HOST, process=THIS_PROCESS)
    # A restarted container's process often gets the old pid back: the token tells them apart.
    assert not process_alive(pid=pid, host=THIS_HOST, process="an earlier process")


def test_a_process_that_ended_is_gone() -> None:
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    assert not process_alive(pid=ended.pid, host=THIS_HOST, process="its token")


def test_a_process_of_another_host_is_taken_for_alive() -> None:
    assert process_alive(pid=os.getpid(), host=f"not-{THIS_HOST}", process="its token")


def test_a_session_is_gone_once_it_stays_gone_for_the_confirmation_time() -> None:
    gone = GoneSessions(confirm_s=1.0)
    assert gone.confirmed([1, 2], now=10.0) == []
    assert gone.confirmed([1, 2], now=10.5) == []
    # Session 2 took its lock again (a broken connection, not a dead worker): forgotten.
    assert gone.confirmed([1], now=11.0) == [1]
    assert gone.confirmed([1, 2], now=11.5) == [1]
    assert gone.confirmed([2], now=12.5) == [2]
