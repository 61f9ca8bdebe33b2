"""Processes named so that a reused pid is never mistaken for them: a pid with its start time.

A pid alone is not an identity: once its process is gone the kernel hands the number
to the next process that asks. A runner that was killed leaves its jobs' process groups
(and its own pid) in the store; anything that later signals them or judges them alive
must know they are still the same processes. The start time (field 22 of
`/proc/PID/stat`, in clock ticks since boot) is fixed for a process's life and differs
for the next holder of the number, so `pid@ticks` names one process for good.

Where `/proc` is missing (not Linux) the start time is unknown: a `Process` without one
is judged by its pid alone, the best that can be done there.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

# The kernel's clock tick for /proc (USER_HZ): a start time is CLOCK_BOOTTIME at fork,
# in nanoseconds, divided by this many nanoseconds and rounded down.
# Where there is no /proc (not Linux) there is no start time to know.
_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK") if os.path.isdir("/proc/self") else 0


def start_ticks(pid: int) -> int | None:
    """The start time of a live process in clock ticks since boot, or None (gone, or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: fields are counted
    # after its last ")".
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 overall; fields[0] is field 3
    except (IndexError, ValueError):
        return None


def boot_ns() -> int:
    """CLOCK_BOOTTIME now in nanoseconds: the clock of a process's start time."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) if _TICK_NS else 0


def zombie(pid: int) -> bool:
    """Whether `pid` has exited and waits for its parent to reap it: it keeps its pid
    and start time, but runs no more."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[:1] == [b"Z"]


@dataclass(frozen=True, slots=True)
class Process:
    """One process (for a job: the leader of its process group) for good."""

    pid: int
    ticks: int | None  # start time; None where it could not be read

    @classmethod
    def of(cls, pid: int) -> Process:
        """The process that has `pid` now."""
        return cls(pid, start_ticks(pid))

    @classmethod
    def spawned(cls, pid: int, before_ns: int) -> Process:
        """The process `pid` that this process forked after `before_ns`
        (`boot_ns()` read before the fork): when no clock tick has begun since then, its
        start time is that tick, known without reading /proc (a tenth of a millisecond
        or more, more while the child is still execing); else it is read."""
        if _TICK_NS and boot_ns() // _TICK_NS == before_ns // _TICK_NS:
            return cls(pid, before_ns // _TICK_NS)
        return cls.of(pid)

    @classmethod
    def parse(cls, text: str) -> Process | None:
        """Read `pid@ticks` or a bare `pid` back; None for anything else."""
        pid_text, _, ticks_text = text.partition("@")
        try:
            pid = int(pid_text)
            ticks = int(ticks_text) if ticks_text else None
        except ValueError:
            return None
        return cls(pid, ticks) if pid > 0 else None

    def __str__(self) -> str:
        return str(self.pid) if self.ticks is None else f"{self.pid}@{self.ticks}"

    def alive(self) -> bool:
        """Whether this very process still exists (a zombie counts until reaped)."""
        now = start_ticks(self.pid)
        if now is None:
            if self.ticks is not None or os.path.isdir("/proc"):
                return False
            try:  # no /proc: the pid is all there is
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        return self.ticks is None or now == self.ticks

    def signal_group(self, sig: signal.Signals) -> bool:
        """Send `sig` to the process group this process leads, if it is still this
        process; True when the signal was sent."""
        if not self.alive():
            return False
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True
