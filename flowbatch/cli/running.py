"""CLI commands: `run` (a pipeline on its compute environments) and `cancel` /
`terminate` (AWS CancelJob / TerminateJob, from another terminal, through the store's
request table).

`run` is the composition root of a run: load -> Store -> run_plan with the store and a
progress sink -> end_run. The runner never imports the store; the store's
`take_requests` reaches it as the `control` callback.

Imports: front, run, run_setup, store, report, fingerprint, compile (types), state,
diagnostics, executors.base (reasons), cli.common, cli.planning; click, anyio.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import click

from flowbatch.cli.common import load_plan, params_option
from flowbatch.cli.outputs import prune, write_reports
from flowbatch.executors.base import GRACE_SECONDS, REASON_CANCELLED, REASON_TERMINATED
from flowbatch.state import JobEvent
from flowbatch.syntax import duration_seconds

if TYPE_CHECKING:
    from flowbatch.compile import Plan
    from flowbatch.store import Store, Stray

EXIT_INTERRUPTED = 130


class _Progress(Protocol):
    """What the CLI needs of a progress sink (report.Reporter is one)."""

    def emit(self, event: JobEvent) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


def _split_overrides(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise click.BadParameter(f"expected OLD=NEW, got `{item}`", param_hint="'--compute'")
        out[old] = new
    return out


def _host_timeout(ctx: click.Context, param: click.Parameter, value: str) -> float | None:
    """A duration (`10m`, `90s`, or seconds) or `never`."""
    text = value.strip()
    if text == "never":
        return None
    seconds = duration_seconds(text)
    if seconds is None:
        try:
            seconds = float(text)
        except ValueError:
            seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise click.BadParameter(f"{text!r} is not a duration (e.g. 10m, 90s) or `never`")
    return seconds


@click.command("run")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@params_option
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where jobs.db and logs go (default: .flowbatch beside FILE).",
)
@click.option("--max-vcpus", type=click.IntRange(min=1), help="Cap local compute environments.")
@click.option(
    "--compute",
    "overrides",
    multiple=True,
    metavar="OLD=NEW",
    help="Run the queues' compute environment OLD on NEW instead (repeatable).",
)
@click.option(
    "--computes",
    "compute_files",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    metavar="FILE",
    help="A .flow file of compute environments to add, e.g. your cluster's (repeatable).",
)
@click.option(
    "--junit",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a JUnit XML report of the run here (one test case per job).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Reuse what succeeded in the latest run and has not changed (see `flowbatch plan`).",
)
@click.option(
    "--keep-days",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Forget runs (and their logs) that ended more than this many days ago "
    "(AWS Batch keeps a finished job 24 hours).",
)
@click.option(
    "--host-timeout",
    metavar="DURATION",
    callback=_host_timeout,
    default="10m",
    show_default=True,
    help="When only lost hosts (e.g. SSH) could run the jobs left, fail them once the host "
    "lost last has been gone this long. `never` waits, as AWS does.",
)
@click.option("--busy-timeout", type=click.FloatRange(min=0), hidden=True)
@click.pass_context
def run_command(
    ctx: click.Context,
    file: Path,
    params: tuple[str, ...],
    state_dir: Path | None,
    max_vcpus: int | None,
    overrides: tuple[str, ...],
    compute_files: tuple[Path, ...],
    junit: Path | None,
    resume: bool,
    keep_days: float,
    host_timeout: float | None,
    busy_timeout: float | None,
) -> None:
    """Run the pipeline in FILE; exit 0 if every job succeeded, 1 if one failed,
    2 for invalid input, 130 when interrupted."""
    import anyio

    from flowbatch.cli.planning import resume_decision
    from flowbatch.fingerprint import Fingerprints
    from flowbatch.run import new_job_ids, new_run_id, run_plan
    from flowbatch.run_setup import override_errors
    from flowbatch.store import Store, StoreError

    plan = load_plan(ctx, file, params, computes=compute_files)
    compute_overrides = _split_overrides(overrides)
    # Before the store is touched: a run that cannot start must not become "latest".
    if errors := override_errors(plan.computes, compute_overrides):
        for message in errors:
            click.echo(f"error: {message}", err=True)
        ctx.exit(2)
    state = state_dir if state_dir is not None else file.parent / ".flowbatch"
    try:
        store = (
            Store.open(state)
            if busy_timeout is None  # hidden: tests shorten the wait for a locked database
            else Store.open(state, busy_timeout=busy_timeout)
        )
    except StoreError as err:
        click.echo(f"error: {err}", err=True)
        ctx.exit(2)
    try:
        try:
            prune(store, state, keep_days)
            decision = resume_decision(store, plan, resume=resume)
            if resume and decision.previous_run is not None:
                _refuse_strays(ctx, store, decision.previous_run)
            run_id = new_run_id()
            job_ids = new_job_ids(plan)
            store.begin_run(run_id, plan.pipeline, job_ids, created_at=time.time())
        except StoreError as err:  # e.g. another process holds the database locked
            click.echo(f"error: {err}", err=True)
            ctx.exit(2)
        reporter = _reporter(plan)
        click.echo(f"run {run_id}: {len(plan)} jobs, {plan.process_count()} processes", err=True)
        if resume:
            done = decision.summary()["processesReused"]
            since = decision.previous_run or "none"
            click.echo(f"resume from run {since}: {done} processes reused", err=True)
        try:
            result = anyio.run(
                functools.partial(
                    run_plan,
                    plan,
                    run_id=run_id,
                    job_ids=job_ids,
                    state_dir=state,
                    sinks=[store, reporter],
                    control=lambda: store.take_requests(run_id),
                    compute_overrides=compute_overrides,
                    max_vcpus=max_vcpus,
                    handle_signals=True,
                    fingerprint=Fingerprints(plan).of,
                    reuse=decision.reuse(),
                    reuse_reason=decision.reason,
                    host_timeout=host_timeout,
                )
            )
        except ValueError as err:  # an override naming an unknown compute environment
            click.echo(f"error: {err}", err=True)
            store.end_run(run_id, "FAILED", ended_at=time.time())
            ctx.exit(2)
        except KeyboardInterrupt:  # before the runner's signal handling was in place
            store.end_run(run_id, "INTERRUPTED", ended_at=time.time())
            ctx.exit(EXIT_INTERRUPTED)
        reporter.close()
        reason = "" if result.error is None else f"Run stopped: {result.error}"
        try:
            try:
                store.end_run(run_id, result.status, ended_at=time.time(), reason=reason)
            except StoreError as err:
                if reason:
                    raise
                # The last flush failed (a full disk): record that, as small as it gets.
                result.error = str(err)
                reason = f"Run stopped: {err}"
                store.end_run(run_id, "FAILED", ended_at=time.time(), reason=reason)
            if result.error is None:
                write_reports(store, plan, run_id, result.status, junit=junit)
        except StoreError as err:
            # Nothing more can be recorded: say so once, without a traceback. The run's
            # record is settled as lost by the next command that can write it.
            click.echo(f"error: run {run_id} could not be recorded: {err}", err=True)
            ctx.exit(1)
    finally:
        store.close()
    if result.error is not None:
        click.echo(f"error: run {run_id} stopped: {result.error}", err=True)
        ctx.exit(1)
    if result.stalled:
        click.echo(
            "left RUNNABLE (their queue is disabled; AWS would keep them waiting): "
            + ", ".join(result.stalled),
            err=True,
        )
    if result.status == "INTERRUPTED":
        click.echo(f"run {run_id} interrupted ({result.signal})", err=True)
    elif result.failed or result.stalled:
        click.echo(f"run {run_id} failed: {', '.join(result.failed or result.stalled)}", err=True)
    else:
        click.echo(f"run {run_id} succeeded", err=True)
    ctx.exit(result.exit_code)


def _refuse_strays(ctx: click.Context, store: Store, previous_run: str) -> None:
    """`run --resume` never starts a job again beside an attempt of it that a lost runner
    left and that may still run: exit 2 naming them and how to stop them."""
    from flowbatch.store import RUNNER_LOST

    alive = []
    for stray in store.stray_attempts(run_id=previous_run):
        if _stray_alive(stray):
            alive.append(stray)
        else:
            store.stopped(stray, f"{RUNNER_LOST}; the process was found gone")
    if not alive:
        return
    click.echo(
        f"error: run {previous_run} lost its runner while these jobs ran, and they may "
        "still be running; running them again now would run them twice:",
        err=True,
    )
    for stray in alive[:20]:
        click.echo(f"  {stray.job_id} (attempt {stray.attempt}, {_where(stray)})", err=True)
    if len(alive) > 20:
        click.echo(f"  ... and {len(alive) - 20} more", err=True)
    click.echo(
        f"hint: `flowbatch terminate JOB_ID --state-dir {store.path.parent}` stops one "
        "(an array job's id stops its children), then resume again",
        err=True,
    )
    ctx.exit(2)


def _where(stray: Stray) -> str:
    kind = stray.kind or "unknown compute environment"
    ext = stray.external_id or "no id recorded"
    return f"{kind} `{stray.compute}`, {ext}"


def _stray_alive(stray: Stray) -> bool:
    """Whether an attempt left by a lost runner may still run. Only a local process of
    this machine and boot, recorded as `pid@starttime`, can be known to be gone; a pid
    recorded without its start time is alive if any process has that pid."""
    from flowbatch.processes import Process

    if stray.kind != "local" or not stray.here:
        return True
    if not stray.same_boot:
        return False
    proc = Process.parse(stray.external_id or "")
    return proc is None or proc.alive()


def _reporter(plan: Plan) -> _Progress:
    # Imported here, as the other commands' modules are, so `flowbatch --help` stays quick.
    from flowbatch.report import Reporter, color_wanted

    arrays = {
        name: spec.array_size
        for name, spec in plan.pipeline.jobs.items()
        if spec.array_size is not None
    }
    return Reporter(
        sys.stderr,
        tty=sys.stderr.isatty(),
        color=color_wanted(sys.stderr),
        total=plan.process_count(),
        arrays=arrays,
    )


_CONTROL_POLL_SECONDS = 0.1


def _control(action: str) -> click.Command:
    @click.command(action)
    @click.argument("job_id")
    @click.option("--reason", default=None, help="The status reason to record.")
    @click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path(".flowbatch"),
        show_default=True,
    )
    @click.option(
        "--wait",
        "wait_seconds",
        type=click.FloatRange(min=0),
        default=60.0,
        show_default=True,
        help="How long to wait for the run to act on the request.",
    )
    @click.pass_context
    def command(
        ctx: click.Context, job_id: str, reason: str | None, state_dir: Path, wait_seconds: float
    ) -> None:
        from flowbatch.store import Store, StoreError

        try:
            store = Store.open(state_dir, create=False)
        except StoreError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(2)
        try:
            default = REASON_CANCELLED if action == "cancel" else REASON_TERMINATED
            code, message = _act(
                store, job_id, action, reason or f"{default} by user", wait_seconds
            )
        except StoreError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(2)
        finally:
            store.close()
        click.echo(message if code == 0 else f"error: {message}", err=True)
        ctx.exit(code)

    command.__doc__ = (
        "Cancel JOB_ID if it has not started (AWS CancelJob). Waits for the run to act "
        "and says what happened: exit 0 once cancelled, 1 if it had already started "
        "(use `flowbatch terminate`) or finished."
        if action == "cancel"
        else "Terminate JOB_ID, killing it if it runs (AWS TerminateJob). Waits until it "
        "has stopped. A job left running by a runner that died (kill -9) is stopped too: "
        "its process group if it is still the same process, or its SLURM job."
    )
    return command


def _act(store: Store, job_id: str, action: str, reason: str, wait: float) -> tuple[int, str]:
    """Ask the run to cancel or terminate `job_id`, wait for it to act, and say what
    happened: (exit code, message)."""
    job = store.describe(job_id)
    status = job["status"]
    if status in ("SUCCEEDED", "FAILED"):
        if action == "terminate" and store.stray_attempts(job["jobId"]):
            return _stop_strays(store, job["jobId"])
        return 1, f"job {job_id} already {status}" + _why(job)
    if action == "cancel" and status in ("STARTING", "RUNNING"):
        return 1, _started(job_id, status)
    from flowbatch.store import RUNNER_LOST

    seq = store.request(job_id, action, reason)  # type: ignore[arg-type]
    deadline = time.monotonic() + wait
    while True:
        store.settle_lost_runs()  # a runner found dead cannot act: its jobs fail now
        applied = store.request_state(seq) == "applied"
        job = store.describe(job_id)
        status = job["status"]
        lost = status == "FAILED" and str(job["statusReason"]).startswith(RUNNER_LOST)
        if lost:
            if action == "terminate" and store.stray_attempts(job["jobId"]):
                return _stop_strays(store, job["jobId"])
            return 1, f"job {job_id} FAILED" + _why(job)
        children = _children(job)
        if applied and children is not None:
            waiting, running = children
            if action == "cancel" and waiting == 0:
                note = f"; {running} had already started: " if running else ""
                return 0, f"job {job_id}: its children not started are cancelled" + (
                    note + f"use `flowbatch terminate {job_id}`" if running else ""
                )
            if action == "terminate" and waiting == running == 0:
                return 0, f"job {job_id} terminated"
        elif status == "FAILED":
            if job["statusReason"] == reason:
                return 0, f"job {job_id} {'cancelled' if action == 'cancel' else 'terminated'}"
            return 1, f"job {job_id} FAILED" + _why(job)
        elif status == "SUCCEEDED":
            return 1, f"job {job_id} SUCCEEDED before the {action} reached it"
        elif applied and action == "cancel" and status in ("STARTING", "RUNNING"):
            return 1, _started(job_id, status)
        if time.monotonic() >= deadline:
            state = store.request_state(seq)
            return 1, (
                f"job {job_id} is still {status} after {wait:g} s: the run "
                + ("has not taken the request yet" if state == "open" else "is still acting on it")
                + " (it stays queued)"
            )
        time.sleep(_CONTROL_POLL_SECONDS)


def _children(job: dict[str, Any]) -> tuple[int, int] | None:
    """An array job's children not yet started and started but not done; None for a
    job that is no array."""
    summary = job.get("arrayProperties", {}).get("statusSummary")
    if summary is None:
        return None
    waiting = sum(int(summary[s]) for s in ("SUBMITTED", "PENDING", "RUNNABLE"))
    return waiting, int(summary["STARTING"]) + int(summary["RUNNING"])


def _started(job_id: str, status: str) -> str:
    return (
        f"job {job_id} had already started ({status}): cancel only stops jobs that have "
        f"not; use `flowbatch terminate {job_id}`"
    )


def _why(job: dict[str, Any]) -> str:
    reason = job.get("statusReason")
    return f": {reason}" if reason else ""


def _stop_strays(store: Store, job_id: str) -> tuple[int, str]:
    """Stop what a lost runner left running of `job_id`: a local process group that is
    still the recorded process (never a pid reused since), a SLURM job by its id. What
    cannot be reached from here is named, with exit 1."""
    from flowbatch.store import RUNNER_LOST

    stopped, unreachable = [], []
    for stray in store.stray_attempts(job_id):
        outcome = _stop_stray(stray)
        if outcome is None:
            unreachable.append(f"{stray.job_id} attempt {stray.attempt} ({_where(stray)})")
            continue
        store.stopped(stray, f"{RUNNER_LOST}; {outcome}")
        stopped.append(f"{stray.job_id} attempt {stray.attempt}: {outcome}")
    lines = [f"job {job_id}: its runner was lost", *stopped]
    if unreachable:
        lines.append("cannot be stopped from here (stop them where they run):")
        lines += unreachable
        return 1, "\n  ".join(lines)
    return 0, "\n  ".join(lines)


def _stop_stray(stray: Stray) -> str | None:
    """Stop one attempt a lost runner left; what was done, or None if nothing can be."""
    import signal
    import subprocess

    from flowbatch.processes import Process

    if stray.kind == "local" and stray.here:
        if not stray.same_boot:
            return "gone (the machine restarted)"
        proc = Process.parse(stray.external_id or "")
        if proc is None or proc.ticks is None:
            # A bare pid (recorded before start times were): it may be another
            # process's by now, and is never signalled.
            return None if proc is not None and proc.alive() else "gone"
        if not proc.alive():
            return "gone"
        proc.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        while proc.alive() and time.monotonic() < deadline:
            time.sleep(_CONTROL_POLL_SECONDS)
        if proc.alive():
            proc.signal_group(signal.SIGKILL)
            return f"process group {proc.pid} killed"
        return f"process group {proc.pid} terminated"
    if stray.kind == "slurm" and stray.external_id and stray.external_id.isdigit():
        try:
            done = subprocess.run(
                ["scancel", stray.external_id], capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return f"SLURM job {stray.external_id} cancelled" if done.returncode == 0 else None
    return None


COMMANDS: list[click.Command] = [run_command, _control("cancel"), _control("terminate")]
