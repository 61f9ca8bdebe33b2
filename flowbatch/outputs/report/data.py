"""What a run report shows, as plain data: one row per top-level job (an array collapsed
to per-state counts and its failed children, capped), every attempt on every compute
slot for the timeline, and the failed jobs' log tails.

`collect` builds it from the records `Store.job_records`, `Store.job` and
`Store.run_records` return, through callbacks the CLI passes in, so this module never
reads the database; it reads only the log files the records point at (their last lines).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from flowbatch.executors import logfiles
from flowbatch.outputs.jobview import tail_of
from flowbatch.outputs.junit import ChildrenOf
from flowbatch.run.records import JobDetail, JobRecord, RunRecord, RunStatus
from flowbatch.run.state import JobState

__all__ = [
    "AttemptBar",
    "FailedJob",
    "JobRow",
    "RunReport",
    "collect",
]

LISTED_CHILDREN: Final = 50  # failed children of one array listed in the report
TAILED_CHILDREN: Final = 5  # of those, how many carry their log tail
TAIL_LINES: Final = 30

Describe = Callable[[str], JobRecord]
"""job id -> the job with its detail (`Store.job`)."""


@dataclass(frozen=True, slots=True)
class AttemptBar:
    """One attempt of one job or child on one host, for the timeline. Times are epoch
    seconds; `stop` is None for an attempt the run left unfinished. `state` is the
    attempt's outcome: SUCCEEDED, FAILED, RETRIED (failed, and another attempt
    followed) or RUNNING (no stop recorded)."""

    label: str
    name: str
    attempt: int
    compute: str
    host: str
    start: float
    stop: float | None
    state: str
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class FailedJob:
    """A failed job or array child: what the failure table and log section show."""

    label: str
    exit_code: int | None
    reason: str
    attempts: int
    never_ran: bool
    log_tail: str | None = None  # None when not read (never ran, or past the cap)


@dataclass(frozen=True, slots=True)
class JobRow:
    """One top-level job of the run: a single job, or an array collapsed to counts."""

    name: str
    status: JobState
    attempts: int
    duration: float | None  # seconds, first start to last stop
    exit_code: int | None
    reason: str
    peak_memory: int | None  # MiB, the largest any attempt reported
    compute: str
    size: int | None = None  # array size, None for a single job
    counts: Mapping[JobState, int] = field(default_factory=dict)
    failed_children: tuple[FailedJob, ...] = ()
    failed_total: int = 0  # failed children in all, of which the first are listed
    failure: FailedJob | None = None  # a failed single job


@dataclass(frozen=True, slots=True)
class RunReport:
    """Everything one report shows; `graph_svg` is None when the graph could not be
    drawn, and `graph_note` then says why."""

    run_id: str
    pipeline: str
    status: RunStatus
    created_at: float | None
    ended_at: float | None
    jobs: tuple[JobRow, ...]
    attempts: tuple[AttemptBar, ...]
    graph_svg: str | None = None
    graph_note: str = ""
    missing: tuple[str, ...] = ()


def collect(
    run: RunRecord,
    jobs: Sequence[JobRecord],
    *,
    children: ChildrenOf,
    describe: Describe,
    log_root: Path | None = None,
    graph_svg: str | None = None,
    graph_note: str = "",
) -> RunReport:
    """The report of `run` whose top-level jobs are `jobs`; `children(array_id, None)`
    lists an array's children and `describe(job_id)` gives one job with its attempts.
    Relative log paths are read from under `log_root`."""
    rows: list[JobRow] = []
    bars: list[AttemptBar] = []
    for job in jobs:
        if job.array_size is not None:
            row, _ = _array_row(job, children, describe, log_root, bars)
        else:
            row, _ = _single_row(job, describe, log_root, bars)
        rows.append(row)
    missing = []
    # A job that never ran has no peak to measure: only jobs that ran count.
    if any(row.peak_memory is None and row.attempts > 0 for row in rows):
        missing.append(
            "peak memory shown as — was not measured: local jobs are measured where "
            "flowbatch can give each job a cgroup (as root or in a delegated cgroup), "
            "elsewhere only jobs larger than flowbatch itself; the ssh and slurm "
            "executors do not measure it"
        )
    return RunReport(
        run_id=run.run_id,
        pipeline=run.pipeline,
        status=run.status,
        created_at=_seconds(run.created_at),
        ended_at=_seconds(run.ended_at),
        jobs=tuple(rows),
        attempts=tuple(bars),
        graph_svg=graph_svg,
        graph_note=graph_note,
        missing=tuple(missing),
    )


def _single_row(
    job: JobRecord,
    describe: Describe,
    log_root: Path | None,
    bars: list[AttemptBar],
) -> tuple[JobRow, bool]:
    detail = describe(job.job_id).detail if job.attempts > 0 else None
    attempts = _bars(job, detail)
    bars.extend(attempts)
    peak, seen = _peak(detail)
    failed = job.status is JobState.FAILED
    failure = _failure(job, detail, log_root, tail=True) if failed else None
    row = JobRow(
        name=job.name,
        status=job.status,
        attempts=job.attempts,
        duration=_duration(job.started_at, job.stopped_at),
        exit_code=job.exit_code,
        reason=job.status_reason or "",
        peak_memory=peak,
        compute=(detail.compute if detail else None) or "",
        failure=failure,
    )
    return row, seen


def _array_row(
    job: JobRecord,
    children: ChildrenOf,
    describe: Describe,
    log_root: Path | None,
    bars: list[AttemptBar],
) -> tuple[JobRow, bool]:
    kids = children(job.job_id, None)
    total_attempts = 0
    first: int | None = None
    last: int | None = None
    peak: int | None = None
    seen = False
    computes: set[str] = set()
    failed: list[FailedJob] = []
    failed_total = 0
    for kid in kids:
        n = kid.attempts
        total_attempts += n
        first = _least(first, kid.started_at)
        last = _most(last, kid.stopped_at)
        detail = describe(kid.job_id).detail if n > 0 else None
        bars.extend(_bars(kid, detail))
        kid_peak, kid_seen = _peak(detail)
        seen = seen or kid_seen
        if kid_peak is not None:
            peak = max(peak or 0, kid_peak)
        if detail is not None and detail.compute:
            computes.add(detail.compute)
        if kid.status is JobState.FAILED:
            failed_total += 1
            if len(failed) < LISTED_CHILDREN:
                tail = len(failed) < TAILED_CHILDREN
                failed.append(_failure(kid, detail, log_root, tail=tail))
    row = JobRow(
        name=job.name,
        status=job.status,
        attempts=total_attempts,
        duration=_duration(first, last),
        exit_code=None,
        reason=job.status_reason or "",
        peak_memory=peak,
        compute=", ".join(sorted(computes)),
        size=job.array_size,
        counts=job.status_summary or {},
        failed_children=tuple(failed),
        failed_total=failed_total,
    )
    return row, seen


def _bars(job: JobRecord, detail: JobDetail | None) -> list[AttemptBar]:
    attempts = () if detail is None else detail.attempts
    out = []
    for number, a in enumerate(attempts, 1):
        start = _seconds(a.started_at)
        if start is None:
            continue  # placed but never started: nothing ran on a slot
        stop = _seconds(a.stopped_at)
        code = a.exit_code
        if stop is None:
            state = "RUNNING"
        elif code == 0:
            state = "SUCCEEDED"
        elif number < len(attempts):
            state = "RETRIED"
        else:
            state = "FAILED"
        out.append(
            AttemptBar(
                label=job.label,
                name=job.name,
                attempt=number,
                compute=a.compute or (detail.compute if detail else None) or "",
                host=a.host or "",
                start=start,
                stop=stop,
                state=state,
                exit_code=code,
            )
        )
    return out


def _peak(detail: JobDetail | None) -> tuple[int | None, bool]:
    """The largest peak memory any attempt reported, and whether any reported one."""
    attempts = () if detail is None else detail.attempts
    found = [a.peak_memory for a in attempts if a.peak_memory is not None]
    return (max(found) if found else None), bool(found)


def _failure(
    job: JobRecord, detail: JobDetail | None, log_root: Path | None, *, tail: bool
) -> FailedJob:
    ran = not job.never_ran and job.attempts > 0
    log_path = None if detail is None else detail.log_path
    text = _log_tail(log_path, log_root) if tail and ran and log_path else None
    return FailedJob(
        label=job.label,
        exit_code=job.exit_code,
        reason=job.status_reason or "",
        attempts=job.attempts,
        never_ran=not ran,
        log_tail=text,
    )


def _log_tail(log_path: str, log_root: Path | None) -> str:
    """The last lines of stderr, then stdout, of one attempt's logs (its recorded
    `log_path`, see `executors.logfiles`)."""
    parts = []
    for stream in ("stderr", "stdout"):
        text = tail_of(logfiles.recorded_file(log_path, stream, base=log_root), TAIL_LINES)
        if text:
            parts.append(f"--- {stream} (last {TAIL_LINES} lines) ---\n{text}")
    return "\n".join(parts)


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


def _duration(start_ms: int | None, stop_ms: int | None) -> float | None:
    start, stop = _seconds(start_ms), _seconds(stop_ms)
    if start is None or stop is None:
        return None
    return max(stop - start, 0.0)


def _least(current: int | None, value: int | None) -> int | None:
    if value is None:
        return current
    return value if current is None else min(current, value)


def _most(current: int | None, value: int | None) -> int | None:
    if value is None:
        return current
    return value if current is None else max(current, value)
