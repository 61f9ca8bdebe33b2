"""CLI commands: jobs, describe, logs, runs — looking at what ran, from the job store.

They need no pipeline file: they read `<state dir>/jobs.db` (`--state-dir`, else
$FLOWBATCH_STATE_DIR, else `.flowbatch` here: see cli.common) and work while a run is
writing to it. Data goes to stdout (tables, JSON with sorted keys, log text); errors go
to stderr with exit code 2, and an unknown job id comes with the nearest known one.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, TypeVar

import click

from flowbatch.cli.common import STORED_TEXT, open_existing_store, resolve_job_id, state_dir_option
from flowbatch.cli.common import state_dir as resolve_state_dir
from flowbatch.cli.github import json_text, on_github, workflow_command
from flowbatch.cli.remote import server_option
from flowbatch.cli.reporting import CommandError, fail
from flowbatch.executors import logfiles
from flowbatch.outputs.jobview import clip, visible
from flowbatch.run.records import (
    AttemptRecord,
    JobRecord,
    RunRecord,
    RunStatus,
    run_json,
    summary_json,
)
from flowbatch.run.state import JobState
from flowbatch.store.jobstore import RUNNER_LOST, Store, StoreError

F = TypeVar("F", bound=Callable[..., Any])

_FOLLOW_POLL_SECONDS = 0.2
_REASON_WIDTH = 60


def _fail(message: str) -> NoReturn:
    fail(CommandError(message))


@contextmanager
def _opened(state_dir: Path | None) -> Iterator[Store]:
    """The store, closed after; its StoreErrors go to the CLI's one handler."""
    store = open_existing_store(state_dir)
    try:
        yield store
    finally:
        store.close()


# -- formatting -------------------------------------------------------------------------
def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


def duration(start_ms: int | None, stop_ms: int | None, now: float | None = None) -> str:
    """`1h02m`, `3m05s`, `42s`; from start to stop, or to now while still going."""
    start = _seconds(start_ms)
    if start is None:
        return "-"
    stop = _seconds(stop_ms)
    end = stop if stop is not None else (time.time() if now is None else now)
    total = max(int(end - start), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded.
    A control character in a cell (a reason, a name, a path) is written out."""
    header = [visible(cell) for cell in header]
    rows = [[visible(cell) for cell in row] for row in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def _status(job: JobRecord) -> str:
    if job.status_summary is None:
        return job.status.value
    succeeded = job.status_summary.get(JobState.SUCCEEDED, 0)
    return f"{job.status.value} ({succeeded}/{job.array_size} succeeded)"


def _counts(run: RunRecord) -> str:
    counts = run_json(run)["counts"]  # by state name, as `runs --json` orders them
    return ", ".join(f"{n} {state.lower()}" for state, n in counts.items()) or "-"


def _print_json(value: object) -> None:
    click.echo(json_text(value))


# -- commands ----------------------------------------------------------------------------
@click.command()
@click.option("--run", "run_id", metavar="RUN_ID", help="A run (default: the latest).")
@click.option("--queue", type=STORED_TEXT, help="Only jobs of this job queue.")
@click.option(
    "--status",
    type=click.Choice([state.value for state in JobState], case_sensitive=False),
    help="Only jobs in this state.",
)
@click.option("--name", type=STORED_TEXT, help="Only jobs of this name.")
@click.option("--children", metavar="ARRAY_JOB_ID", help="List the children of an array job.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@state_dir_option
@server_option
def jobs(
    run_id: str | None,
    queue: str | None,
    status: str | None,
    name: str | None,
    children: str | None,
    as_json: bool,
    state_dir: Path | None,
    server: str | None,
) -> None:
    """List jobs: of the latest run, or of --run, or the children of an array job.

    With --server: the server's jobs, of every queue or of --queue, or the children of
    an array job."""
    if server:
        from flowbatch.cli import remote

        if run_id is not None:
            _fail("--run names a local run: a server's jobs are listed by --queue")
        remote.jobs_command(
            remote.Remote(server, state_dir),
            queue=queue,
            status=status,
            children=children,
            name=name,
            as_json=as_json,
        )
        return
    parent: JobRecord | None = None
    with _opened(state_dir) as store:
        if children is not None:
            children = resolve_job_id(store, children)
            parent = store.job(children)
            if parent.array_size is None:
                _fail(f"job `{children}` ({parent.name}) is not an array job")
        elif run_id is None:
            run_id = store.latest_run()
            if run_id is None:
                _fail(f"no runs recorded in `{store.path}`")
        elif not any(run.run_id == run_id for run in store.run_records()):
            _fail(f"no run `{run_id}` in `{store.path}`")
        found = store.job_records(
            run_id=run_id, queue=queue, status=status, name=name, parent=children
        )
    if as_json:
        _print_json({"jobSummaryList": [summary_json(job) for job in found]})
        return
    rows = [
        [
            job.job_id,
            job.label,
            _status(job),
            str(job.attempts),
            "-" if job.exit_code is None else str(job.exit_code),
            duration(job.started_at, job.stopped_at),
            clip(job.status_reason or "", _REASON_WIDTH),
        ]
        for job in found
    ]
    header = ["JOB ID", "NAME", "STATUS", "ATTEMPTS", "EXIT", "DURATION", "REASON"]
    click.echo(table(header, rows))
    if parent is not None and not (queue or status or name):
        # Children exist in the store once the runner releases them; on AWS all exist from
        # submission, so say how many are still to come rather than hide them.
        unlisted = (parent.array_size or 0) - len(found)
        if unlisted > 0:
            click.echo(
                f"... and {unlisted} more not started yet "
                f"(`flowbatch describe {children}:INDEX` shows any of them)"
            )


@click.command()
@click.argument("job_ids", nargs=-1, required=True)
@state_dir_option
@server_option
def describe(job_ids: tuple[str, ...], state_dir: Path | None, server: str | None) -> None:
    """Print jobs as AWS DescribeJobs does: {"jobs": [...]}, as JSON.

    A job is its id, a unique start of it, or the NAME of a job of the latest run;
    ID:INDEX or NAME:INDEX for a child of an array job. With --server: job ids."""
    if server:
        from flowbatch.cli import remote

        remote.describe_command(remote.Remote(server, state_dir), job_ids)
        return
    with _opened(state_dir) as store:
        described = [store.describe(resolve_job_id(store, job_id)) for job_id in job_ids]
    _print_json({"jobs": described})


@click.command()
@click.argument("job_id")
@click.option("--attempt", type=click.IntRange(min=1), help="Which attempt (default: latest).")
@click.option("--stderr", "which", flag_value="stderr", help="Show stderr instead of stdout.")
@click.option("--stdout", "which", flag_value="stdout", default=True, hidden=True)
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the job is done.")
@state_dir_option
@server_option
def logs(
    job_id: str,
    attempt: int | None,
    which: str,
    follow: bool,
    state_dir: Path | None,
    server: str | None,
) -> None:
    """Print the output of one attempt of a job (or array child).

    JOB_ID as for `describe`: an id, a unique start of one, or NAME[:INDEX] in the
    latest run. A job reused by `run --resume` shows the attempt that made what it
    reused, however many resumed runs ago. With --server: the attempt's log stream,
    stdout and stderr together, as CloudWatch Logs holds it."""
    if server:
        from flowbatch.cli import remote

        if which == "stderr":
            _fail("--stderr: a server's log stream holds stdout and stderr together")
        with _commands_stopped():
            remote.logs_command(remote.Remote(server, state_dir), job_id, attempt, follow)
        return
    with _opened(state_dir) as store:
        where = resolve_state_dir(state_dir)
        job_id = resolve_job_id(store, job_id)
        job = store.job(job_id)
        if job.array_size is not None:
            size = job.array_size
            _fail(
                f"job `{job_id}` ({job.name}) is an array job; its logs are its "
                f"children's: `{job_id}:0` to `{job_id}:{size - 1}`"
            )
        origin = _attempt_that_ran(store, job)
        if origin is not job:
            click.echo(
                f"note: job `{job_id}` ({job.label}) was reused by `run --resume`; this "
                f"is the output of job `{origin.job_id}` of run {origin.run_id}, "
                "which made it",
                err=True,
            )
            job, job_id = origin, origin.job_id
        tried = len(_attempts(job))
        if attempt is not None and attempt > tried:
            _fail(f"job `{job_id}` has {tried} attempt(s); there is no attempt {attempt}")
        if tried == 0 and job.status.done:
            # e.g. a child cancelled, or failed with its array, before it was released
            _fail(
                f"job `{job_id}` ({job.label}) never ran: it {job.status.value}"
                + (f": {job.status_reason}" if job.status_reason else "")
            )
        if tried == 0 and not follow:
            _fail(f"job `{job_id}` ({job.label}) has not started yet: it is {job.status.value}")
        number = attempt or max(tried, 1)
        path = _log_file(where, job, number, which)
        if not follow:
            try:
                log = path.open("rb")
            except FileNotFoundError:
                _fail(f"no {which} log for attempt {number} of `{job_id}` at `{path}`")
            with log, _commands_stopped():
                _copy(log)
            return
        with _commands_stopped():
            _follow(store, job_id, number, lambda: _log_file(where, job, number, which))


@contextmanager
def _commands_stopped() -> Iterator[None]:
    """Under GitHub Actions, a job's output is a process's, not flowbatch's: a line of it
    must not act as a workflow command. GitHub's way: `::stop-commands::TOKEN` before,
    `::TOKEN::` after, on the same stream (stdout), with a token no output can guess."""
    if not on_github():
        yield
        return
    import secrets

    token = secrets.token_hex(16)
    workflow_command(f"::stop-commands::{token}", err=False)
    _last_byte[0] = b"\n"
    try:
        yield
    finally:
        if _last_byte[0] != b"\n":
            sys.stdout.buffer.write(b"\n")  # the resuming command must start a line
            sys.stdout.buffer.flush()
        workflow_command(f"::{token}::", err=False)


_last_byte = [b"\n"]


# `Reused from run <id> (unchanged)`: resume.Decision.reason, the reason of a reused job.
_REUSED = re.compile(r"Reused from run (\S+) ")


def _attempts(job: JobRecord) -> tuple[AttemptRecord, ...]:
    return () if job.detail is None else job.detail.attempts


def _attempt_that_ran(store: Store, job: JobRecord) -> JobRecord:
    """`job` itself, or for a job (or child) reused by `run --resume` without running,
    the same job in the run it was reused from, followed through runs that were
    themselves reuses to the one that ran it. StoreError when that run is gone."""
    seen: set[str] = set()
    while not _attempts(job) and job.status is JobState.SUCCEEDED:
        found = _REUSED.match(job.status_reason or "")
        if found is None or found[1] in seen:
            return job
        run_id = found[1]
        seen.add(run_id)
        index = job.array_index
        same = store.job_records(run_id=run_id, name=job.name)
        if not same:
            raise StoreError(
                f"job `{job.job_id}` ({job.label}) was reused from run {run_id}, which is "
                "no longer in the store (forgotten after --keep-days): its logs are gone"
            )
        origin_id = same[0].job_id + ("" if index is None else f":{index}")
        job = store.job(origin_id)
    return job


_CHUNK = 1 << 20


def _copy(source: BinaryIO) -> None:
    """`source` to stdout a chunk at a time: a log can be far larger than memory."""
    if sys.stdout is None:  # started with stdout closed (`>&-`): nothing to show it on
        return
    out = sys.stdout.buffer
    while chunk := source.read(_CHUNK):
        out.write(chunk)
        _last_byte[0] = chunk[-1:]
    out.flush()


def _log_file(state_dir: Path, job: JobRecord, number: int, which: str) -> Path:
    """The attempt's log, where the store recorded it or where the runner puts it."""
    recorded = None
    attempts = _attempts(job)
    if 0 < number <= len(attempts):
        recorded = attempts[number - 1].log_path
    if recorded:
        return logfiles.recorded_file(recorded, which, base=state_dir.parent)
    run_dir = state_dir / "logs" / job.run_id
    return logfiles.beside(logfiles.stem(run_dir, job.name, job.array_index, number), which)


def _follow(store: Store, job_id: str, number: int, where: Callable[[], Path]) -> None:
    """Print the log as it grows until the attempt has ended (the job is done or has
    moved on to a later attempt, or its runner is gone); then print what is left and
    return."""
    offset = 0
    while True:
        gone = _runner_gone(store, job_id)
        job = store.job(job_id)
        ended = gone or job.status.done or len(_attempts(job)) > number
        path = where()
        if path.exists():
            with path.open("rb") as f:
                f.seek(offset)
                _copy(f)
                offset = f.tell()
        if ended:
            reason = job.status_reason or ""
            if job.status is JobState.FAILED and reason.startswith(RUNNER_LOST):
                click.echo(visible(f"job `{job_id}`: {reason}"), err=True)
            return
        time.sleep(_FOLLOW_POLL_SECONDS)


def _runner_gone(store: Store, job_id: str) -> bool:
    """Whether the run of `job_id` has lost its runner. Where the store can be written
    the run is settled (its jobs read FAILED, see `Store.settle_lost_runs`); a
    read-only store only tells."""
    if not store.read_only:
        with contextlib.suppress(StoreError):  # locked for a moment: look again later
            store.settle_lost_runs()
        return False
    run = store.run_of(store.job(job_id).run_id)
    return run is not None and run.status is RunStatus.INCOMPLETE


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@state_dir_option
def runs(as_json: bool, state_dir: Path | None) -> None:
    """List runs, newest first, with their jobs counted by state."""
    with _opened(state_dir) as store:
        found = store.run_records()
    if as_json:
        _print_json({"runs": [run_json(run) for run in found]})
        return
    rows = [
        [
            run.run_id,
            _shown_path(run.pipeline),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((run.created_at or 0) / 1000)),
            # a run whose writer died has no end: its duration is unknown
            duration(run.created_at, run.ended_at)
            if run.ended_at is not None or run.status is RunStatus.RUNNING
            else "-",
            run.status.value,
            _counts(run),
        ]
        for run in found
    ]
    header = ["RUN ID", "PIPELINE", "STARTED", "DURATION", "STATUS", "JOBS"]
    click.echo(table(header, rows))


def _shown_path(path: str) -> str:
    """A recorded (absolute) pipeline path as short as it is unambiguous from here."""
    if not os.path.isabs(path):
        return path
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith(os.pardir) else relative


COMMANDS: list[click.Command] = [jobs, describe, logs, runs]
