"""A pid with its start time names one process for good: a reused pid is not it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from flowbatch.executors.processes import Process, start_ticks


def test_this_process_is_alive_and_round_trips() -> None:
    me = Process.of(os.getpid())
    assert me.ticks is not None and me.alive()
    assert Process.parse(str(me)) == me
    assert Process.parse(str(me.pid)) == Process(me.pid, None)


def test_a_different_start_time_is_another_process() -> None:
    me = Process.of(os.getpid())
    assert me.ticks is not None
    assert not Process(me.pid, me.ticks + 1).alive()
    assert not Process(me.pid, me.ticks + 1).signal_group(signal.SIGTERM)


def test_garbage_is_not_a_process() -> None:
    for text in ("", "abc", "12@x", "-3", "0"):
        assert Process.parse(text) is None


def test_signal_group_reaches_a_live_group_and_not_a_gone_one() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        proc = Process.of(child.pid)
        assert proc.ticks == start_ticks(child.pid)
        assert proc.signal_group(signal.SIGTERM)
        assert child.wait(timeout=30) == -signal.SIGTERM
        assert not proc.alive()
        assert not proc.signal_group(signal.SIGTERM)
    finally:
        child.kill()
        child.wait()


def test_a_spawned_process_has_the_start_time_proc_gives_it() -> None:
    """`Process.spawned` knows a child's start time from the clock when no tick began
    around the fork: it must be the very value /proc gives (else a live job would be
    judged gone, or a reused pid taken for it)."""
    from flowbatch.executors.processes import boot_ns

    if start_ticks(os.getpid()) is None:
        pytest.skip("no /proc here")
    clocked = 0
    for _ in range(100):
        before = boot_ns()
        proc = subprocess.Popen(["/bin/true"])
        try:
            spawned = Process.spawned(proc.pid, before)
            assert spawned == Process.of(proc.pid)  # unreaped: /proc still has it
            clocked += boot_ns() // 10_000_000 == before // 10_000_000
        finally:
            proc.wait()
    assert clocked > 0  # the clock's answer was taken, not only /proc's
