"""The time a run sees: when events happen (`now`) and how it waits (`sleep`).

The runner asks its clock for the time of every JobEvent, for how long a host has been
lost, and sleeps on it between ticks (flushing sinks, polling cancel requests) and
during a retry's backoff. `SystemClock` is the real one. `FakeClock` is trio's
autojump clock for anyio tests: its time stands still while any task can run and jumps
straight to the next sleeper's deadline once every task is waiting, so a test of a
600-second host timeout or a 0.3-second fake job takes no real time and the order of
events is the same on every run.

An executor's own waits (a job's `timeout`, a kill's grace period) are on real time:
they wait on real processes.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

import anyio
import anyio.lowlevel


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (the time JobEvents carry)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return `seconds` from now, by this clock."""
        ...


class SystemClock:
    """The real time: `time.time` and `anyio.sleep`."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class _Sleeper:
    __slots__ = ("deadline", "seq", "woken")

    def __init__(self, deadline: float, seq: int) -> None:
        self.deadline = deadline
        self.seq = seq
        self.woken = anyio.Event()

    def __lt__(self, other: _Sleeper) -> bool:
        return (self.deadline, self.seq) < (other.deadline, other.seq)


class FakeClock:
    """A clock for tests that jumps to the next deadline when every task waits.

    Use it inside `async with clock.autojump():` (which runs the task that moves it),
    and hand `clock.sleep` to whatever else should wait on it (`FakeExecutor(sleep=...)`).
    Time moves only in `autojump`, and only when no task of the event loop is ready to
    run: a task waiting on a thread or a socket counts as waiting, as under trio's
    autojump clock. The asyncio backend only (it reads asyncio's own task records, as
    anyio's `wait_all_tasks_blocked` does).
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._sleepers: list[_Sleeper] = []
        self._seq = 0
        self._added: anyio.Event | None = None
        self.jumps = 0  # how many times time moved (a test may check it did)

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        self._seq += 1
        sleeper = _Sleeper(self._now + seconds, self._seq)
        heapq.heappush(self._sleepers, sleeper)
        if self._added is not None:
            self._added.set()
        try:
            await sleeper.woken.wait()
        finally:
            if not sleeper.woken.is_set():  # cancelled: it needs no wake-up any more
                sleeper.woken.set()

    @asynccontextmanager
    async def autojump(self) -> AsyncIterator[FakeClock]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._jump)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    async def _jump(self) -> None:
        while True:
            await _all_other_tasks_waiting()
            sleepers = self._sleepers
            while sleepers and sleepers[0].woken.is_set():  # cancelled ones
                heapq.heappop(sleepers)
            if not sleepers:
                self._added = anyio.Event()
                await self._added.wait()
                self._added = None
                continue
            self._now = max(self._now, sleepers[0].deadline)
            self.jumps += 1
            while sleepers and sleepers[0].deadline <= self._now:
                heapq.heappop(sleepers).woken.set()


async def _all_other_tasks_waiting() -> None:
    """Return once no other task of the loop is ready to run (each awaits a future that
    is not done). Unlike anyio's `wait_all_tasks_blocked`, which sleeps 0.1 s of real
    time between looks, this yields to the tasks that can run and looks again."""
    await anyio.lowlevel.checkpoint()
    this = asyncio.current_task()
    while True:
        for task in asyncio.all_tasks():
            if task is this:
                continue
            waiter = getattr(task, "_fut_waiter", None)
            if waiter is None or waiter.done():
                break
        else:
            return
        await anyio.lowlevel.checkpoint()
