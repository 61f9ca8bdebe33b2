"""The runner under faults: attempts that cannot start (a command that does not render
for some children, a log directory that cannot be created) and lost hosts that never
come back. Each run must end, with every job recorded (unless told to wait for ever)."""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import anyio
import pytest

from flowbatch.executors.base import Attempt
from flowbatch.executors.fake import FakeExecutor, Outcome
from flowbatch.lang.compile import Plan, compile_pipeline
from flowbatch.lang.model import (
    ComputeEnv,
    Dependency,
    Host,
    JobSpec,
    Pipeline,
    Queue,
    RetryStrategy,
    local_compute,
)
from flowbatch.run.clock import FakeClock
from flowbatch.run.frontier import Frontier
from flowbatch.run.placement import Pools
from flowbatch.run.records import RunStatus
from flowbatch.run.runner import RunOptions, RunResult, new_job_ids, run_plan
from flowbatch.run.setup import with_host
from flowbatch.run.state import JobEvent, JobState

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Sink:
    def __init__(self) -> None:
        self.final: dict[tuple[str, int | None], JobEvent] = {}

    def emit(self, event: JobEvent) -> None:
        self.final[(event.name, event.index)] = event

    def flush(self) -> None:
        pass


def plan_of(tmp: Path, *jobs: JobSpec, queue: Queue | None = None, **computes: int) -> Plan:
    ces = {"local": local_compute(2, 4096)}
    for name, vcpus in computes.items():
        ces[name] = ComputeEnv(name=name, type="local", vcpus=vcpus, memory=4096)
    q = queue or Queue(name="default", compute=("local",))
    return compile_pipeline(
        Pipeline(
            path=str(tmp / "p.flow"),
            params={"names": "a b"},
            computes=ces,
            queues={q.name: q},
            jobs={j.name: j for j in jobs},
        )
    )


async def go(
    plan: Plan, tmp: Path, fake: FakeExecutor, clock: FakeClock | None = None, **options: Any
) -> tuple[RunResult, Sink]:
    """Run `plan` on `fake` with the run's clock `clock` (a fresh FakeClock if None)."""
    sink = Sink()
    run = RunOptions(run_id="r", job_ids=new_job_ids(plan), state_dir=tmp / ".flowbatch", **options)
    async with FakeClock().autojump() if clock is None else nullcontext(clock) as run_clock:
        with anyio.fail_after(60):
            result = await run_plan(
                plan, run, sinks=[sink], executors=lambda ce: fake, clock=run_clock
            )
    return result, sink


@pytest.mark.slow
async def test_thousands_of_children_failing_to_render_end_the_run(tmp_path: Path) -> None:
    # Children 0 and 1 render; every later one fails at launch. Recording each of those
    # failures used to recurse into the next placement: a RecursionError at ~1000.
    size = 3000
    command = "echo {{ params.names.split()[array.index] }}"
    plan = plan_of(tmp_path, JobSpec(name="fan", command=command, array_size=size))
    fake = FakeExecutor()
    result, sink = await go(plan, tmp_path, fake)
    assert result.status is RunStatus.FAILED and result.failed == ["fan"]
    children = {i: sink.final[("fan", i)] for i in range(size)}
    assert [children[i].state for i in (0, 1)] == [JobState.SUCCEEDED] * 2
    failed = [i for i, e in children.items() if e.state is JobState.FAILED]
    assert failed == list(range(2, size))
    assert "2" in children[2].reason  # the template error names what went wrong
    assert sorted(a.index for a in fake.attempts if a.index is not None) == [0, 1]
    assert sink.final[("fan", None)].state is JobState.FAILED


async def test_a_log_directory_that_cannot_be_created_fails_the_attempt(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, JobSpec(name="j", command="true", retry=RetryStrategy(attempts=3)))
    # A file where the state directory's `logs` directory must go.
    (tmp_path / ".flowbatch").mkdir()
    (tmp_path / ".flowbatch" / "logs").write_text("not a directory")
    fake = FakeExecutor()
    result, sink = await go(plan, tmp_path, fake)
    final = sink.final[("j", None)]
    assert result.status is RunStatus.FAILED and final.state is JobState.FAILED
    assert "log directory" in final.reason and os.strerror(20) in final.reason  # ENOTDIR
    assert final.attempt == 1 and fake.attempts == []  # not retried, never started


async def test_a_run_ends_when_a_lost_host_is_no_longer_needed(tmp_path: Path) -> None:
    queue = Queue(name="default", compute=("local", "b"))
    plan = plan_of(
        tmp_path,
        JobSpec(name="j", command="x", retry=RetryStrategy(attempts=2)),
        queue=queue,
        b=2,
    )

    def script(attempt: Attempt) -> Outcome:
        compute = attempt.compute.name
        return Outcome(exit_code=None, host_lost=True) if compute == "local" else Outcome()

    fake = FakeExecutor(script, hosts_back=False)
    result, sink = await go(plan, tmp_path, fake)
    assert result.status is RunStatus.SUCCEEDED
    assert [a.compute.name for a in fake.attempts] == ["local", "b"]
    assert sink.final[("j", None)].state is JobState.SUCCEEDED


HOST_GONE = JobSpec(name="j", command="x", retry=RetryStrategy(attempts=2))


def _always_lost(attempt: Attempt) -> Outcome:
    return Outcome(exit_code=None, host_lost=True)


async def test_a_run_gives_up_on_hosts_gone_longer_than_the_timeout(tmp_path: Path) -> None:
    after = JobSpec(name="k", command="x", after=(Dependency(job="j"),))
    plan = plan_of(tmp_path, HOST_GONE, after)
    fake = FakeExecutor(_always_lost, hosts_back=False)
    async with FakeClock().autojump() as clock:
        start = clock.now()
        result, sink = await go(plan, tmp_path, fake, clock, host_timeout=60.0)
    assert result.status is RunStatus.FAILED and result.failed == ["j", "k"]
    j, k = sink.final[("j", None)], sink.final[("k", None)]
    assert j.state is JobState.FAILED and k.state is JobState.FAILED
    assert j.reason == "Host lost: no host came back within 1m (localhost of `local`)"
    assert len(fake.attempts) == 1 and len(fake.host_checks) == 20  # every 3 s, then gave up
    assert 60 <= j.time - start <= 63


async def test_without_a_host_timeout_a_run_waits_for_its_hosts(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, HOST_GONE)
    fake = FakeExecutor(_always_lost, hosts_back=False)
    ended = anyio.Event()

    async def run(clock: FakeClock) -> None:
        await go(plan, tmp_path, fake, clock, host_timeout=None)
        ended.set()

    async with FakeClock().autojump() as clock, anyio.create_task_group() as tg:
        tg.start_soon(run, clock)
        await clock.sleep(600)  # ten minutes, and the runner keeps asking
        assert not ended.is_set() and len(fake.host_checks) >= 150
        tg.cancel_scope.cancel()


class _OnlyH2Back(FakeExecutor):
    async def check_host(self, host: str) -> bool:
        self.host_checks.append(host)
        return host == "h2"


def _two_hosts(tmp: Path, *jobs: JobSpec, disabled: JobSpec | None = None) -> Plan:
    hosts = tuple(Host(name=h, vcpus=1, memory=4096) for h in ("h1", "h2"))
    remote = ComputeEnv(name="remote", type="ssh", vcpus=2, memory=8192, hosts=hosts)
    queues = {"default": Queue(name="default", compute=("remote",))}
    if disabled is not None:
        queues["off"] = Queue(name="off", compute=("remote",), state="disabled")
    return compile_pipeline(
        Pipeline(
            path=str(tmp / "p.flow"),
            params={},
            computes={"local": local_compute(2, 4096), "remote": remote},
            queues=queues,
            jobs={j.name: j for j in (*jobs, *([disabled] if disabled else []))},
        )
    )


async def test_a_host_back_takes_the_work_even_as_the_timeout_passes(
    tmp_path: Path,
) -> None:
    # Both hosts are lost; at the first check (timeout 0: already passed) h2 answers.
    # It must get the retries before the run gives up on h1.
    jobs = [JobSpec(name=n, command="x", retry=RetryStrategy(attempts=2)) for n in ("j1", "j2")]
    plan = _two_hosts(tmp_path, *jobs)

    def script(attempt: Attempt) -> Outcome:
        return Outcome(exit_code=None, host_lost=True) if attempt.attempt == 1 else Outcome()

    fake = _OnlyH2Back(script)
    result, sink = await go(plan, tmp_path, fake, host_timeout=0.0)
    assert result.status is RunStatus.SUCCEEDED, sink.final
    assert sorted((a.name, a.attempt, a.host) for a in fake.attempts if a.attempt == 2) == [
        ("j1", 2, "h2"),
        ("j2", 2, "h2"),
    ]


async def test_work_in_a_disabled_queue_waits_for_no_lost_host(tmp_path: Path) -> None:
    # j1 loses h1 and is retried on h2; j2 sits in a disabled queue. The run ends as
    # soon as j1 is done, j2 left RUNNABLE (as with no host lost), not failed for h1.
    j1 = JobSpec(name="j1", command="x", retry=RetryStrategy(attempts=2))
    j2 = JobSpec(name="j2", command="x", queue="off")
    plan = _two_hosts(tmp_path, j1, disabled=j2)

    def script(attempt: Attempt) -> Outcome:
        lost = attempt.attempt == 1 and attempt.host == "h1"
        return Outcome(exit_code=None, host_lost=True) if lost else Outcome()

    fake = FakeExecutor(script, hosts_back=False)
    result, sink = await go(plan, tmp_path, fake, host_timeout=None)
    assert result.status is RunStatus.FAILED and result.stalled == ["j2"]
    assert sink.final[("j1", None)].state is JobState.SUCCEEDED
    assert sink.final[("j2", None)].state is JobState.RUNNABLE


def test_nothing_is_placed_once_the_run_has_failed_everything(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, JobSpec(name="arr", command="x", array_size=4))
    frontier = Frontier(
        plan,
        job_ids=new_job_ids(plan),
        queue_computes={"default": ("local",)},
        pools=Pools({"local": with_host(plan.computes["local"])}),
    )
    frontier.fail_all("Host lost")
    assert frontier.done and frontier.place() == []
    assert frontier.state("arr") is JobState.FAILED
