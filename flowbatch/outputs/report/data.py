"""What a run report shows, as plain data: one row per top-level job (an array collapsed
to per-state counts and its failed children, capped), every attempt on every compute
slot for the timeline, and the failed jobs' log tails.

`collect` builds it from the shapes `Store.jobs`, `Store.describe` and `Store.runs`
return, through callbacks the CLI passes in, so this module never reads the database;
it reads only the log files the records point at (their last lines).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from flowbatch.outputs.jobview import exit_code, label, never_ran, tail_of
from flowbatch.outputs.junit import ChildrenOf

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
PEAK_MEMORY_KEY: Final = "peakMemory"  # MiB, in attempts[].container (or attempts[])

Describe = Callable[[str], Mapping[str, Any]]


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
    status: str
    attempts: int
    duration: float | None  # seconds, first start to last stop
    exit_code: int | None
    reason: str
    peak_memory: int | None  # MiB, the largest any attempt reported
    compute: str
    size: int | None = None  # array size, None for a single job
    counts: Mapping[str, int] = field(default_factory=dict)
    failed_children: tuple[FailedJob, ...] = ()
    failed_total: int = 0  # failed children in all, of which the first are listed
    failure: FailedJob | None = None  # a failed single job


@dataclass(frozen=True, slots=True)
class RunReport:
    """Everything one report shows; `graph_svg` is None when the graph could not be
    drawn, and `graph_note` then says why."""

    run_id: str
    pipeline: str
    status: str
    created_at: float | None
    ended_at: float | None
    jobs: tuple[JobRow, ...]
    attempts: tuple[AttemptBar, ...]
    graph_svg: str | None = None
    graph_note: str = ""
    missing: tuple[str, ...] = ()


def collect(
    run: Mapping[str, Any],
    jobs: Sequence[Mapping[str, Any]],
    *,
    children: ChildrenOf,
    describe: Describe,
    log_root: Path | None = None,
    graph_svg: str | None = None,
    graph_note: str = "",
) -> RunReport:
    """The report of `run` (an entry of `Store.runs`) whose top-level job summaries are
    `jobs`; `children(array_id, None)` lists an array's children and `describe(job_id)`
    gives one job's attempts. Relative log paths are read from under `log_root`."""
    rows: list[JobRow] = []
    bars: list[AttemptBar] = []
    for job in jobs:
        if (job.get("arrayProperties") or {}).get("size") is not None:
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
        run_id=str(run["runId"]),
        pipeline=str(run.get("pipeline") or ""),
        status=str(run.get("status") or ""),
        created_at=_seconds(run.get("createdAt")),
        ended_at=_seconds(run.get("endedAt")),
        jobs=tuple(rows),
        attempts=tuple(bars),
        graph_svg=graph_svg,
        graph_note=graph_note,
        missing=tuple(missing),
    )


def _single_row(
    job: Mapping[str, Any],
    describe: Describe,
    log_root: Path | None,
    bars: list[AttemptBar],
) -> tuple[JobRow, bool]:
    detail = describe(str(job["jobId"])) if int(job.get("attempts") or 0) > 0 else {}
    attempts = _bars(job, detail)
    bars.extend(attempts)
    peak, seen = _peak(detail)
    failure = _failure(job, detail, log_root, tail=True) if job.get("status") == "FAILED" else None
    row = JobRow(
        name=str(job["jobName"]),
        status=str(job.get("status") or ""),
        attempts=int(job.get("attempts") or 0),
        duration=_duration(job.get("startedAt"), job.get("stoppedAt")),
        exit_code=exit_code(job),
        reason=str(job.get("statusReason") or ""),
        peak_memory=peak,
        compute=str(detail.get("computeEnvironment") or ""),
        failure=failure,
    )
    return row, seen


def _array_row(
    job: Mapping[str, Any],
    children: ChildrenOf,
    describe: Describe,
    log_root: Path | None,
    bars: list[AttemptBar],
) -> tuple[JobRow, bool]:
    props = job.get("arrayProperties") or {}
    kids = children(str(job["jobId"]), None)
    total_attempts = 0
    first: int | None = None
    last: int | None = None
    peak: int | None = None
    seen = False
    computes: set[str] = set()
    failed: list[FailedJob] = []
    failed_total = 0
    for kid in kids:
        n = int(kid.get("attempts") or 0)
        total_attempts += n
        first = _least(first, kid.get("startedAt"))
        last = _most(last, kid.get("stoppedAt"))
        detail = describe(str(kid["jobId"])) if n > 0 else {}
        bars.extend(_bars(kid, detail))
        kid_peak, kid_seen = _peak(detail)
        seen = seen or kid_seen
        if kid_peak is not None:
            peak = max(peak or 0, kid_peak)
        if detail.get("computeEnvironment"):
            computes.add(str(detail["computeEnvironment"]))
        if kid.get("status") == "FAILED":
            failed_total += 1
            if len(failed) < LISTED_CHILDREN:
                tail = len(failed) < TAILED_CHILDREN
                failed.append(_failure(kid, detail, log_root, tail=tail))
    row = JobRow(
        name=str(job["jobName"]),
        status=str(job.get("status") or ""),
        attempts=total_attempts,
        duration=_duration(first, last),
        exit_code=None,
        reason=str(job.get("statusReason") or ""),
        peak_memory=peak,
        compute=", ".join(sorted(computes)),
        size=int(props["size"]),
        counts={str(k): int(v) for k, v in (props.get("statusSummary") or {}).items()},
        failed_children=tuple(failed),
        failed_total=failed_total,
    )
    return row, seen


def _bars(job: Mapping[str, Any], detail: Mapping[str, Any]) -> list[AttemptBar]:
    attempts = detail.get("attempts") or []
    out = []
    for number, a in enumerate(attempts, 1):
        start = _seconds(a.get("startedAt"))
        if start is None:
            continue  # placed but never started: nothing ran on a slot
        stop = _seconds(a.get("stoppedAt"))
        code = (a.get("container") or {}).get("exitCode")
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
                label=label(job),
                name=str(job["jobName"]),
                attempt=number,
                compute=str(a.get("computeEnvironment") or detail.get("computeEnvironment") or ""),
                host=str(a.get("host") or ""),
                start=start,
                stop=stop,
                state=state,
                exit_code=None if code is None else int(code),
            )
        )
    return out


def _peak(detail: Mapping[str, Any]) -> tuple[int | None, bool]:
    """The largest peak memory any attempt reported, and whether any reported one."""
    found: list[int] = []
    for a in detail.get("attempts") or []:
        value = (a.get("container") or {}).get(PEAK_MEMORY_KEY, a.get(PEAK_MEMORY_KEY))
        if value is not None:
            found.append(int(value))
    return (max(found) if found else None), bool(found)


def _failure(
    job: Mapping[str, Any], detail: Mapping[str, Any], log_root: Path | None, *, tail: bool
) -> FailedJob:
    ran = not never_ran(job) and int(job.get("attempts") or 0) > 0
    log_dir = (detail.get("container") or {}).get("logStreamName")
    text = _log_tail(log_dir, log_root) if tail and ran and log_dir else None
    return FailedJob(
        label=label(job),
        exit_code=exit_code(job),
        reason=str(job.get("statusReason") or ""),
        attempts=int(job.get("attempts") or 0),
        never_ran=not ran,
        log_tail=text,
    )


def _log_tail(log_dir: str, log_root: Path | None) -> str:
    """The last lines of stderr, then stdout, of one attempt's log directory."""
    directory = Path(log_dir)
    if not directory.is_absolute() and log_root is not None and not directory.exists():
        directory = log_root / directory
    parts = []
    for stream in ("stderr", "stdout"):
        text = tail_of(directory / stream, TAIL_LINES)
        if text:
            parts.append(f"--- {stream} (last {TAIL_LINES} lines) ---\n{text}")
    return "\n".join(parts)


def _seconds(ms: Any) -> float | None:
    return None if ms is None else float(ms) / 1000


def _duration(start_ms: Any, stop_ms: Any) -> float | None:
    start, stop = _seconds(start_ms), _seconds(stop_ms)
    if start is None or stop is None:
        return None
    return max(stop - start, 0.0)


def _least(current: int | None, value: Any) -> int | None:
    if value is None:
        return current
    v = int(value)
    return v if current is None else min(current, v)


def _most(current: int | None, value: Any) -> int | None:
    if value is None:
        return current
    v = int(value)
    return v if current is None else max(current, v)
