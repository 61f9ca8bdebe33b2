"""A scripted executor for tests (httpx's MockTransport, ninja's FakeCommandRunner).

`FakeExecutor` runs nothing: each attempt returns the `Outcome` the script gives for
it, after `duration` seconds (0: a single checkpoint, so tests run on anyio's event
ordering alone) of the `sleep` it is given: `anyio.sleep`, or a fake clock's, so that a
test of timing takes no real time (`flowbatch.run.clock.FakeClock`). It records every
attempt in start order, the peak number running at once and the peak vCPUs and memory
in use, so scheduling can be tested without processes. Give one instance to every
compute environment (`executors=lambda ce: fake`) or one per environment.

It is `Adoptable`: an attempt adopted by its external id ends as the script says (and
is recorded in `adopted`, not `attempts`), unless the id is in `gone`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import anyio
from anyio.abc import TaskStatus

from flowbatch.executors.base import REASON_ESSENTIAL_EXITED, Attempt, ExecResult


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    exit_code: int | None = 0
    status_reason: str = REASON_ESSENTIAL_EXITED
    reason: str = ""
    retryable: bool = True
    host_lost: bool = False
    duration: float = 0.0

    def result(self, host: str | None) -> ExecResult:
        return ExecResult(
            exit_code=self.exit_code,
            status_reason=self.status_reason,
            reason=self.reason,
            retryable=self.retryable,
            host_lost=self.host_lost,
            host=host,
        )


OK = Outcome()

Script = Callable[[Attempt], Outcome] | Mapping[str, Sequence[Outcome]]


class FakeExecutor:
    """`script` maps "name" or "name[i]" to the outcomes of attempts 1, 2, ... (the last
    repeats), or is a function of the Attempt; jobs it does not name succeed."""

    def __init__(
        self,
        script: Script | None = None,
        *,
        hosts_back: bool = True,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._script = script or {}
        self._sleep = sleep
        self.hosts_back = hosts_back
        self.attempts: list[Attempt] = []
        self.finished: list[tuple[str, int | None, int]] = []  # (name, index, attempt)
        self.running = 0
        self.peak = 0
        self.peak_vcpus = 0.0
        self.peak_memory = 0
        self._vcpus = 0.0
        self._memory = 0
        self.closed = False
        self.host_checks: list[str] = []
        self.adopted: list[tuple[Attempt, str]] = []
        self.gone: set[str] = set()  # external ids the engine no longer knows

    def outcome(self, attempt: Attempt) -> Outcome:
        if callable(self._script):
            return self._script(attempt)
        label = attempt.name if attempt.index is None else f"{attempt.name}[{attempt.index}]"
        outcomes = self._script.get(label) or self._script.get(attempt.name)
        if not outcomes:
            return OK
        return outcomes[min(attempt.attempt, len(outcomes)) - 1]

    async def run(self, attempt: Attempt, *, task_status: TaskStatus[str]) -> ExecResult:
        outcome = self.outcome(attempt)
        self.attempts.append(attempt)
        self.running += 1
        self._vcpus += attempt.vcpus
        self._memory += attempt.memory
        self.peak = max(self.peak, self.running)
        self.peak_vcpus = max(self.peak_vcpus, self._vcpus)
        self.peak_memory = max(self.peak_memory, self._memory)
        try:
            task_status.started(f"fake-{len(self.attempts)}")
            if outcome.duration > 0:
                await self._sleep(outcome.duration)
            else:
                await anyio.lowlevel.checkpoint()
        finally:
            self.running -= 1
            self._vcpus -= attempt.vcpus
            self._memory -= attempt.memory
        self.finished.append((attempt.name, attempt.index, attempt.attempt))
        return outcome.result(attempt.host)

    async def adopt(self, attempt: Attempt, external_id: str) -> ExecResult | None:
        self.adopted.append((attempt, external_id))
        outcome = self.outcome(attempt)
        if outcome.duration > 0 and external_id not in self.gone:
            await self._sleep(outcome.duration)
        else:
            await anyio.lowlevel.checkpoint()
        if external_id in self.gone:
            return None
        self.finished.append((attempt.name, attempt.index, attempt.attempt))
        return outcome.result(attempt.host)

    async def check_host(self, host: str) -> bool:
        self.host_checks.append(host)
        return self.hosts_back

    async def aclose(self) -> None:
        self.closed = True
