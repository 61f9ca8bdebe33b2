"""Reading the job database back into records (`flowbatch.run.records`), holding what
AWS Batch's DescribeJobs and ListJobs show.

Times leave here as epoch milliseconds (AWS); a job with no recorded state yet reads
as SUBMITTED. Array children store only what changes, so their static facts (queue,
command, resources) are read from their parent. Counts of children per state come
from one GROUP BY, never from loading the children. A child the runner has not created
yet has no row but can still be described (`describe_child`), as on AWS.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from flowbatch.lang.template import Context, TemplateError, render_command
from flowbatch.run.records import AttemptRecord, JobDetail, JobRecord, RunRecord, RunStatus
from flowbatch.run.state import JobState

# An unended run's status by what `owner_state` says of its runner.
_UNENDED: Final = {"alive": RunStatus.RUNNING, "elsewhere": RunStatus.UNKNOWN}


_LOST: Final = "Runner lost"  # store.RUNNER_LOST
_CHUNK: Final = 500  # bound on `IN (...)` parameters per statement


class _Row(Protocol):
    """A jobs row: an sqlite3.Row, or a dict standing for a child not created yet."""

    def __getitem__(self, key: str, /) -> Any: ...


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def _cursor(conn: sqlite3.Connection) -> sqlite3.Cursor:
    cur = conn.cursor()
    cur.row_factory = sqlite3.Row
    return cur


def _status(row: _Row) -> JobState:
    status = row["status"]
    return JobState.SUBMITTED if status is None else JobState(status)


def _command(text: str | None) -> str | list[str] | None:
    # An argv job's command is stored as a JSON list; a shell command as its text.
    if text is not None and text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            return text
        if isinstance(value, list):
            return [str(v) for v in value]
    return text


def status_summary(
    conn: sqlite3.Connection, parent_id: str, size: int, parent_status: JobState
) -> dict[JobState, int]:
    """Children of `parent_id` per state. Children the runner has not created yet are
    counted as PENDING, or as FAILED once the parent failed (they never will run)."""
    counts = dict.fromkeys(JobState, 0)
    seen = 0
    for status, n in conn.execute(
        "SELECT COALESCE(status, 'SUBMITTED'), COUNT(*) FROM jobs"
        " WHERE parent_id = ? GROUP BY status",
        (parent_id,),
    ):
        counts[JobState(status)] += n
        seen += n
    failed = parent_status is JobState.FAILED
    missing = JobState.FAILED if failed else JobState.PENDING
    counts[missing] += max(size - seen, 0)
    return counts


def describe(conn: sqlite3.Connection, job_id: str) -> JobRecord | None:
    """One job as DescribeJobs describes it, or None if there is none."""
    cur = _cursor(conn)
    # The run's params come along: a command is shown rendered with them.
    row = cur.execute(
        "SELECT j.*, r.params AS run_params FROM jobs j"
        " LEFT JOIN runs r ON r.run_id = j.run_id WHERE j.job_id = ?",
        (job_id,),
    ).fetchone()
    if row is None:
        return None
    static = row
    if row["parent_id"] is not None:
        static = cur.execute("SELECT * FROM jobs WHERE job_id = ?", (row["parent_id"],)).fetchone()
    attempts = cur.execute(
        "SELECT * FROM attempts WHERE job_id = ? ORDER BY attempt", (job_id,)
    ).fetchall()
    return _job(conn, row, static, attempts)


def describe_child(conn: sqlite3.Connection, parent_id: str, index: int) -> JobRecord | None:
    """Child `index` of the array job `parent_id` as DescribeJobs shows it, whether the
    runner has created it or not (on AWS every child exists from submission); None if
    there is no such parent. The caller checks that `index` is within the array.

    A child not created yet reads as `status_summary` counts it: FAILED with its
    parent's reason once the parent failed (it never will run), PENDING otherwise."""
    job_id = f"{parent_id}:{index}"
    found = describe(conn, job_id)  # created since the caller looked, or already there
    if found is not None:
        return found
    parent = _cursor(conn).execute("SELECT * FROM jobs WHERE job_id = ?", (parent_id,)).fetchone()
    if parent is None:
        return None
    failed = _status(parent) is JobState.FAILED
    row = {
        "job_id": job_id,
        "name": parent["name"],
        "run_id": parent["run_id"],
        "parent_id": parent_id,
        "array_index": index,
        "array_size": None,
        "status": JobState.FAILED.value if failed else JobState.PENDING.value,
        "status_reason": parent["status_reason"] if failed else "",
        "created_at": parent["created_at"],  # submitted with its parent, as on AWS
        "started_at": None,
        "stopped_at": parent["stopped_at"] if failed else None,
        "attempt": 0,
        "compute": None,
        "exit_code": None,
        "log_path": None,
        "run_params": next(
            iter(conn.execute("SELECT params FROM runs WHERE run_id = ?", (parent["run_id"],))),
            [None],
        )[0],
    }
    return _job(conn, row, parent, [])


def _job(conn: sqlite3.Connection, row: _Row, static: _Row, attempts: Sequence[_Row]) -> JobRecord:
    status = _status(row)
    last = attempts[-1] if attempts else None
    stopped_by = _stopped_by(conn, row, status)
    summary = None
    updated_at = None
    if row["array_size"] is not None:
        summary = status_summary(conn, row["job_id"], row["array_size"], status)
        updated_at = _summary_updated_at(conn, row)
    detail = JobDetail(
        is_cancelled="cancel" in stopped_by,
        is_terminated="terminate" in stopped_by,
        compute=row["compute"],
        attempts=tuple(_attempt(a) for a in attempts),
        depends_on=tuple(_depends_on(row, static)),
        parameters=json.loads(static["parameters"] or "{}"),
        tags=json.loads(static["tags"] or "{}"),
        retry_attempts=static["retry_attempts"],
        command=command_as_run(row, static, len(attempts)),
        image=static["image"],
        vcpus=static["vcpus"],
        memory=static["memory"],
        gpus=static["gpus"],
        environment=json.loads(static["environment"] or "{}"),
        reason=None if last is None else last["reason"],
        log_path=row["log_path"],
        timeout=static["timeout"],
        summary_updated_at=updated_at,
    )
    return _record(
        row,
        status,
        queue=static["queue"],
        # the latest attempt's: a job being retried has no exit code yet
        exit_code=row["exit_code"] if last is None else last["exit_code"],
        status_summary=summary,
        detail=detail,
    )


def _record(
    row: _Row,
    status: JobState,
    *,
    queue: str | None,
    exit_code: int | None,
    status_summary: Mapping[JobState, int] | None,
    detail: JobDetail | None = None,
) -> JobRecord:
    """A job's record from its jobs row, as a description and a listing both show it."""
    return JobRecord(
        job_id=row["job_id"],
        name=row["name"],
        run_id=row["run_id"],
        status=status,
        status_reason=row["status_reason"],
        created_at=_ms(row["created_at"]),
        started_at=_ms(row["started_at"]),
        stopped_at=_ms(row["stopped_at"]),
        queue=queue,
        attempts=row["attempt"],
        exit_code=exit_code,
        array_size=row["array_size"],
        array_index=row["array_index"],
        status_summary=status_summary,
        detail=detail,
    )


def command_as_run(row: _Row, static: _Row, attempts: int) -> list[str] | None:
    """The command as AWS shows it, an argument list: what the job (or child) ran, or
    will run, rendered from what its run recorded (params, parameters, index, attempt);
    a shell command as `/bin/sh -c TEXT`. An array parent never runs itself: it shows
    the command as submitted, as its children's template."""
    template = _command(static["command"])
    if template is None:
        return None
    command: str | list[str] | tuple[str, ...] = template
    if row["array_size"] is None:
        params = _parsed(row["run_params"] or "{}")
        ctx = Context(
            params=params,
            job_name=str(row["name"]),
            job_id=str(row["job_id"]),
            attempt=max(attempts, 1),
            index=row["array_index"],
            size=static["array_size"],
        )
        parameters = _parsed(static["parameters"] or "{}")
        # A command that does not render never ran (its attempt failed): show the template.
        with contextlib.suppress(TemplateError):
            command = render_command(
                template if isinstance(template, str) else tuple(template), ctx, parameters
            )
    return ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)


@functools.lru_cache(maxsize=64)
def _parsed(text: str) -> Mapping[str, Any]:
    # Every child of an array shares its run's params and its parent's parameters:
    # describing 10,000 of them (a report) parses each once. Read-only by its users.
    return types.MappingProxyType(json.loads(text))


def _stopped_by(conn: sqlite3.Connection, row: _Row, status: JobState) -> set[str]:
    """`cancel` and/or `terminate` when the job failed and a CancelJob or TerminateJob
    (on it, or on its array parent) was taken by its run."""
    if status is not JobState.FAILED:
        return set()
    ids = [row["job_id"]] + ([row["parent_id"]] if row["parent_id"] is not None else [])
    found = conn.execute(
        f"SELECT DISTINCT action FROM requests WHERE run_id = ? AND taken != 0"
        f" AND job_id IN ({', '.join('?' * len(ids))})",
        [row["run_id"], *ids],
    )
    return {str(action) for (action,) in found}


def _summary_updated_at(conn: sqlite3.Connection, parent: _Row) -> int | None:
    """When a child of the array last changed state (ms), else when it was submitted."""
    prefix = f"{parent['job_id']}:"
    # A range on the events index: children's ids are `PARENT:INDEX`.
    (latest,) = conn.execute(
        "SELECT MAX(time) FROM events WHERE job_id >= ? AND job_id < ? AND applied != 0",
        (prefix, prefix[:-1] + ";"),
    ).fetchone()
    return _ms(latest if latest is not None else parent["created_at"])


def _attempt(a: _Row) -> AttemptRecord:
    return AttemptRecord(
        started_at=_ms(a["started_at"]),
        stopped_at=_ms(a["stopped_at"]),
        exit_code=a["exit_code"],
        reason=a["reason"],
        status_reason=a["status_reason"],
        log_path=a["log_path"],
        compute=a["compute"],
        host=a["host"],
        peak_memory=a["peak_memory"],
        external_id=a["external_id"],
    )


def _depends_on(row: _Row, static: _Row) -> list[dict[str, Any]]:
    deps: list[dict[str, Any]] = json.loads(static["depends_on"] or "[]")
    index = row["array_index"]
    if index is None:
        return deps
    # A child waits for what AWS shows on it: its N_TO_N partner and, in a sequential
    # array, the child before it. Whole-job dependencies belong to the parent.
    out: list[dict[str, Any]] = []
    for dep in deps:
        if dep.get("type") == "N_TO_N":
            out.append({"jobId": f"{dep['jobId']}:{index}"})
        elif dep.get("type") == "SEQUENTIAL" and index > 0:
            out.append({"jobId": f"{row['parent_id']}:{index - 1}"})
    return out


def summaries(
    conn: sqlite3.Connection,
    *,
    run_id: str | None,
    queue: str | None,
    status: str | None,
    name: str | None,
    parent: str | None,
) -> list[JobRecord]:
    """ListJobs-like summaries: top-level jobs in submission order, or the children of
    `parent` by index. Array parents carry their statusSummary."""
    where: list[str] = []
    args: list[object] = []
    if parent is None:
        where.append("j.parent_id IS NULL")
    else:
        where.append("j.parent_id = ?")
        args.append(parent)
    for column, value in (("j.run_id", run_id), ("s.queue", queue), ("j.name", name)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if status is not None:
        where.append("COALESCE(j.status, 'SUBMITTED') = ?")
        args.append(status.upper())
    order = "j.array_index" if parent is not None else "j.seq"
    rows = (
        _cursor(conn)
        .execute(
            "SELECT j.*, s.queue AS job_queue,"
            " COALESCE((SELECT a.exit_code FROM attempts a"
            "           WHERE a.job_id = j.job_id AND a.attempt = j.attempt),"
            "          CASE WHEN j.attempt = 0 THEN j.exit_code END) AS last_exit_code"
            " FROM jobs j"
            " JOIN jobs s ON s.job_id = COALESCE(j.parent_id, j.job_id)"
            f" WHERE {' AND '.join(where)} ORDER BY {order}",
            args,
        )
        .fetchall()
    )
    out = []
    for row in rows:
        state = _status(row)
        size = row["array_size"]
        out.append(
            _record(
                row,
                state,
                queue=row["job_queue"],
                exit_code=row["last_exit_code"],
                status_summary=(
                    None if size is None else status_summary(conn, row["job_id"], size, state)
                ),
            )
        )
    return out


def events(conn: sqlite3.Connection, job_id: str) -> list[dict[str, Any]]:
    rows = _cursor(conn).execute("SELECT * FROM events WHERE job_id = ? ORDER BY seq", (job_id,))
    return [
        {
            "status": r["state"],
            "time": _ms(r["time"]),
            "statusReason": r["reason"],
            "attempt": r["attempt"],
            "exitCode": r["exit_code"],
            "applied": bool(r["applied"]),
        }
        for r in rows
    ]


# A row's status as its state (a job not yet written as submitted has none), by a dict
# lookup: `--resume` reads a row for every array child.
_STATE_OF: Final[dict[str | None, JobState]] = {
    None: JobState.SUBMITTED,
    **{state.value: state for state in JobState},
}


def records(
    conn: sqlite3.Connection, run_id: str
) -> dict[str, dict[int | None, tuple[JobState, str | None]]]:
    """What `run_id` left of each job, for `run --resume`: job name -> {None for a
    single job, or each array child's index that has a row -> (status,
    fingerprint)}. A child the run never created has no entry."""
    out: dict[str, dict[int | None, tuple[JobState, str | None]]] = {}
    arrays: dict[str, dict[int | None, tuple[JobState, str | None]]] = {}
    for job_id, name, status, fingerprint, size in conn.execute(
        "SELECT job_id, name, status, fingerprint, array_size FROM jobs"
        " WHERE run_id = ? AND parent_id IS NULL",
        (run_id,),
    ):
        if size is None:
            out[name] = {None: (_STATE_OF[status], fingerprint)}
        else:
            out[name] = arrays[job_id] = {}
    parents = list(arrays)
    # By parent, through the (parent_id, status) index: a run's children are found
    # without scanning the other runs' rows.
    for start in range(0, len(parents), _CHUNK):
        chunk = parents[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        for parent, index, status, fingerprint in conn.execute(
            "SELECT parent_id, array_index, status, fingerprint FROM jobs"
            f" WHERE parent_id IN ({marks})",
            chunk,
        ):
            arrays[parent][index] = (_STATE_OF[status], fingerprint)
    return out


OwnerState = Callable[[Any, Any, Any, Any], str]  # (pid, hostname, owner, boot_id) -> state


def runs(
    conn: sqlite3.Connection, owner_state: OwnerState, run_id: str | None = None
) -> list[RunRecord]:
    """Every run (or `run_id`), newest first. A run that never ended reads RUNNING while
    its runner is alive, UNKNOWN when its runner is on another machine (nothing here
    can tell), and INCOMPLETE once its runner is gone (`Store.settle_lost_runs`
    records that as FAILED where the database can be written). `owner_state` judges
    a runner (`store.owner_state`)."""
    counts: dict[str, dict[JobState, int]] = {}
    where, args = ("", ()) if run_id is None else (" WHERE run_id = ?", (run_id,))
    for rid, status, n in conn.execute(
        "SELECT run_id, COALESCE(status, 'SUBMITTED'), COUNT(*) FROM jobs"
        f" WHERE parent_id IS NULL{where.replace('WHERE', 'AND')} GROUP BY run_id, status",
        args,
    ):
        per_run = counts.setdefault(rid, {})
        job_state = JobState(status)
        per_run[job_state] = per_run.get(job_state, 0) + n
    out = []
    for r in _cursor(conn).execute(
        f"SELECT * FROM runs{where} ORDER BY created_at DESC, rowid DESC", args
    ):
        reason = r["reason"]
        if r["status"] is not None:
            status = RunStatus(r["status"])
        else:
            owner = owner_state(r["pid"], r["hostname"], r["owner"], r["boot_id"])
            status = _UNENDED.get(owner, RunStatus.INCOMPLETE)
            if status is RunStatus.UNKNOWN:
                reason = (
                    f"its runner is on {r['hostname']}: whether it still runs can only be"
                    " told there"
                )
            elif status is RunStatus.INCOMPLETE:
                reason = f"{_LOST}: its runner (pid {r['pid']}) is gone"
        out.append(
            RunRecord(
                run_id=r["run_id"],
                pipeline=r["pipeline"],
                params=json.loads(r["params"]),
                created_at=_ms(r["created_at"]),
                ended_at=_ms(r["ended_at"]),
                status=status,
                status_reason=reason,
                counts=counts.get(r["run_id"], {}),
            )
        )
    return out


# -- ListJobs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class JobQuery:
    """A page of ListJobs: the top-level jobs of `queue`, or the children of the array
    job `parent`, of run `run_id` (None: any run). `status` None is any status (a
    job with no state recorded yet is SUBMITTED). Filters, each a tuple matched by any
    of its items: `name_like` SQL LIKE patterns over the job's name (ASCII case-
    insensitive, `\\` escapes), `definition_glob` GLOB patterns over the ARN of the
    definition it was submitted with (`submissions.definition`), `created_before` /
    `created_after` epoch ms (strict). Top-level jobs come by `seq`, oldest first
    unless `newest_first`; children by index. `cursor` is the last position already
    listed (a `ListedJob.cursor`): the page starts after it."""

    run_id: str | None = None
    queue: str | None = None
    parent: str | None = None
    status: str | None = None
    name_like: tuple[str, ...] = ()
    definition_glob: tuple[str, ...] = ()
    created_before: int | None = None
    created_after: int | None = None
    newest_first: bool = False
    cursor: int | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class ListedJob:
    """One job of a ListJobs page: its record (no detail), where it is in the listing
    (`cursor`: its seq, or a child's index), the ARN of the definition it was submitted
    with (None for a job no SubmitJob made), its latest attempt's container reason, and
    whether a CancelJob or a TerminateJob failed it."""

    record: JobRecord
    cursor: int
    definition: str | None
    reason: str | None
    cancelled: bool
    terminated: bool


_LISTED: Final = (
    "SELECT j.*, s.definition AS definition,"
    " (SELECT a.reason FROM attempts a WHERE a.job_id = j.job_id"
    "  ORDER BY a.attempt DESC LIMIT 1) AS last_reason,"
    " COALESCE((SELECT a.exit_code FROM attempts a"
    "           WHERE a.job_id = j.job_id AND a.attempt = j.attempt),"
    "          CASE WHEN j.attempt = 0 THEN j.exit_code END) AS last_exit_code"
    " FROM jobs j LEFT JOIN submissions s ON s.job_id = COALESCE(j.parent_id, j.job_id)"
)


def list_jobs(conn: sqlite3.Connection, query: JobQuery) -> tuple[list[ListedJob], bool]:
    """One page of `query` (at most `query.limit` jobs), and whether more follow."""
    if query.parent is not None:
        return _list_children(conn, query)
    where = ["j.parent_id IS NULL"]
    args: list[object] = []
    if query.queue is not None:
        where.append("j.queue = ?")
        args.append(query.queue)
    if query.run_id is not None:
        where.append("j.run_id = ?")
        args.append(query.run_id)
    if query.status is not None:
        # Equality, not COALESCE, so that the (queue, status, seq) index serves it.
        where.append(
            "(j.status = ? OR j.status IS NULL)"
            if query.status == JobState.SUBMITTED.value
            else "j.status = ?"
        )
        args.append(query.status)
    for column, patterns, how in (
        ("j.name", query.name_like, "LIKE ? ESCAPE '\\'"),
        ("s.definition", query.definition_glob, "GLOB ?"),
    ):
        if patterns:
            where.append("(" + " OR ".join(f"{column} {how}" for _ in patterns) + ")")
            args += patterns
    created_ms = "CAST(round(j.created_at * 1000) AS INTEGER)"
    if query.created_before is not None:
        where.append(f"{created_ms} < ?")
        args.append(query.created_before)
    if query.created_after is not None:
        where.append(f"{created_ms} > ?")
        args.append(query.created_after)
    if query.cursor is not None:
        where.append("j.seq < ?" if query.newest_first else "j.seq > ?")
        args.append(query.cursor)
    order = "DESC" if query.newest_first else "ASC"
    rows = (
        _cursor(conn)
        .execute(
            f"{_LISTED} WHERE {' AND '.join(where)} ORDER BY j.seq {order} LIMIT ?",
            [*args, query.limit + 1],
        )
        .fetchall()
    )
    listed = [_listed(conn, row, row["queue"], row["seq"]) for row in rows[: query.limit]]
    return listed, len(rows) > query.limit


def _listed(conn: sqlite3.Connection, row: _Row, queue: str | None, cursor: int) -> ListedJob:
    state = _status(row)
    size = row["array_size"]
    stopped_by = _stopped_by(conn, row, state)
    record = _record(
        row,
        state,
        queue=queue,
        exit_code=row["last_exit_code"],
        status_summary=None if size is None else status_summary(conn, row["job_id"], size, state),
    )
    return ListedJob(
        record=record,
        cursor=cursor,
        definition=row["definition"],
        reason=row["last_reason"],
        cancelled="cancel" in stopped_by,
        terminated="terminate" in stopped_by,
    )


def _list_children(conn: sqlite3.Connection, query: JobQuery) -> tuple[list[ListedJob], bool]:
    """The children of an array job by index, those the runner has not created yet
    included (they read as `describe_child` shows them: PENDING, or FAILED once the
    parent failed)."""
    cur = _cursor(conn)
    parent = cur.execute(f"{_LISTED} WHERE j.job_id = ?", (query.parent,)).fetchone()
    if parent is None or parent["array_size"] is None or parent["parent_id"] is not None:
        return [], False
    if query.run_id is not None and parent["run_id"] != query.run_id:
        return [], False
    size = int(parent["array_size"])
    failed = _status(parent) is JobState.FAILED
    unmade = JobState.FAILED if failed else JobState.PENDING
    made = {
        int(index): _STATE_OF[status]
        for index, status in conn.execute(
            "SELECT array_index, status FROM jobs WHERE parent_id = ?", (query.parent,)
        )
    }
    start = -1 if query.cursor is None else query.cursor
    wanted = None if query.status is None else JobState(query.status)
    page: list[int] = []
    more = False
    for index in range(start + 1, size):
        if wanted is None or made.get(index, unmade) is wanted:
            if len(page) == query.limit:
                more = True
                break
            page.append(index)
    rows = {}
    created = [i for i in page if i in made]
    for at in range(0, len(created), _CHUNK):
        chunk = [f"{query.parent}:{i}" for i in created[at : at + _CHUNK]]
        for row in cur.execute(
            f"{_LISTED} WHERE j.job_id IN ({', '.join('?' * len(chunk))})", chunk
        ):
            rows[int(row["array_index"])] = row
    out = []
    for index in page:
        row = rows.get(index) or _unmade_child(parent, index, failed)
        out.append(_listed(conn, row, parent["queue"], index))
    return out, more


def _unmade_child(parent: _Row, index: int, failed: bool) -> dict[str, Any]:
    return {
        "job_id": f"{parent['job_id']}:{index}",
        "name": parent["name"],
        "run_id": parent["run_id"],
        "parent_id": parent["job_id"],
        "array_index": index,
        "array_size": None,
        "status": JobState.FAILED.value if failed else JobState.PENDING.value,
        "status_reason": parent["status_reason"] if failed else "",
        "created_at": parent["created_at"],
        "started_at": None,
        "stopped_at": parent["stopped_at"] if failed else None,
        "attempt": 0,
        "definition": parent["definition"],
        "last_reason": None,
        "last_exit_code": None,
    }
