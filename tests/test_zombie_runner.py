"""A runner killed and not yet reaped by its parent (a CI harness or a script that
started `flowbatch run` with Popen and never waits) stays a zombie: it holds its pid and
start time but will never write again. It is gone, not alive: otherwise `runs` shows
its run RUNNING and `logs --follow` never returns until the parent happens to reap it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from proc_helpers import wait_for

from flowbatch.executors.processes import Process
from flowbatch.store.lost import boot_id, owner_state


@pytest.fixture
def zombie() -> Iterator[Process]:
    child = subprocess.Popen(["sleep", "60"])
    try:
        proc = Process.of(child.pid)
        child.send_signal(signal.SIGKILL)
        # Not reaped: only its state in /proc changes.
        stat = Path(f"/proc/{child.pid}/stat")
        wait_for(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")
        yield proc
    finally:
        child.kill()
        child.wait()


def test_a_zombie_runner_is_gone(zombie: Process) -> None:
    state = owner_state(zombie.pid, socket.gethostname(), str(zombie), boot_id())
    assert state == "gone"


def test_a_live_runner_is_alive() -> None:
    me = Process.of(os.getpid())
    assert owner_state(me.pid, socket.gethostname(), str(me), boot_id()) == "alive"
