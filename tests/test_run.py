"""run_plan end to end: with the FakeExecutor (scheduling, retries, cancel) and with
real processes (environment, logs, timeouts, concurrency)."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest
from proc_helpers import alive, wait_until
from run_helpers import RecordingSink

from flowbatch.executors.base import REASON_SPOT, REASON_TIMEOUT
from flowbatch.executors.fake import OK, FakeExecutor, Outcome
from flowbatch.executors.local import LocalExecutor
from flowbatch.executors.processes import Process
from flowbatch.lang.compile import Plan, compile_pipeline
from flowbatch.lang.model import (
    DEFAULT_QUEUE,
    ComputeEnv,
    Dependency,
    JobSpec,
    Pipeline,
    RetryRule,
    RetryStrategy,
    local_compute,
)
from flowbatch.run.clock import FakeClock
from flowbatch.run.records import RunStatus
from flowbatch.run.runner import RunOptions, RunResult, new_job_ids, new_run_id, run_plan
from flowbatch.run.state import JobEvent, JobState

pytestmark = pytest.mark.anyio
S = JobState


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def plan_of(tmp: Path, *jobs: JobSpec, ce: ComputeEnv | None = None) -> Plan:
    return compile_pipeline(
        Pipeline(
            path=str(tmp / "p.flow"),
            params={"who": "world"},
            computes={"local": ce or local_compute(2, 4096)},
            queues={"default": DEFAULT_QUEUE},
            jobs={j.name: j for j in jobs},
        )
    )


async def go(
    plan: Plan, tmp: Path, executor: object | None = None, **kw: object
) -> tuple[RunResult, RecordingSink]:
    sink = RecordingSink()
    factory = (
        (lambda ce: executor) if executor is not None else (lambda ce: LocalExecutor(ce, grace=0.5))
    )
    options = RunOptions(
        run_id=new_run_id(), job_ids=new_job_ids(plan), state_dir=tmp / ".flowbatch"
    )
    result = await run_plan(
        plan,
        options,
        sinks=[sink],
        executors=factory,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )
    return result, sink


def retry(attempts: int, *rules: RetryRule) -> RetryStrategy:
    return RetryStrategy(attempts=attempts, rules=rules)


async def test_fake_run_walks_every_job_through_the_table(tmp_path: Path) -> None:
    plan = plan_of(
        tmp_path,
        JobSpec(name="a", command="x", array_size=3),
        JobSpec(name="b", command="x", after=(Dependency(job="a"),)),
    )
    fake = FakeExecutor()
    result, sink = await go(plan, tmp_path, fake)
    assert result.status is RunStatus.SUCCEEDED and result.exit_code == 0
    child = [e.state for e in sink.events if e.name == "a" and e.index == 0]
    assert child == [S.SUBMITTED, S.RUNNABLE, S.STARTING, S.RUNNING, S.SUCCEEDED]
    parent = [e.state for e in sink.events if e.name == "a" and e.index is None]
    assert parent == [S.SUBMITTED, S.PENDING, S.SUCCEEDED]
    assert fake.attempts[-1].name == "b" and fake.closed and sink.flushes >= 1


@pytest.mark.parametrize(
    ("rules", "exit_code", "attempts"),
    [
        ((), 1, 3),  # no rule: retry
        ((RetryRule(action="exit", on_exit_code="1"),), 1, 1),
        ((RetryRule(action="retry", on_exit_code="2*"), RetryRule(action="exit")), 25, 3),
        ((RetryRule(action="retry", on_exit_code="2*"), RetryRule(action="exit")), 1, 1),
        ((RetryRule(action="exit", on_status_reason="Essential*"),), 1, 1),
        ((RetryRule(action="retry", on_reason="OutOfMemory*"), RetryRule(action="exit")), 137, 1),
    ],
)
async def test_evaluate_on_exit(
    tmp_path: Path, rules: tuple[RetryRule, ...], exit_code: int, attempts: int
) -> None:
    plan = plan_of(tmp_path, JobSpec(name="j", command="x", retry=retry(3, *rules)))
    fake = FakeExecutor({"j": [Outcome(exit_code=exit_code)]})
    result, sink = await go(plan, tmp_path, fake)
    assert result.status is RunStatus.FAILED
    assert [a.attempt for a in fake.attempts] == list(range(1, attempts + 1))
    assert sink.final("j").exit_code == exit_code


async def test_retry_then_success_and_spot_style_reason(tmp_path: Path) -> None:
    spot = Outcome(exit_code=None, status_reason="Host EC2 (instance i-1) terminated.")
    rules = (RetryRule(action="retry", on_status_reason="Host EC2*"), RetryRule(action="exit"))
    plan = plan_of(tmp_path, JobSpec(name="j", command="x", retry=retry(3, *rules)))
    fake = FakeExecutor({"j": [spot, Outcome()]})
    result, sink = await go(plan, tmp_path, fake)
    assert result.status is RunStatus.SUCCEEDED and len(fake.attempts) == 2
    states = [e.state for e in sink.events if e.name == "j"]
    assert states.count(S.RUNNABLE) == 2


async def test_timeouts_and_terminates_are_never_retried(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, JobSpec(name="j", command="x", retry=retry(5)))
    fake = FakeExecutor(
        {"j": [Outcome(exit_code=137, status_reason=REASON_TIMEOUT, retryable=False)]}
    )
    _, sink = await go(plan, tmp_path, fake)
    assert len(fake.attempts) == 1 and sink.final("j").reason == REASON_TIMEOUT


async def test_template_error_fails_the_attempt_with_its_message(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, JobSpec(name="j", command="echo {{ params.nope }}", retry=retry(3)))
    result, sink = await go(plan, tmp_path, FakeExecutor())
    assert result.status is RunStatus.FAILED
    assert "nope" in sink.final("j").reason
    assert [e.attempt for e in sink.events if e.state is S.STARTING] == [1]


async def test_control_cancel_of_a_pending_array(tmp_path: Path) -> None:
    plan = plan_of(
        tmp_path,
        JobSpec(name="slow", command="x"),
        JobSpec(name="arr", command="x", array_size=4, after=(Dependency(job="slow"),)),
    )
    ids = new_job_ids(plan)
    requests = [(ids["arr"], "cancel", "not needed")]
    sink = RecordingSink()
    async with FakeClock().autojump() as clock:
        fake = FakeExecutor({"slow": [Outcome(duration=0.5)]}, sleep=clock.sleep)
        result = await run_plan(
            plan,
            RunOptions(run_id="r", job_ids=ids, state_dir=tmp_path),
            sinks=[sink],
            executors=lambda ce: fake,
            control=lambda: [requests.pop()] if requests else [],
            clock=clock,
        )
    assert result.status is RunStatus.FAILED and [a.name for a in fake.attempts] == ["slow"]
    assert sink.final("arr", 3).reason == "not needed"


async def test_backoffs_and_jobs_wait_on_the_run_clock(tmp_path: Path) -> None:
    # A minute of job and two of backoff: no real time with the fake clock, and the
    # events carry the clock's time (the runner never reads the system's).
    rules = (RetryRule(action="retry"),)
    spec = JobSpec(name="j", command="x", retry=RetryStrategy(attempts=2, rules=rules, backoff=120))
    plan = plan_of(tmp_path, spec)
    async with FakeClock(start=1000.0).autojump() as clock:
        fake = FakeExecutor({"j": [Outcome(exit_code=1, duration=60), OK]}, sleep=clock.sleep)
        with anyio.fail_after(10):
            result, sink = await go(plan, tmp_path, fake, clock=clock)
    assert result.status is RunStatus.SUCCEEDED and len(fake.attempts) == 2
    times = {(e.state, e.attempt): e.time for e in sink.events}
    assert times[(S.SUBMITTED, 0)] == 1000.0
    assert times[(S.RUNNABLE, 1)] == 1000.0 + 60  # the first attempt ended
    second = times[(S.STARTING, 2)] - times[(S.RUNNABLE, 1)]
    assert 0.8 * 120 <= second <= 1.2 * 120  # the backoff, jittered


async def test_inputs_are_read_off_the_event_loop(tmp_path: Path) -> None:
    # Reading `reader`'s inputs (up to 256 MiB of hashing) waits here until `other` has
    # succeeded: on the event loop, `other` could not run meanwhile and the wait times out.
    plan = plan_of(
        tmp_path,
        JobSpec(name="reader", command="x", inputs=("*.txt",)),
        JobSpec(name="other", command="x"),
    )
    other_done = threading.Event()
    waited: list[bool] = []

    def fingerprint(name: str, index: int | None) -> str:
        if name == "reader":
            waited.append(other_done.wait(timeout=5))
        return f"fp-{name}"

    class Watch(RecordingSink):
        def emit(self, event: JobEvent) -> None:
            super().emit(event)
            if event.name == "other" and event.state is S.SUCCEEDED:
                other_done.set()

    sink = Watch()
    with anyio.fail_after(20):
        result = await run_plan(
            plan,
            RunOptions(run_id="r", job_ids=new_job_ids(plan), state_dir=tmp_path),
            sinks=[sink],
            executors=lambda ce: FakeExecutor(),
            fingerprint=fingerprint,
        )
    assert waited == [True] and result.status is RunStatus.SUCCEEDED
    assert sink.final("reader").fingerprint == "fp-reader"
    assert sink.final("other").fingerprint == "fp-other"


async def _events_at_each_flush(plan: Plan, tmp_path: Path) -> tuple[RecordingSink, list[int]]:
    """Run `plan` (every job a 1 s fake, on a fake clock) to success; the sink and how
    many events it had been given at each of its flushes."""
    at_flush: list[int] = []

    class Flushes(RecordingSink):
        def flush(self) -> None:
            super().flush()
            at_flush.append(len(self.events))

    sink = Flushes()
    async with FakeClock().autojump() as clock:
        fake = FakeExecutor(lambda a: Outcome(duration=1), sleep=clock.sleep)
        options = RunOptions(run_id="r", job_ids=new_job_ids(plan), state_dir=tmp_path)
        result = await run_plan(plan, options, sinks=[sink], executors=lambda ce: fake, clock=clock)
    assert result.status is RunStatus.SUCCEEDED
    return sink, at_flush


async def test_the_first_events_are_flushed_before_any_job_starts(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, *(JobSpec(name=f"j{i}", command="x") for i in range(5)))
    sink, seen_at_flush = await _events_at_each_flush(plan, tmp_path)
    first = sink.events[: seen_at_flush[0]]
    assert len(first) == 10 and {e.state for e in first} == {S.SUBMITTED, S.RUNNABLE}


async def test_thousands_of_first_events_are_written_a_chunk_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every job's first events reach the sinks in chunks, each flushed before the next
    is made (the runner's peak memory), in order, all before any job starts."""
    from flowbatch.run import runner

    monkeypatch.setattr(runner, "_DRAIN_CHUNK", 10)  # as with 2,000 a chunk, but quick
    chunk = runner._DRAIN_CHUNK
    n = chunk + chunk // 2 + 7  # 2n events: four chunks, the last small
    plan = plan_of(tmp_path, *(JobSpec(name=f"j{i}", command="x") for i in range(n)))
    sink, emitted_at_flush = await _events_at_each_flush(plan, tmp_path)
    chunks = [*range(chunk, 2 * n, chunk), 2 * n]
    assert emitted_at_flush[: len(chunks)] == chunks
    first = sink.events[: 2 * n]
    assert [(e.name, e.state) for e in first] == [
        (f"j{i}", state) for i in range(n) for state in (S.SUBMITTED, S.RUNNABLE)
    ]


async def test_concurrency_never_exceeds_capacity(tmp_path: Path) -> None:
    plan = plan_of(
        tmp_path,
        JobSpec(name="a", command="x", vcpus=1, memory=1500, array_size=20),
        JobSpec(name="b", command="x", vcpus=2, memory=100, array_size=5),
        ce=local_compute(3, 4096),
    )
    async with FakeClock().autojump() as clock:
        fake = FakeExecutor(lambda a: Outcome(duration=0.001), sleep=clock.sleep)
        result, _ = await go(plan, tmp_path, fake, clock=clock)
    assert result.status is RunStatus.SUCCEEDED and len(fake.attempts) == 25
    assert fake.peak_vcpus <= 3 and fake.peak_memory <= 4096 and fake.peak >= 2


# -- real processes ------------------------------------------------------------------------


@pytest.mark.slow
async def test_real_jobs_get_the_aws_environment_and_log_files(tmp_path: Path) -> None:
    cmd = 'echo "$AWS_BATCH_JOB_ID $AWS_BATCH_JOB_ATTEMPT ${AWS_BATCH_JOB_ARRAY_INDEX-} '
    cmd += '$AWS_BATCH_JQ_NAME $AWS_BATCH_CE_NAME $FLOWBATCH_RUN_ID $MINE" {{ params.who }}; pwd'
    plan = plan_of(
        tmp_path,
        JobSpec(name="one", command=cmd, env={"MINE": "yes"}),
        JobSpec(name="arr", command=cmd, array_size=2, env={"MINE": "yes"}),
    )
    result, sink = await go(plan, tmp_path)
    assert result.status is RunStatus.SUCCEEDED
    ev = sink.final("arr", 1)
    assert ev.log_path == str(tmp_path / ".flowbatch" / "logs" / ev.run_id / "arr.1.attempt-1")
    out = Path(f"{ev.log_path}.stdout").read_text().split()
    assert out == [
        ev.job_id,
        "1",
        "1",
        "default",
        "local",
        ev.run_id,
        "yes",
        "world",
        str(tmp_path),
    ]
    one = Path(f"{sink.final('one').log_path}.stdout").read_text().split()
    assert one[0] == sink.final("one").job_id and one[2] == "default"


@pytest.mark.slow
async def test_a_run_makes_one_log_directory_and_none_per_attempt(tmp_path: Path) -> None:
    # A directory costs about as much as a short job: an attempt's logs are two files
    # beside a stem in the run's one directory, for a job, an array child and a retry.
    plan = plan_of(
        tmp_path,
        JobSpec(name="one", command="echo one"),
        JobSpec(name="arr", command="echo $AWS_BATCH_JOB_ARRAY_INDEX", array_size=3),
        JobSpec(
            name="flaky",
            command='echo try $AWS_BATCH_JOB_ATTEMPT; test "$AWS_BATCH_JOB_ATTEMPT" = 2',
            retry=retry(2),
        ),
    )
    result, sink = await go(plan, tmp_path)
    assert result.status is RunStatus.SUCCEEDED
    state = tmp_path / ".flowbatch"
    run_dir = state / "logs" / sink.final("one").run_id
    assert [p for p in state.rglob("*") if p.is_dir()] == [state / "logs", run_dir]
    stems = ["one.attempt-1", "flaky.attempt-1", "flaky.attempt-2"]
    stems += [f"arr.{i}.attempt-1" for i in range(3)]
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        f"{stem}.{stream}" for stem in stems for stream in ("stdout", "stderr")
    )
    assert (run_dir / "flaky.attempt-1.stdout").read_text() == "try 1\n"
    assert (run_dir / "flaky.attempt-2.stdout").read_text() == "try 2\n"
    assert (run_dir / "arr.2.attempt-1.stdout").read_text() == "2\n"
    assert sink.final("flaky").log_path == str(run_dir / "flaky.attempt-2")


@pytest.mark.slow
async def test_failure_cascade_with_real_exit_codes(tmp_path: Path) -> None:
    plan = plan_of(
        tmp_path,
        JobSpec(name="prepare", command="exit 3"),
        JobSpec(name="use", command="true", after=(Dependency(job="prepare"),)),
    )
    result, sink = await go(plan, tmp_path)
    assert result.exit_code == 1 and sink.final("prepare").exit_code == 3
    assert sink.final("use").reason == (
        f"Dependency failed: prepare (job {sink.final('prepare').job_id}) exited with code 3"
    )


@pytest.mark.slow
async def test_timeout_kills_the_whole_tree(tmp_path: Path) -> None:
    # The child ignores SIGTERM and records its pid; nothing may survive.
    cmd = "sh -c 'trap \"\" TERM; echo $$ > child.pid; while :; do sleep 0.05; done' & wait"
    plan = plan_of(tmp_path, JobSpec(name="t", command=cmd, timeout=0.5, retry=retry(3)))
    result, sink = await go(plan, tmp_path)
    assert result.status is RunStatus.FAILED
    final = sink.final("t")
    assert final.reason == REASON_TIMEOUT and "0.5s" in final.attempt_reason
    assert final.attempt == 1
    pid = int((tmp_path / "child.pid").read_text())
    # SIGKILL is delivered asynchronously: wait (bounded) for the kernel to finish it.
    await wait_until(lambda: not alive(pid), timeout=2)


@pytest.mark.slow
async def test_recorded_concurrency_stays_within_vcpus(tmp_path: Path) -> None:
    cmd = "echo start $(date +%s.%N) >> trace; sleep 0.05; echo end $(date +%s.%N) >> trace"
    plan = plan_of(
        tmp_path, JobSpec(name="a", command=cmd, array_size=8), ce=local_compute(2, 4096)
    )
    result, _ = await go(plan, tmp_path)
    assert result.status is RunStatus.SUCCEEDED
    events = sorted(
        (float(t), 1 if kind == "start" else -1)
        for kind, t in (line.split() for line in (tmp_path / "trace").read_text().splitlines())
    )
    level = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        level += delta
        peak = max(peak, level)
    assert 1 <= peak <= 2


@pytest.mark.slow
async def test_terminate_kills_a_running_job(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, JobSpec(name="long", command="sleep 30"))
    ids = new_job_ids(plan)
    requests = [(ids["long"], "terminate", "enough")]
    sink = RecordingSink()

    def control() -> list[tuple[str, str, str]]:
        running = any(e.name == "long" and e.state is S.RUNNING for e in sink.events)
        return [requests.pop()] if requests and running else []

    with anyio.fail_after(10):
        result = await run_plan(
            plan,
            RunOptions(run_id="r", job_ids=ids, state_dir=tmp_path),
            sinks=[sink],
            executors=lambda ce: LocalExecutor(ce, grace=0.5),
            control=control,
        )
    assert result.status is RunStatus.FAILED and sink.final("long").reason == "enough"
    assert sink.final("long").state is S.FAILED
    leader = Process.parse(sink.final("long").external_id or "")
    assert leader is not None and leader.pid > 0 and leader.ticks is not None  # pid@starttime
    await wait_until(lambda: not leader.alive(), timeout=2)


@pytest.mark.slow
async def test_a_timed_out_job_that_exits_0_on_sigterm_fails_and_its_dependents_do_not_run(
    tmp_path: Path,
) -> None:
    # It catches SIGTERM and exits 0: AWS still records the attempt FAILED for the timeout.
    cmd = "trap 'exit 0' TERM; echo $$ > leader.pid; sleep 30 & wait"
    plan = plan_of(
        tmp_path,
        JobSpec(name="t", command=cmd, timeout=0.5),
        JobSpec(name="after", command="touch ran", after=(Dependency(job="t"),)),
    )
    result, sink = await go(plan, tmp_path)
    assert result.status is RunStatus.FAILED
    final = sink.final("t")
    assert final.state is S.FAILED and final.reason == REASON_TIMEOUT
    assert final.exit_code == 0  # what the process said, kept; the reason decides
    assert sink.final("after").state is S.FAILED and not (tmp_path / "ran").exists()


@pytest.mark.parametrize(
    "reason", [REASON_TIMEOUT, REASON_SPOT.format(instance="i-1"), "CannotStartContainerError: x"]
)
async def test_an_attempt_stopped_for_a_reason_fails_whatever_its_exit_code(
    tmp_path: Path, reason: str
) -> None:
    plan = plan_of(tmp_path, JobSpec(name="a", command="x"))
    fake = FakeExecutor({"a": [Outcome(exit_code=0, status_reason=reason, retryable=False)]})
    result, sink = await go(plan, tmp_path, fake)
    assert result.status is RunStatus.FAILED
    assert sink.final("a").state is S.FAILED and sink.final("a").reason == reason
