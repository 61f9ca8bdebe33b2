"""flowbatch server's standing run in the store: one run per state directory that
never ends, jobs added to it one SubmitJob at a time (each in the store before the
call is answered), and what a restarted server finds of the jobs it had accepted.

A standing run is told apart by its `pipeline` (`STANDING`): a command that settles the
runs of dead runners (`lost.lost_runs`) leaves it alone, since the server settles its own
jobs when it starts again, by its retry strategies (see `flowbatch.server.service`).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from flowbatch.executors.processes import Process
from flowbatch.lang.model import JobSpec
from flowbatch.store import lost, rows
from flowbatch.store.schema import StoreError

STANDING: Final = "(flowbatch server)"  # the `pipeline` of a standing run

_NAME = rows.STATIC_COLUMNS.index("name")


@dataclass(frozen=True, slots=True)
class Submission:
    """One accepted SubmitJob, as a restarted server rebuilds its job from."""

    job_id: str
    request: str  # JSON
    definition: str  # the definition's ARN
    tags: str  # JSON
    created_at: float


@dataclass(frozen=True, slots=True)
class Running:
    """The attempt a job or child had RUNNING when its server stopped, as recorded."""

    attempt: int
    external_id: str  # what its executor reported (a SLURM job id)
    compute: str
    host: str
    log_path: str


@dataclass(frozen=True, slots=True)
class Retained:
    """A job of the standing run as its server left it (ended or not)."""

    submission: Submission
    status: str | None
    attempt: int  # attempts begun
    running: bool  # an attempt was STARTING or RUNNING
    children: dict[int, tuple[str, int]]  # array: index -> (status, attempts begun)
    reason: str = ""  # its statusReason
    # The RUNNING attempts of the job (key None) or its children (their index) that
    # reported an external id: what a restarted server may re-adopt.
    live: dict[int | None, Running] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.status in ("SUCCEEDED", "FAILED")


class _Same(dict[str, str]):
    """Job ids for `rows.static_row`: in a standing run a job's key is its id."""

    def __missing__(self, key: str) -> str:
        return key


def open_run(conn: sqlite3.Connection, run_id: str, created_at: float) -> bool:
    """Make this process the owner of the standing run `run_id`; True if it is new.
    StoreError while another live process owns it: two servers over one state directory
    would each take the other's running attempts for lost and run its queue twice."""
    me = Process.of(os.getpid())
    found = conn.execute(
        "SELECT pid, hostname, owner, boot_id FROM runs WHERE run_id = ?", (run_id,)
    ).fetchone()
    if found is not None and found[2] != str(me):
        state = lost.owner_state(*found)
        if state in ("alive", "elsewhere"):
            where = "" if state == "alive" else f" on {found[1]}"
            raise StoreError(
                f"another flowbatch server (pid {found[0]}{where}) serves this state"
                " directory: stop it first, or give this one another --state-dir"
            )
    if found is None:
        conn.execute(
            "INSERT INTO runs (run_id, pipeline, params, created_at, pid, hostname, owner,"
            " boot_id, computes) VALUES (?, ?, '{}', ?, ?, ?, ?, ?, '{}')",
            (run_id, STANDING, created_at, me.pid, socket.gethostname(), str(me), lost.boot_id()),
        )
        return True
    conn.execute(
        "UPDATE runs SET pid = ?, hostname = ?, owner = ?, boot_id = ?, status = NULL,"
        " ended_at = NULL, reason = '' WHERE run_id = ?",
        (me.pid, socket.gethostname(), str(me), lost.boot_id(), run_id),
    )
    return False


def add_jobs(
    conn: sqlite3.Connection,
    run_id: str,
    specs: Sequence[JobSpec],
    names: Sequence[str],
    submissions: Sequence[Submission],
) -> None:
    """The static rows of jobs keyed by their ids (`spec.name`), named `names`, with
    the requests they were accepted from."""
    ids = _Same()
    static = []
    for spec, name, sub in zip(specs, names, submissions, strict=True):
        row = list(rows.static_row(run_id, spec, ids, sub.created_at))
        row[_NAME] = name
        static.append(tuple(row))
    conn.executemany(
        f"INSERT INTO jobs ({', '.join(rows.STATIC_COLUMNS)})"
        f" VALUES ({', '.join('?' * len(rows.STATIC_COLUMNS))})",
        static,
    )
    conn.executemany(
        "INSERT INTO submissions (job_id, run_id, request, definition, tags, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(s.job_id, run_id, s.request, s.definition, s.tags, s.created_at) for s in submissions],
    )


def retained(conn: sqlite3.Connection, run_id: str) -> list[Retained]:
    """Every job the standing run keeps, ended or not, in submission order (a job
    submitted later may depend on one that ended)."""
    out = []
    query = (
        "SELECT s.job_id, s.request, s.definition, s.tags, s.created_at, j.status, j.attempt,"
        " j.status_reason FROM submissions s JOIN jobs j ON j.job_id = s.job_id"
        " WHERE s.run_id = ? ORDER BY j.seq"
    )
    for job_id, request, definition, tags, created, status, attempt, reason in conn.execute(
        query, (run_id,)
    ):
        children = {
            int(index): (str(st or ""), int(n or 0))
            for index, st, n in conn.execute(
                "SELECT array_index, status, attempt FROM jobs WHERE parent_id = ?", (job_id,)
            )
        }
        live: dict[int | None, Running] = {}
        if status == "RUNNING" or any(st == "RUNNING" for st, _ in children.values()):
            for index, *running in conn.execute(_LIVE, (job_id, job_id)):
                live[None if index is None else int(index)] = Running(*running)
        out.append(
            Retained(
                Submission(job_id, request, definition, tags, created),
                status,
                int(attempt or 0),
                status in ("STARTING", "RUNNING"),
                children,
                str(reason or ""),
                live,
            )
        )
    return out


# A job's (or its children's) RUNNING attempt, not recorded as ended, with its executor's id.
_LIVE = (
    "SELECT j.array_index, a.attempt, a.external_id, a.compute, a.host, a.log_path"
    " FROM jobs j JOIN attempts a ON a.job_id = j.job_id AND a.attempt = j.attempt"
    " WHERE (j.job_id = ? OR j.parent_id = ?) AND j.status = 'RUNNING'"
    " AND a.stopped_at IS NULL AND COALESCE(a.external_id, '') != ''"
    " AND a.compute IS NOT NULL AND a.host IS NOT NULL AND a.log_path IS NOT NULL"
)


def end_lost_attempts(
    conn: sqlite3.Connection,
    job_ids: Iterable[str],
    reason: str,
    when: float,
    adopted: Sequence[str] = (),
) -> None:
    """Attempts of these jobs (and their children) that were begun and never recorded as
    ended: ended now, with `reason`, for the retry strategy to judge; but not those of
    the jobs and children `adopted` (their attempt goes on)."""
    keep = json.dumps(list(adopted))
    for job_id in job_ids:
        conn.execute(
            "UPDATE attempts SET stopped_at = ?, reason = ?, status_reason = ?"
            " WHERE stopped_at IS NULL AND (job_id = ?"
            " OR job_id IN (SELECT job_id FROM jobs WHERE parent_id = ?))"
            " AND job_id NOT IN (SELECT value FROM json_each(?))",
            (when, reason, reason, job_id, job_id, keep),
        )


def tags_of(conn: sqlite3.Connection, job_id: str) -> dict[str, str] | None:
    row = conn.execute("SELECT tags FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    return None if row is None else dict(json.loads(row[0] or "{}"))


def set_tags(conn: sqlite3.Connection, job_id: str, tags: dict[str, str]) -> None:
    conn.execute(
        "UPDATE jobs SET tags = ? WHERE job_id = ?", (json.dumps(tags, sort_keys=True), job_id)
    )


def expired(conn: sqlite3.Connection, run_id: str, before: float, limit: int) -> list[str]:
    """Jobs of the standing run (not children) that ended before `before`, oldest first."""
    return [
        str(r[0])
        for r in conn.execute(
            "SELECT job_id FROM jobs WHERE run_id = ? AND parent_id IS NULL"
            " AND status IN ('SUCCEEDED', 'FAILED') AND stopped_at < ? ORDER BY seq LIMIT ?",
            (run_id, before, limit),
        )
    ]


def delete_jobs(conn: sqlite3.Connection, job_ids: Sequence[str]) -> None:
    """Every row of these jobs and their children: events, attempts, the request."""
    params = [(j,) for j in job_ids]
    children = " OR job_id IN (SELECT job_id FROM jobs WHERE parent_id = ?)"
    for table in ("events", "attempts"):
        conn.executemany(
            f"DELETE FROM {table} WHERE job_id = ?{children}", [(j, j) for j in job_ids]
        )
    conn.executemany("DELETE FROM jobs WHERE parent_id = ?", params)
    conn.executemany("DELETE FROM jobs WHERE job_id = ?", params)
    conn.executemany("DELETE FROM submissions WHERE job_id = ?", params)


def submission(conn: sqlite3.Connection, job_id: str) -> Submission | None:
    """The request a job (or, for an array child, its parent) was submitted with."""
    row = conn.execute(
        "SELECT job_id, request, definition, tags, created_at FROM submissions WHERE job_id = ?",
        (job_id.partition(":")[0],),
    ).fetchone()
    return None if row is None else Submission(*row)
