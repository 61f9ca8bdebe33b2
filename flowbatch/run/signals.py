"""How a run meets signals: the first SIGINT, SIGTERM or SIGHUP stops it (its jobs get
their grace period and the run is recorded INTERRUPTED), a second one cuts the grace
periods short. SIGHUP (a closed terminal, a dropped ssh session) would otherwise kill
the runner outright and leave its jobs recorded as running; under `nohup` it stays
ignored.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

import anyio

T = TypeVar("T")


class Stoppable(Protocol):
    def interrupt(self, name: str) -> bool:
        """Stop the run for signal `name`; False if it is already stopping."""
        ...

    def hurry(self) -> None:
        """Kill what is being stopped now, without its grace period."""
        ...


async def with_signals(body: Callable[[], Awaitable[T]], target: Stoppable) -> T:
    """`await body()` with signals turned into `target.interrupt`, then `target.hurry`.
    The receiver stays open until `body` has recorded everything, so that a signal
    during the cleanup reaches `target` instead of Python's default handler."""
    hup = [] if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN else [signal.SIGHUP]
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, *hup) as signals:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch, signals, target)
            try:
                result = await body()
            finally:
                tg.cancel_scope.cancel()
    return result


async def _watch(signals: AsyncIterator[int], target: Stoppable) -> None:
    async for signum in signals:
        if not target.interrupt(signal.Signals(signum).name):
            target.hurry()
