"""CLI command: `run` (a pipeline on its compute environments). `cancel` and
`terminate` live in `control`, which `run` imports only for --resume.

`run` is the composition root of a run: load -> Store -> run_plan with the store and a
progress sink -> end_run. The runner never imports the store; the store's
`take_requests` reaches it as the `control` callback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import click

from flowbatch.cli.common import (
    end_cleanly,
    load_plan,
    params_option,
    startup_over,
    state_dir_option,
    storable,
)
from flowbatch.cli.common import state_dir as resolve_state_dir
from flowbatch.cli.outputs import prune, write_reports
from flowbatch.cli.remote import server_option
from flowbatch.cli.reporting import CommandError, fail, report_error
from flowbatch.cli.streams import keep_running_when_unread
from flowbatch.lang.syntax import duration_seconds
from flowbatch.outputs.jobview import visible
from flowbatch.run.records import RunStatus
from flowbatch.run.state import JobEvent, JobState

if TYPE_CHECKING:
    from flowbatch.lang.compile import Plan
    from flowbatch.store.jobstore import Store

EXIT_INTERRUPTED = 130
# The runner appends events and updates its jobs' rows: SQLite's default 2 MiB cache of
# pages (filled by 10,000 jobs' rows) buys it nothing the OS's cache of the file does
# not, and was 1.5 MiB of the run's peak memory (issue 13: 10,000 jobs < 50 MiB). The
# worst single flush (bench/bench_store.py, 50,003 events) takes as long either way.
_PAGE_CACHE_KIB = 512
_BUG_REASON = "Run stopped: an internal error in flowbatch (see the command's output)"


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


def _seconds(text: str) -> float | None:
    """A duration as the language writes it (`30s`, `2m`) or plain seconds; None for
    anything else, negative or infinite included."""
    seconds = duration_seconds(text)
    if seconds is None:
        try:
            seconds = float(text)
        except ValueError:
            return None
    return seconds if 0 <= seconds < float("inf") else None


def _stop_grace(ctx: click.Context, param: click.Parameter, value: str) -> float:
    """A duration (`30s`, `2m`, or seconds)."""
    seconds = _seconds(value.strip())
    if seconds is None:
        raise click.BadParameter(f"{value.strip()!r} is not a duration (e.g. 30s, 2m)")
    return seconds


def _host_timeout(ctx: click.Context, param: click.Parameter, value: str) -> float | None:
    """A duration (`10m`, `90s`, or seconds) or `never`."""
    text = value.strip()
    if text == "never":
        return None
    seconds = _seconds(text)
    if seconds is None:
        raise click.BadParameter(f"{text!r} is not a duration (e.g. 10m, 90s) or `never`")
    return seconds


@click.command("run")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@params_option
@state_dir_option
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
@click.option(
    "--stop-grace",
    metavar="DURATION",
    callback=_stop_grace,
    default="30s",
    show_default=True,
    help="How long a job that is stopped (timeout, terminate, Ctrl-C) has between SIGTERM "
    "and SIGKILL, as AWS's stopTimeout. A second Ctrl-C kills at once.",
)
@server_option
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
    stop_grace: float,
    server: str | None,
    busy_timeout: float | None,
) -> None:
    """Run the pipeline in FILE; exit 0 if every job succeeded, 1 if one failed,
    2 for invalid input, 130 when interrupted. With --server, every job runs on that
    flowbatch server (its queue of the same name), followed from here."""
    import anyio

    from flowbatch.executors import local_limits_notice, make_executor
    from flowbatch.run.fingerprint import Fingerprints
    from flowbatch.run.runner import new_job_ids, new_run_id, run_plan
    from flowbatch.run.setup import RunOptions, SetupError, override_errors
    from flowbatch.store.jobstore import Store, StoreError

    # From here on a closed stdout or stderr (`| head -2`) drops output, never the run.
    keep_running_when_unread()
    from flowbatch.lang.aws_limits import AwsTarget

    compute_overrides = _split_overrides(overrides)
    if server is not None and compute_overrides:
        raise click.UsageError("--compute and --server: the server's queues decide where jobs run")
    # The jobs that `--compute` (or --server) sends to AWS Batch's API are held to its
    # limits, before anything is submitted; a server needs no image.
    aws = (
        AwsTarget(every_job=True, images=False)
        if server is not None
        else AwsTarget(overrides=compute_overrides)
    )
    plan = load_plan(ctx, file, params, computes=compute_files, aws=aws)
    if server is not None:
        from flowbatch.cli.remote import Remote, server_plan

        plan = server_plan(plan, Remote(server, state_dir))
    # Before the store is touched: a run that cannot start must not become "latest".
    if errors := override_errors(plan.computes, compute_overrides):
        for error in errors[:-1]:
            report_error(error)
        fail(errors[-1])
    state = resolve_state_dir(state_dir)
    # A StoreError here (e.g. another process holds the database locked) is the CLI's
    # handler's to print: nothing has been recorded yet.
    store = (
        Store.open(state, page_cache_kib=_PAGE_CACHE_KIB)
        if busy_timeout is None  # hidden: tests shorten the wait for a locked database
        else Store.open(state, busy_timeout=busy_timeout, page_cache_kib=_PAGE_CACHE_KIB)
    )
    try:
        prune(store, state, keep_days)
        # Without --resume nothing is reused: no decision (a record per job, kept for
        # the whole run) is made.
        reuse: dict[str, bytes | None] = {}
        reuse_reason = ""
        resumed = ""
        if resume:
            from flowbatch.cli.planning import resume_decision

            decision = resume_decision(store, plan, resume=True)
            if decision.previous_run is not None:
                from flowbatch.cli.control import refuse_strays

                refuse_strays(ctx, store, decision.previous_run)
            reuse, reuse_reason = decision.reuse(), decision.reason
            done = decision.summary()["processesReused"]
            resumed = f"resume from run {decision.previous_run or 'none'}: {done} processes reused"
            del decision
        run_id = new_run_id()
        job_ids = new_job_ids(plan)
        # Recorded absolute: `report` and `graph --run` find the file from anywhere.
        recorded = dataclasses.replace(plan.pipeline, path=storable(os.path.abspath(plan.path)))
        store.begin_run(run_id, recorded, job_ids, created_at=time.time())
        reporter = _reporter(plan)
        click.echo(f"run {run_id}: {len(plan)} jobs, {plan.process_count()} processes", err=True)
        if notice := local_limits_notice(plan):
            click.echo(f"note: {notice}", err=True)
        if resumed:
            click.echo(resumed, err=True)
        startup_over()
        try:
            result = anyio.run(
                functools.partial(
                    run_plan,
                    plan,
                    RunOptions(
                        run_id=run_id,
                        job_ids=job_ids,
                        state_dir=state,
                        compute_overrides=compute_overrides,
                        max_vcpus=max_vcpus,
                        handle_signals=True,
                        reuse=reuse,
                        reuse_reason=reuse_reason,
                        host_timeout=host_timeout,
                    ),
                    sinks=[store, reporter],
                    control=lambda: store.take_requests(run_id),
                    fingerprint=Fingerprints(plan).of,
                    executors=functools.partial(make_executor, grace=stop_grace),
                )
            )
        except SetupError as err:  # the run cannot start here (an unset env_from_host)
            store.end_run(run_id, RunStatus.FAILED, ended_at=time.time())
            fail(err)
        except KeyboardInterrupt:  # before the runner's signal handling was in place
            store.end_run(run_id, RunStatus.INTERRUPTED, ended_at=time.time())
            ctx.exit(EXIT_INTERRUPTED)
        except Exception:
            # A bug: the CLI reports it as one. The run it left is recorded as failed,
            # not left RUNNING for the next command to judge lost.
            with contextlib.suppress(Exception):
                store.end_run(run_id, RunStatus.FAILED, ended_at=time.time(), reason=_BUG_REASON)
            raise
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
                store.end_run(run_id, RunStatus.FAILED, ended_at=time.time(), reason=reason)
        except StoreError as err:
            # Nothing more can be recorded: say so once, without a traceback. The run's
            # record is settled as lost by the next command that can write it.
            fail(CommandError(f"run {run_id} could not be recorded: {err}", 1))
        status = RunStatus.FAILED if result.error else result.status
        try:  # what was recorded can be read back, a full disk or not
            write_reports(store, plan, run_id, status, junit=junit)
        except StoreError as err:
            click.echo(visible(f"warning: no reports: {err}"), err=True)
        hints = _log_hints(store, run_id, state_dir) if result.failed else []
    finally:
        store.close()
    # Its executors closed (their jobs and the reaper ended), its reports written, its
    # store closed: what is left is messages.
    end_cleanly()
    if result.error is not None:
        fail(CommandError(f"run {run_id} stopped: {result.error}", 1))
    if result.stalled:
        click.echo(
            "left RUNNABLE (their queue is disabled; AWS would keep them waiting): "
            + visible(", ".join(result.stalled)),
            err=True,
        )
    if result.status is RunStatus.INTERRUPTED:
        click.echo(f"run {run_id} interrupted ({result.signal})", err=True)
    elif result.failed or result.stalled:
        failed = visible(", ".join(result.failed or result.stalled))
        click.echo(f"run {run_id} failed: {failed}", err=True)
        for hint in hints:
            click.echo(hint, err=True)
    else:
        click.echo(f"run {run_id} succeeded", err=True)
    ctx.exit(result.exit_code)


_MAX_LOG_HINTS = 3


def _log_hints(store: Store, run_id: str, state_dir: Path | None) -> list[str]:
    """How to see why the run failed: `flowbatch logs` of the first jobs (or array
    children) that failed after running, and how to list every failed job."""
    import shlex

    where = "" if state_dir is None else f" --state-dir {shlex.quote(str(state_dir))}"
    commands: list[str] = []
    for job in store.job_records(run_id=run_id, status=JobState.FAILED):
        if len(commands) == _MAX_LOG_HINTS:
            break
        ran = job
        if job.array_size is not None:
            failed = store.job_records(parent=job.job_id, status=JobState.FAILED)
            ran = next((c for c in failed if c.attempts), job)
        if ran.attempts:  # a job failed by its dependency never ran: no logs
            commands.append(f"  flowbatch logs {ran.job_id} --stderr{where}")
    lines = ["see why:", *commands] if commands else []
    lines.append(f"every failed job: flowbatch jobs --run {run_id} --status FAILED{where}")
    return lines


def _reporter(plan: Plan) -> _Progress:
    # Imported here, as the other commands' modules are, so `flowbatch --help` stays quick.
    from flowbatch.outputs.progress import Reporter, color_wanted

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


COMMANDS: list[click.Command] = [run_command]
