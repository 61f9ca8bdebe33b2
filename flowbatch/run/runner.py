"""The runner: the async driver that moves jobs between the Frontier and the executors
(ninja's Builder).

One task group per run; one task per running attempt, plus a ticker (flushes sinks,
polls cancel/terminate requests, checks lost hosts) and, when asked, signal handling
(`run.signals`). A sink that cannot record (a full disk) stops the run as a signal does
(`RunResult.error`). Everything runs on one event loop thread, so the Frontier has one
writer: attempt tasks report straight to the runner, which applies the report to the
Frontier and turns the Frontier's `changes` into `JobEvent`s for the sinks. Deciding
stays in `frontier`; rendering commands, environments and log directories happens here.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from flowbatch.errors import FlowbatchError
from flowbatch.executors.base import (
    REASON_ESSENTIAL_EXITED,
    Adoptable,
    Attempt,
    ExecResult,
    Executor,
    Hurriable,
)
from flowbatch.lang.compile import Plan, compile_pipeline
from flowbatch.lang.model import ComputeEnv, JobSpec, Pipeline, Queue
from flowbatch.lang.template import Context, TemplateError, render_command
from flowbatch.run.clock import Clock, SystemClock
from flowbatch.run.fingerprint import InputsError
from flowbatch.run.frontier import Frontier, Placement
from flowbatch.run.hosts import LostHosts
from flowbatch.run.placement import Pools
from flowbatch.run.records import RunStatus
from flowbatch.run.setup import (
    Control,
    EventSink,
    Fingerprint,
    RunOptions,
    RunResult,
    Started,
    attempt_env,
    attempt_log_stem,
    backoff,
    limit_vcpus,
    missing_host_env,
    new_job_ids,
    new_run_id,
    placement_inputs,
    with_host,
)
from flowbatch.run.signals import with_signals
from flowbatch.run.state import JobState, job_event

__all__ = [
    "Adopted",
    "EventSink",
    "RunOptions",
    "RunResult",
    "limit_vcpus",
    "new_job_ids",
    "new_run_id",
    "run_plan",
    "standing_runner",
]

ExecutorFactory = Callable[[ComputeEnv], Executor]
_DRAIN_CHUNK = 2000  # events turned into JobEvents before the sinks write them
# An attempt's task's name, the one anyio would make of `Runner._run_attempt`: given,
# it is not worked out again for every attempt.
_ATTEMPT_TASK = f"{__name__}.Runner._run_attempt"


async def run_plan(
    plan: Plan,
    options: RunOptions,
    *,
    sinks: Sequence[EventSink] = (),
    executors: ExecutorFactory | None = None,
    control: Control | None = None,
    fingerprint: Fingerprint | None = None,
    clock: Clock | None = None,
    rng: random.Random | None = None,
) -> RunResult:
    """Run every job of `plan` to the end, as `options` say, and report each state
    change to `sinks`.

    `executors` makes the executor of a compute environment (default
    `flowbatch.executors.make_executor`); `control()` returns pending (job_id,
    "cancel"|"terminate", reason) requests and is polled every `options.flush_interval`
    seconds; a sink or `control` that raises stops the run (FAILED, `error` says why).
    `fingerprint(name, index)` is asked when an attempt starts and goes on its SUCCEEDED
    event. `clock` is the time of events and of the run's own waits (default the
    system's; tests pass a `clock.FakeClock`); `rng` jitters retry backoffs.
    Raises ValueError for an override naming an unknown compute environment, or an
    `env_from_host` variable that is not set.
    """
    if executors is None:
        from flowbatch.executors import make_executor

        executors = make_executor
    runner = Runner(
        plan,
        options,
        sinks=sinks,
        factory=executors,
        clock=clock or SystemClock(),
        control=control,
        rng=rng or random.Random(),
        fingerprint=fingerprint,
    )
    return await runner.run(options.handle_signals)


def standing_runner(
    options: RunOptions,
    *,
    sinks: Sequence[EventSink] = (),
    executors: ExecutorFactory | None = None,
    clock: Clock | None = None,
    rng: random.Random | None = None,
) -> Runner:
    """flowbatch server's runner: it starts with no job, queue or compute environment,
    takes them as they come (`Runner.submit`, `set_queue`, `set_compute`, `request`) and
    runs until it is cancelled (`await runner.run(False)` in a task group). Cancelled, it
    stops its executors (and so their jobs) and leaves every unfinished job as recorded,
    for the next start to settle (or, killed, to re-adopt: `Runner.submit(running=)`)."""
    if executors is None:
        from flowbatch.executors import make_executor

        executors = make_executor
    empty = Pipeline(path="<server>", params={}, computes={}, queues={}, jobs={})
    return Runner(
        compile_pipeline(empty),
        options,
        sinks=sinks,
        factory=executors,
        clock=clock or SystemClock(),
        control=None,
        rng=rng or random.Random(),
        fingerprint=None,
        standing=True,
    )


@dataclass(frozen=True, slots=True)
class Adopted:
    """An attempt an earlier runner started that goes on (a restarted flowbatch
    server's, on an `Adoptable` executor): `Runner.submit(running=...)`."""

    attempt: int
    compute: str
    host: str
    log_stem: Path  # where its logs are (`executors.logfiles`), as recorded
    external_id: str
    lost_reason: str  # how it ends if its engine no longer knows it


@dataclass(slots=True)
class _Live:
    attempt: Attempt | None = None
    external_id: str | None = None
    result: ExecResult | None = None
    scope: anyio.CancelScope | None = None
    terminate: str | None = None  # the reason of a TerminateJob
    fingerprint: str | None = None  # taken as it started: the inputs it read
    adopted: Adopted | None = None  # an earlier runner's attempt, watched again


class Runner:
    def __init__(
        self,
        plan: Plan,
        options: RunOptions,
        *,
        sinks: Sequence[EventSink],
        factory: ExecutorFactory,
        clock: Clock,
        control: Control | None,
        rng: random.Random,
        fingerprint: Fingerprint | None,
        standing: bool = False,
    ) -> None:
        """`standing`: flowbatch server's runner, which takes jobs, queues and compute
        environments at any time (`submit`, `set_queue`, `set_compute`) and runs until
        it is cancelled, leaving what was running as it was recorded for the next start
        to settle (see `flowbatch.run.standing`)."""
        self.standing = standing
        self.options = options
        run_id, job_ids = options.run_id, options.job_ids
        self.computes, queue_ces = placement_inputs(
            plan, options.compute_overrides, options.max_vcpus
        )
        self.plan = plan
        self.run_id = run_id
        self.ids = dict(job_ids)
        self.by_id = {jid: name for name, jid in job_ids.items()}
        self.log_root = Path(options.state_dir).absolute() / "logs" / run_id
        self.sinks = sinks
        self.factory = factory
        self.clock = clock
        self.control = control
        self.rng = rng
        self.fingerprint = fingerprint
        self.frontier = Frontier(
            plan,
            job_ids=job_ids,
            queue_computes=queue_ces,
            pools=Pools(self.computes),
            reuse=options.reuse,
            reuse_reason=options.reuse_reason,
        )
        self.executors: dict[str, Executor] = {}
        self.live: dict[tuple[str, int | None], _Live] = {}
        self.held = 0  # retries waiting out their backoff
        self.finished = anyio.Event()
        self.stalled: list[str] = []
        self.failed: set[str] = set()
        self.signal: str | None = None
        self.error: str | None = None  # why the run had to stop (a sink could not record)
        self.base_env = dict(os.environ)
        missing_host_env(plan, self.base_env)
        self.pipeline_dir = Path(plan.path).absolute().parent
        self._workdirs: dict[str, Path] = {}
        self.lost = LostHosts(options.host_timeout)
        self._tg: anyio.abc.TaskGroup | None = None
        # A job's `inputs` are read (globbed and hashed, up to fingerprint.MAX_READ_JOB)
        # in a worker thread, one job at a time: the Fingerprints cache has one writer
        # and the disk one reader, and the loop goes on meanwhile.
        self._reading = anyio.CapacityLimiter(1)
        self._dirty = False
        self._to_adopt: list[tuple[str, int | None]] = []  # adopted, not yet watched

    # -- the run ------------------------------------------------------------------------
    async def run(self, handle_signals: bool) -> RunResult:
        return await (with_signals(self._run, self) if handle_signals else self._run())

    async def _run(self) -> RunResult:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._ticker)
                # Every job's first events (SUBMITTED, PENDING: 20,000 for 10,000 jobs,
                # 0.5-0.8 s to write) are written before any job starts, so that this
                # flush, the longest of a run, holds up no running job's report.
                self._drain()
                self._flush_sinks()
                if self.error is None:
                    self._adopt_all()
                    self._dispatch()
                await self.finished.wait()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    if self.standing:
                        pass  # what runs stays recorded as running: the next start settles it
                    elif self.signal is not None:
                        self.frontier.fail_all(f"Run interrupted ({self.signal})")
                    elif self.error is not None:
                        self.frontier.fail_all(f"Run stopped: {self.error}")
                    self._drain()
                    self._flush_sinks()
                finally:  # a bug above still closes the executors (and stops their jobs)
                    for executor in self.executors.values():
                        with anyio.move_on_after(10):
                            await executor.aclose()
        if self.signal is not None:
            return RunResult(RunStatus.INTERRUPTED, sorted(self.failed), signal=self.signal)
        failed = self.failed or self.stalled or self.error
        status = RunStatus.FAILED if failed else RunStatus.SUCCEEDED
        return RunResult(status, sorted(self.failed), list(self.stalled), error=self.error)

    def _dispatch(self) -> None:
        # A loop, not recursion: an attempt that fails as it is launched (its command
        # does not render) is recorded here and frees its place for the next, which may
        # fail too; with thousands of children, recursing would overflow the stack.
        while placements := self.frontier.place():
            # Register every placement before launching any, so each is live while
            # another's failure at launch is recorded.
            for p in placements:
                self.live[(p.name, p.index)] = _Live()
            freed = False
            for p in placements:
                failure = self._launch(p)
                if failure is not None:
                    self._record((p.name, p.index), failure)
                    freed = True
            if not freed:
                break  # place() filled what room there is: asked again, it places nothing
        self._drain()
        if self.standing:
            return  # it ends when it is cancelled, never because it ran out of work
        # A lost host may come back (`_check_hosts` dispatches again when it does): while
        # work is ready for it, a run waits, as AWS leaves such jobs RUNNABLE.
        if self.live or self.held or (self.lost and self.frontier.runnable_enabled()):
            return
        if not self.frontier.done:
            # Nothing runs and nothing can be placed: what is left waits in a disabled
            # queue (AWS leaves such jobs RUNNABLE forever; a local run stops and says so).
            self.stalled = self.frontier.runnable_waiting() or ["(unplaceable)"]
        self.finished.set()

    def _launch(self, p: Placement) -> ExecResult | None:
        """Start an attempt's task; the result of an attempt that cannot start."""
        key = (p.name, p.index)
        live = self.live[key]
        try:
            live.attempt = self._attempt(p)
            if self.fingerprint is not None and not self.frontier.spec(p.name).inputs:
                # Without `inputs` it is a render and a hash (cached): cheaper than a
                # thread hand-off. With them, `_run_attempt` reads them off the loop.
                live.fingerprint = self.fingerprint(p.name, p.index)
        except TemplateError as exc:
            return ExecResult(exit_code=None, status_reason=exc.message, retryable=False)
        except InputsError as exc:  # `inputs` over the limits: `-p data=/`, say
            return ExecResult(exit_code=None, status_reason=str(exc), retryable=False)
        except OSError as exc:  # the log directory: a full or read-only disk
            reason = f"cannot create the run's log directory: {exc.strerror or exc}"
            return ExecResult(exit_code=None, status_reason=reason, retryable=False)
        assert self._tg is not None
        self._tg.start_soon(self._run_attempt, key, live, name=_ATTEMPT_TASK)
        return None

    def _attempt(self, p: Placement, log_stem: Path | None = None) -> Attempt:
        """The attempt `p` places; `log_stem`, an adopted one's (recorded already)."""
        spec = self.frontier.spec(p.name)
        job_id = self.ids[p.name] if p.index is None else f"{self.ids[p.name]}:{p.index}"
        ctx = Context(
            params=self.plan.params,
            job_name=p.name,
            job_id=job_id,
            attempt=p.attempt,
            index=p.index,
            size=spec.array_size,
        )
        command = render_command(spec.command, ctx, spec.parameters)
        env = attempt_env(self.base_env, spec, job_id, p.index, p.attempt, p.compute, self.run_id)
        if log_stem is None:
            log_stem = attempt_log_stem(self.log_root, p.name, p.index, p.attempt)
        return Attempt(
            run_id=self.run_id,
            job_id=job_id,
            name=p.name,
            index=p.index,
            attempt=p.attempt,
            command=command,
            env=env,
            host_env=self.base_env,
            workdir=self._workdir(spec.workdir),
            vcpus=spec.vcpus,
            memory=spec.memory,
            gpus=spec.gpus,
            timeout=spec.timeout,
            image=spec.image,
            log_stem=log_stem,
            compute=self.computes[p.compute],
            host=p.host,
            pipeline=self.plan.path,
            tags=spec.tags,
        )

    def _workdir(self, relative: str) -> Path:
        # One Path a workdir, not one an attempt: joining one costs what a job's events do.
        where = self._workdirs.get(relative)
        if where is None:
            where = self._workdirs[relative] = self.pipeline_dir / relative
        return where

    async def _run_attempt(self, key: tuple[str, int | None], live: _Live) -> None:
        attempt = live.attempt
        assert attempt is not None
        executor = self._executor(attempt.compute)
        result: ExecResult | None = None
        if self.fingerprint is not None and live.fingerprint is None:
            try:
                live.fingerprint = await anyio.to_thread.run_sync(
                    self.fingerprint, attempt.name, attempt.index, limiter=self._reading
                )
            except InputsError as exc:  # `inputs` over the limits: `-p data=/`, say
                result = ExecResult(exit_code=None, status_reason=str(exc), retryable=False)
                self._finish(key, result)
                return
        with anyio.CancelScope() as scope:
            live.scope = scope
            if live.adopted is not None and live.terminate is not None:
                scope.cancel()  # terminated before it was watched again: adopt stops it
            if live.terminate is None or live.adopted is not None:
                try:
                    if live.adopted is not None:
                        result = await self._adopted(executor, attempt, live.adopted)
                    else:
                        result = await executor.run(
                            attempt, task_status=Started(functools.partial(self._on_started, key))
                        )
                except Exception as exc:  # an executor bug must not take the run down
                    result = ExecResult(
                        exit_code=None, status_reason=f"executor error: {exc}", retryable=False
                    )
        self._finish(key, result)

    async def _adopted(self, executor: Executor, attempt: Attempt, adopted: Adopted) -> ExecResult:
        assert isinstance(executor, Adoptable)
        result = await executor.adopt(attempt, adopted.external_id)
        if result is None:  # gone with the runner that watched it: lost, to be retried or not
            return ExecResult(exit_code=None, status_reason=adopted.lost_reason, host=attempt.host)
        return result

    def _executor(self, ce: ComputeEnv) -> Executor:
        executor = self.executors.get(ce.name)
        if executor is None:
            executor = self.executors[ce.name] = self.factory(ce)
        return executor

    def _on_started(self, key: tuple[str, int | None], external_id: object) -> None:
        live = self.live.get(key)
        if live is None or live.external_id is not None:
            return
        live.external_id = "" if external_id is None else str(external_id)
        self.frontier.started(*key)
        self._drain()

    def _finish(self, key: tuple[str, int | None], result: ExecResult | None) -> None:
        if self._record(key, result):
            self._dispatch()

    def _record(self, key: tuple[str, int | None], result: ExecResult | None) -> bool:
        """Apply how an attempt ended to the Frontier (a retry waits out its backoff);
        False for an attempt cancelled with the whole run, which is left as it is."""
        live = self.live[key]
        live.result = result
        name, index = key
        attempt = live.attempt
        if result is not None and result.host_lost and attempt is not None:
            place = (attempt.compute.name, attempt.host or attempt.compute.name)
            self.lost.lose(*place, self.clock.now())
            self.frontier.lose_host(*place)
        if live.terminate is not None and (result is None or not result.ok):
            self.frontier.ended(name, index, ok=False, reason=live.terminate, terminated=True)
        elif result is None:
            return False  # cancelled with the whole run: the interruption records it
        elif result.ok:
            self.frontier.ended(name, index, ok=True)
        else:
            retry_strategy = self.frontier.spec(name).retry
            number = attempt.attempt if attempt is not None else 1
            retry = (
                result.retryable
                and number < retry_strategy.attempts
                and retry_strategy.should_retry(
                    result.exit_code, result.status_reason, result.reason
                )
            )
            root = result.status_reason
            if result.exit_code is not None and result.status_reason == REASON_ESSENTIAL_EXITED:
                root = f"exited with code {result.exit_code}"
            self.frontier.ended(
                name, index, ok=False, retry=retry, reason=result.status_reason, root=root
            )
            if retry:
                self.held += 1
                assert self._tg is not None
                self._tg.start_soon(
                    self._requeue, key, backoff(retry_strategy.backoff, number, self.rng)
                )
        if self.frontier.state(name, index) is JobState.FAILED:
            self.failed.add(name)
        self._drain()
        del self.live[key]
        return True

    async def _requeue(self, key: tuple[str, int | None], delay: float) -> None:
        if delay > 0:
            await self.clock.sleep(delay)
        self.held -= 1
        self.frontier.requeue(*key)
        self._dispatch()

    # -- events --------------------------------------------------------------------------
    def _drain(self) -> None:
        changes = self.frontier.changes
        if not changes:
            return
        if len(changes) > _DRAIN_CHUNK:
            # Thousands at once (every job's first events, a cascade): the sinks write
            # them a chunk at a time, so that neither the events nor what the sinks
            # make of them are all held at once (the runner's peak memory).
            pending = changes[_DRAIN_CHUNK:]
            del changes[_DRAIN_CHUNK:]
            while changes:
                self._drain()
                self._flush_sinks()
                changes += pending[:_DRAIN_CHUNK]
                del pending[:_DRAIN_CHUNK]
            return
        now = self.clock.now()
        sinks = self.sinks
        for c in changes:
            job_id = self.ids[c.name]
            if c.index is not None:
                job_id = f"{job_id}:{c.index}"
            live = self.live.get((c.name, c.index)) if c.attempt else None
            fingerprint = None
            if (
                c.state is JobState.SUCCEEDED
                and self.fingerprint is not None
                and (c.index is not None or not self.frontier.spec(c.name).is_array)
            ):
                # A reused job's is the same as last time's (that is why it is reused).
                try:
                    fingerprint = live.fingerprint if live else self.fingerprint(c.name, c.index)
                except InputsError:  # its files grew past the limits since: none recorded
                    fingerprint = None
            a = live.attempt if live is not None else None
            result = live.result if live is not None and a is not None else None
            event = job_event(
                run_id=self.run_id,
                job_id=job_id,
                name=c.name,
                index=c.index,
                state=c.state,
                time=now,
                reason=c.reason,
                attempt=c.attempt,
                exit_code=None if result is None else result.exit_code,
                peak_memory=None if result is None else result.peak_memory,
                attempt_reason="" if result is None else result.reason,
                log_path=None if a is None else str(a.log_stem),
                compute=None if a is None else a.compute.name,
                host=None if a is None else a.host,
                external_id=None if a is None or live is None else live.external_id,
                fingerprint=fingerprint,
            )
            for sink in sinks:
                sink.emit(event)
            if c.state is JobState.FAILED and c.index is None:
                self.failed.add(c.name)
        changes.clear()
        self._dirty = True

    # -- background tasks ---------------------------------------------------------------
    async def _ticker(self) -> None:
        last_host_check = self.clock.now()
        while True:
            await self.clock.sleep(self.options.flush_interval)
            if self._dirty:
                self._dirty = False
                self._flush_sinks()
            if self.control is not None:
                try:
                    requests = list(self.control())
                except (FlowbatchError, OSError) as exc:
                    # The job database: full, read-only, locked too long (a StoreError).
                    # Any other exception is a bug, for the CLI to report as one.
                    self._stop(str(exc))
                    requests = []
                for job_id, action, reason in requests:
                    self._request(job_id, action, reason)
                    self._dirty = True  # a flush acknowledges it (`flowbatch cancel` waits)
            if self.lost and self.clock.now() - last_host_check >= self.options.host_check_interval:
                last_host_check = self.clock.now()
                await self._check_hosts()

    def _flush_sinks(self) -> None:
        """Flush every sink; one that cannot record (a full disk) stops the run."""
        for sink in self.sinks:
            try:
                sink.flush()
            except (FlowbatchError, OSError) as exc:  # a full disk, not a bug
                self._stop(str(exc))

    def _stop(self, error: str) -> None:
        if self.error is None:
            self.error = error
            if self._tg is not None:
                self._tg.cancel_scope.cancel()

    def _request(self, job_id: str, action: str, reason: str) -> None:
        parent, _, child = job_id.partition(":")
        name = self.by_id.get(parent)
        if name is None:
            return  # not this run's job (the store already checked it exists)
        index = int(child) if child else None
        terminate = action == "terminate"
        for key in self.frontier.cancel(name, index, reason, terminate=terminate):
            live = self.live.get(key)
            if live is not None:
                live.terminate = reason
                if live.scope is not None:
                    live.scope.cancel()
        self._drain()
        if self._tg is not None:  # (a standing runner is told before it starts, too)
            self._dispatch()

    async def _check_hosts(self) -> None:
        for ce_name, host in list(self.lost):
            executor = self._executor(self.computes[ce_name])
            if await executor.check_host(host):
                self.lost.back(ce_name, host)
                self.frontier.restore_host(ce_name, host)
        self._dispatch()  # the hosts back take work first
        # Only lost hosts could take what is left, and they stayed away too long.
        idle = not self.finished.is_set() and not self.live and not self.held
        if idle and self.lost.given_up(self.clock.now()):
            self.frontier.fail_all(self.lost.reason())
            self._dispatch()

    # -- a standing runner (flowbatch server) ---------------------------------------------
    def submit(
        self,
        specs: Sequence[JobSpec],
        job_ids: Mapping[str, str],
        *,
        begun: Mapping[tuple[str, int | None], int] | None = None,
        ended: Mapping[str, bytes] | None = None,
        finished: Mapping[str, tuple[bool, str]] | None = None,
        running: Mapping[tuple[str, int | None], Adopted] | None = None,
    ) -> None:
        """Jobs submitted now (see `Frontier.add`, which says what a restarted server
        gives back in `begun`, `ended` and `finished`): their first events are reported
        and whatever fits starts. `running` are attempts an earlier runner started that
        go on (see `adoptable`): watched again, with the same number and log directory,
        and ended as any other; nothing is reported of them until they end."""
        self.ids.update(job_ids)
        self.by_id.update((jid, name) for name, jid in job_ids.items())
        running = running or {}
        self.frontier.add(
            specs,
            job_ids,
            begun=begun,
            ended=ended,
            finished=finished,
            running={k: (a.attempt, a.compute, a.host) for k, a in running.items()},
        )
        for (name, index), adopted in running.items():
            where = Placement(name, index, adopted.attempt, adopted.compute, adopted.host)
            # Its timeout counts afresh from when the executor sees it running again:
            # what is recorded is when the engine accepted it, maybe long before it
            # ran. SLURM's own --time, from the job's real start, stays the backstop.
            self.live[(name, index)] = _Live(
                attempt=self._attempt(where, adopted.log_stem),
                external_id=adopted.external_id,
                adopted=adopted,
            )
            self._to_adopt.append((name, index))
        self._drain()
        if self._tg is not None:
            self._adopt_all()
            self._dispatch()

    def adoptable(self, compute: str, host: str) -> bool:
        """Whether an attempt running on `host` of `compute` when an earlier runner
        stopped can be watched again: its environment's executor is `Adoptable`."""
        ce = self.computes.get(compute)
        if ce is None or all(h.name != host for h in ce.hosts):
            return False
        return isinstance(self._executor(ce), Adoptable)

    def _adopt_all(self) -> None:
        """Start the task of every adopted attempt not yet watched."""
        assert self._tg is not None
        keys, self._to_adopt = self._to_adopt, []
        for key in keys:
            self._tg.start_soon(self._run_attempt, key, self.live[key], name=_ATTEMPT_TASK)

    def set_compute(self, ce: ComputeEnv, *, enabled: bool) -> None:
        ce = with_host(ce)
        self.computes[ce.name] = ce
        self.frontier.set_compute(ce, enabled=enabled)
        if self._tg is not None:
            self._dispatch()

    def set_queue(self, queue: Queue) -> None:
        self.frontier.set_queue(queue)
        if self._tg is not None:
            self._dispatch()

    def forget(self, job_id: str) -> None:
        """Drop a job that ended (see `Frontier.forget`)."""
        name = self.by_id.pop(job_id)
        self.ids.pop(name, None)
        self.frontier.forget(name)

    def fail(self, job_id: str, reason: str) -> None:
        """Fail a job that has not started (a restarted server's job whose lost attempt
        was its last): it and what waits for it end FAILED, `reason` its statusReason."""
        name = self.by_id[job_id]
        self.frontier.cancel(name, None, reason, terminate=False)
        self._drain()

    def request(self, job_id: str, action: str, reason: str) -> None:
        """CancelJob or TerminateJob, as `flowbatch cancel` asks through the store."""
        self._request(job_id, action, reason)
        self._dirty = True

    def interrupt(self, name: str) -> bool:
        """The first signal stops the run (see `run.signals`); False for a later one."""
        if self.signal is not None or self.finished.is_set():
            return False
        self.signal = name
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
        return True

    def hurry(self) -> None:
        for executor in self.executors.values():
            if isinstance(executor, Hurriable):
                executor.hurry()
