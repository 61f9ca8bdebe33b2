"""The run's clock: FakeClock jumps to the next deadline only when every task waits."""

from __future__ import annotations

import time

import anyio
import anyio.lowlevel
import pytest

from flowbatch.run.clock import FakeClock, SystemClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_sleepers_wake_in_deadline_order_at_their_deadlines() -> None:
    woke: list[tuple[str, float]] = []
    async with FakeClock(start=100.0).autojump() as clock:

        async def sleeper(name: str, seconds: float) -> None:
            await clock.sleep(seconds)
            woke.append((name, clock.now()))

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper, "day", 86400.0)
            tg.start_soon(sleeper, "minute", 60.0)
            tg.start_soon(sleeper, "also a minute", 60.0)
        assert time.monotonic() - started < 5  # a day of fake time, no real wait
    assert woke == [("minute", 160.0), ("also a minute", 160.0), ("day", 86500.0)]


async def test_time_stands_still_while_a_task_can_run() -> None:
    async with FakeClock(start=0.0).autojump() as clock:
        seen: list[float] = []

        async def busy() -> None:
            for _ in range(200):
                seen.append(clock.now())
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(clock.sleep, 1.0)
            tg.start_soon(busy)
        assert seen == [0.0] * 200 and clock.now() == 1.0 and clock.jumps == 1


async def test_a_cancelled_sleep_moves_no_time() -> None:
    async with FakeClock(start=0.0).autojump() as clock:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await clock.sleep(1000.0)
        await clock.sleep(1.0)
        assert clock.now() == 1.0


async def test_the_system_clock_is_the_real_time() -> None:
    clock = SystemClock()
    before = time.time()
    await clock.sleep(0)
    assert before <= clock.now() <= time.time()
