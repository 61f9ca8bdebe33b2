"""A reaper killed while its runner lives (by hand, by a `kill` aimed at something
else) is replaced the next time the runner tells it anything, and the new one is told
everything that is still registered: the jobs stay guarded."""

from __future__ import annotations

import os
import signal

from proc_helpers import Spawner, alive, wait_for

from flowbatch.executors.processes import Process
from flowbatch.executors.reaper import Reaper


def test_a_killed_reaper_is_replaced_and_told_what_it_guards(
    reaper: Reaper, spawn: Spawner
) -> None:
    first, second = (spawn(["sleep", "60"]) for _ in range(2))
    reaper.send("+g", str(Process.of(first.pid)))
    killed = reaper.proc
    os.kill(killed.pid, signal.SIGKILL)
    wait_for(lambda: killed.poll() is not None, timeout=10)
    reaper.send("+g", str(Process.of(second.pid)))
    assert reaper.proc is not killed
    reaper.close()  # as when the runner dies: the new reaper stops both jobs
    wait_for(lambda: first.poll() is not None and second.poll() is not None, timeout=10)
    assert not alive(first.pid) and not alive(second.pid)
