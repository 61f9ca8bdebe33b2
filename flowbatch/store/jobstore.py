"""The job store: runs, jobs and every state change, in SQLite at `<state_dir>/jobs.db`.

The store is an event sink: `emit` only buffers, `flush` writes the buffer in one short
transaction with `executemany`, so a run of 10,000 children costs a handful of
transactions, a reader (`flowbatch jobs`) never waits long, and a writer killed at any
point (kill -9) leaves the last committed flush behind. A state change is applied to a
job only if the transition table allows it (`state.can`); one it does not allow is
kept in the events table with `applied = 0` and listed in `Store.rejected`.

Jobs and runs read back as records (`flowbatch.run.records`, through `views`), and as
their JSON in AWS Batch's DescribeJobs shapes.

A run records its runner; a writer that opens the store settles the runs of this machine
whose runner is gone (`lost`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import socket
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from flowbatch.executors import logfiles
from flowbatch.executors.processes import Process
from flowbatch.lang.model import JobSpec, Pipeline
from flowbatch.run.records import (
    ENDED,
    JobRecord,
    RunRecord,
    RunStatus,
    describe_json,
    run_json,
    summary_json,
)
from flowbatch.run.state import JobEvent, JobState
from flowbatch.store import lost, rows
from flowbatch.store.catalog import Catalog
from flowbatch.store.lost import RUNNER_LOST
from flowbatch.store.schema import (
    BUSY_TIMEOUT_SECONDS,
    StoreError,
    Transaction,
    open_database,
    reads,
)

if TYPE_CHECKING:
    # Imported where used: `flowbatch run` needs neither (the server and the reading
    # commands do).
    from flowbatch.store import standing, views

__all__ = ["DB_NAME", "RUNNER_LOST", "Store", "StoreError"]

DB_NAME: Final = "jobs.db"
DEFAULT_KEEP_DAYS: Final = 1.0  # AWS keeps a finished job for 24 hours
_DAY: Final = 86_400.0

_ENDED_BY_NAME: Final = {status.value: status for status in ENDED}
_CHUNK: Final = 500  # bound on `IN (...)` parameters per statement
# `PARENT:i`, an array child's id; a negative index is matched to be refused by name.
_CHILD_ID: Final = re.compile(r"(.+):(-?[0-9]+)")


class Store:
    """The job database of one state directory. Not shared between threads at once.

    `read_only` is True when the database could only be opened for reading (a
    read-only directory or file system): the reading methods work, writing raises
    StoreError, and runs whose runner is gone cannot be marked so.
    """

    def __init__(self, conn: sqlite3.Connection, db_path: Path, *, read_only: bool = False) -> None:
        self._conn = conn
        self.path = db_path
        self.read_only = read_only
        # Requests handed to the runner whose effects the next flush records: that flush
        # marks them applied, so `cancel` can wait for what really happened.
        self._taken: list[int] = []
        self._buffer: list[JobEvent] = []
        # The last applied state of every job this writer has touched, and which ids
        # are array parents: legality checks then need no query per event.
        self._states: dict[str, JobState | None] = {}
        self._parents: set[str] = set()
        # Parents of runs begun here: their children are created by this writer only,
        # so a child missing from the cache is new and needs no lookup.
        self._own_parents: set[str] = set()
        self.rejected: list[tuple[JobEvent, str]] = []

    # -- opening ------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        create: bool = True,
        busy_timeout: float = BUSY_TIMEOUT_SECONDS,
        page_cache_kib: int | None = None,
    ) -> Store:
        """The store in `state_dir`, created (directory and database) unless `create`
        is False, in which case a missing database raises StoreError and one that
        cannot be written is opened read-only. A write waits up to `busy_timeout`
        seconds for another process's, then raises StoreError. What flowbatch creates
        here is private to its user (0700 directory, 0600 database) whatever the umask.

        Runs of this machine whose runner is gone are marked FAILED on opening (see
        `settle_lost_runs`). `page_cache_kib` bounds SQLite's own cache of database
        pages (its default is 2 MiB); the operating system caches the file anyway."""
        db_path = Path(state_dir) / DB_NAME
        conn, read_only = open_database(db_path, create=create, busy_timeout=busy_timeout)
        if page_cache_kib is not None:
            conn.execute(f"PRAGMA cache_size = -{int(page_cache_kib)}")
        store = cls(conn, db_path, read_only=read_only)
        if not read_only:
            # A locked or full database: the next command tries again.
            with contextlib.suppress(StoreError):
                store.settle_lost_runs()
        return store

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def catalog(self) -> Catalog:
        """The server's catalog of compute environments, queues and definitions, in
        this database (written through, one transaction per change)."""
        return Catalog(self._conn, self.path)

    # -- writing --------------------------------------------------------------------------
    def begin_run(
        self,
        run_id: str,
        pipeline: Pipeline,
        job_ids: Mapping[str, str],
        *,
        created_at: float,
    ) -> None:
        """Record a run and one row per job (array parents, not children) with its
        static facts. Every job of `pipeline.jobs` needs an id in `job_ids`."""
        missing = sorted(set(pipeline.jobs) - set(job_ids))
        if missing:
            raise StoreError(f"no job id for {', '.join(missing)} in run {run_id}")
        # Made row by row as SQLite takes them: 10,000 jobs' rows at once are megabytes
        # that the run's peak memory would keep.
        static = (
            rows.static_row(run_id, spec, job_ids, created_at) for spec in pipeline.jobs.values()
        )
        params = json.dumps(dict(pipeline.params), sort_keys=True)
        with self._write():
            me = Process.of(os.getpid())
            kinds = json.dumps({n: ce.type for n, ce in pipeline.computes.items()}, sort_keys=True)
            self._conn.execute(
                "INSERT INTO runs (run_id, pipeline, params, created_at, pid, hostname, owner,"
                " boot_id, computes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, pipeline.path, params, created_at, me.pid, socket.gethostname(),
                 str(me), lost.boot_id(), kinds),
            )  # fmt: skip
            self._conn.executemany(
                f"INSERT INTO jobs ({', '.join(rows.STATIC_COLUMNS)})"
                f" VALUES ({', '.join('?' * len(rows.STATIC_COLUMNS))})",
                static,
            )
        lost.make_reserve(self.path.parent)
        for spec in pipeline.jobs.values():
            job_id = job_ids[spec.name]
            self._states[job_id] = None
            if spec.is_array:
                self._parents.add(job_id)
                self._own_parents.add(job_id)

    # -- a standing run (flowbatch server, see `standing`) ------------------------------
    def open_standing_run(self, run_id: str, *, created_at: float) -> list[standing.Retained]:
        """Own the standing run `run_id` (made if new) and return every job it keeps,
        as its last server left them (see `resubmit_standing` for the unfinished)."""
        from flowbatch.store import standing

        with self._write():
            standing.open_run(self._conn, run_id, created_at)
            left = standing.retained(self._conn, run_id)
        return left

    def add_standing_jobs(
        self,
        run_id: str,
        specs: Sequence[JobSpec],
        names: Sequence[str],
        submissions: Sequence[standing.Submission],
    ) -> None:
        """Record accepted jobs at once, in one transaction (SubmitJob answers after)."""
        from flowbatch.store import standing

        with self._write():
            standing.add_jobs(self._conn, run_id, specs, names, submissions)
        for spec in specs:
            self._states[spec.name] = None
            if spec.is_array:
                self._parents.add(spec.name)
                self._own_parents.add(spec.name)

    def resubmit_standing(
        self,
        specs: Sequence[JobSpec],
        reason: str,
        *,
        when: float,
        failed: Sequence[str] = (),
        adopted: Sequence[str] = (),
    ) -> None:
        """Jobs of a standing run (keyed by id) to be scheduled again after a restart:
        attempts left running end with `reason`, and so do the array children `failed`
        (their last attempt was lost); each job (not its ended children) is reported
        afresh from SUBMITTED. The jobs and children `adopted` stay RUNNING as recorded:
        their attempt goes on (its end is reported as any other's)."""
        from flowbatch.store import standing

        job_ids = [spec.name for spec in specs]
        keep = set(adopted)
        with self._write():
            standing.end_lost_attempts(self._conn, job_ids, reason, when, adopted)
            self._conn.executemany(
                "UPDATE jobs SET status = 'FAILED', status_reason = ?, stopped_at = ?"
                " WHERE job_id = ?",
                [(reason, when, child) for child in failed],
            )
            self._conn.executemany(
                "UPDATE jobs SET status = NULL WHERE job_id = ?",
                [(j,) for j in job_ids if j not in keep],
            )
            self._conn.executemany(
                "DELETE FROM jobs WHERE parent_id = ?"
                " AND COALESCE(status, '') NOT IN ('SUCCEEDED', 'FAILED')"
                " AND job_id NOT IN (SELECT value FROM json_each(?))",
                [(j, json.dumps(list(adopted))) for j in job_ids],
            )
        for spec in specs:
            self._states[spec.name] = None
            if spec.is_array:
                self._parents.add(spec.name)
                self._own_parents.add(spec.name)
        for job_id in adopted:
            self._states[job_id] = JobState.RUNNING

    def expire_standing(self, run_id: str, before: float, *, limit: int = 1000) -> list[str]:
        """Delete up to `limit` jobs of a standing run that ended before `before` (AWS
        keeps a job 24 hours after it ends); their ids, for their logs to go too."""
        from flowbatch.store import standing

        with self._write():
            gone = standing.expired(self._conn, run_id, before, limit)
            standing.delete_jobs(self._conn, gone)
        for job_id in gone:
            self._states.pop(job_id, None)
            self._parents.discard(job_id)
            self._own_parents.discard(job_id)
        return gone

    @reads
    def submission(self, job_id: str) -> standing.Submission | None:
        """The SubmitJob request of a server's job (of an array child: its parent's)."""
        from flowbatch.store import standing

        return standing.submission(self._conn, job_id)

    def job_tags(self, job_id: str) -> dict[str, str] | None:
        from flowbatch.store import standing

        return standing.tags_of(self._conn, job_id)

    def set_job_tags(self, job_id: str, tags: dict[str, str]) -> None:
        from flowbatch.store import standing

        with self._write():
            standing.set_tags(self._conn, job_id, tags)

    def emit(self, event: JobEvent) -> None:
        """Buffer one state change; `flush` writes it."""
        self._buffer.append(event)

    def flush(self) -> None:
        """Write every buffered event in one transaction. Illegal state changes are
        recorded as not applied and appended to `rejected`. On a database error the
        events stay buffered and StoreError is raised."""
        if not self._buffer:
            if self._taken:
                with self._write():
                    self._ack_requests()
            return
        batch, self._buffer = self._buffer, []
        self._load_states(self._ids_to_look_up(batch))
        states = dict(self._states)  # becomes the cache only once the write commits
        folded = rows.fold(batch, states, self._parents)
        try:
            with self._write():
                self._conn.executemany(rows.INSERT_EVENT, folded.events)
                self._conn.executemany(rows.UPSERT_JOB, folded.jobs.values())
                self._conn.executemany(rows.UPSERT_ATTEMPT, folded.attempts.values())
                self._ack_requests()
        except StoreError:
            self._buffer[:0] = batch  # nothing was written: try again at the next flush
            raise
        self._states = states
        self.rejected.extend(folded.rejected)

    def end_run(
        self, run_id: str, status: RunStatus | str, *, ended_at: float, reason: str = ""
    ) -> None:
        """Mark a run ended: SUCCEEDED, FAILED or INTERRUPTED (`records.ENDED`, or its
        name), and why (`reason`, e.g. that the job database could not be written). With
        a reason, a buffer that cannot be written (a full disk) still leaves a true record
        where the smallest write fits: the run ended, its unfinished jobs FAILED with
        `reason`. StoreError when not even that could be written."""
        ended = _ENDED_BY_NAME.get(status.value if isinstance(status, RunStatus) else status)
        if ended is None:
            raise ValueError(f"unknown run status {status!r}")
        try:
            self.flush()
        except StoreError:
            if not reason:
                raise
            if not lost.release_reserve(self.path.parent):
                self._buffer.clear()
            else:
                try:
                    self.flush()
                except StoreError:
                    self._buffer.clear()  # lost: what is recorded instead says so
        with self._write():
            self._conn.execute(
                "UPDATE runs SET status = ?, ended_at = ?, reason = ? WHERE run_id = ?",
                (ended.value, ended_at, reason, run_id),
            )
            if reason:
                # run_plan returns once every attempt has ended: none is left running
                lost.fail_unfinished(self._conn, run_id, reason, ended_at, attempts_ended=True)
        self._states.clear()

    # -- runs whose runner is gone (see `lost`) -------------------------------------
    @reads
    def settle_lost_runs(self, *, now: float | None = None) -> list[str]:
        """Mark every run of this machine whose runner is gone (killed, crashed, the
        machine restarted) FAILED, its unfinished jobs FAILED with a RUNNER_LOST reason;
        return their ids. A run on another machine is left alone."""
        when = time.time() if now is None else now
        settled = []
        for run_id, reason in lost.lost_runs(self._conn):
            with self._write():
                logs = self.path.parent.absolute() / "logs" / run_id
                if lost.settle(self._conn, run_id, reason, when, logs):
                    settled.append(run_id)
            self._states.clear()  # rows changed under the cache
        return settled

    @reads
    def stray_attempts(
        self, job_id: str | None = None, *, run_id: str | None = None
    ) -> list[lost.Stray]:
        """Attempts a lost runner left that may still run: of one job (an array job:
        of its children), of one run, or all."""
        return lost.stray_attempts(self._conn, job_id, run_id)

    def stopped(self, stray: lost.Stray, reason: str, *, now: float | None = None) -> None:
        """Record that a stray attempt's process is gone (stopped, or found dead)."""
        with self._write():
            lost.mark_stopped(self._conn, stray, reason, time.time() if now is None else now)

    # -- control requests from other processes ---------------------------------------
    @reads
    def request(self, job_id: str, action: Literal["cancel", "terminate"], reason: str) -> int:
        """Ask the run that owns `job_id` to cancel or terminate it and return the
        request's number (see `request_state`); StoreError if no such job exists. An
        array child the runner has not created yet exists (as on AWS): the request
        goes to its parent's run."""
        if action not in ("cancel", "terminate"):
            raise ValueError(f"unknown action {action!r}")
        row = self._conn.execute("SELECT run_id FROM jobs WHERE job_id = ?", (job_id,))
        found = row.fetchone()
        if found is not None:
            run_id = str(found[0])
        else:
            child = self._array_child(job_id)
            if child is None:
                raise self.unknown_job(job_id)
            parent_id, index, run_id = child
            job_id = f"{parent_id}:{index}"
        with self._write():
            cur = self._conn.execute(
                "INSERT INTO requests (run_id, job_id, action, reason, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (run_id, job_id, action, reason, time.time()),
            )
        return int(cur.lastrowid or 0)

    @reads
    def request_state(self, seq: int) -> Literal["open", "taken", "applied"]:
        """Where request `seq` is: not yet seen by its runner, taken, or applied (what
        it changed is recorded)."""
        row = self._conn.execute("SELECT taken FROM requests WHERE seq = ?", (seq,)).fetchone()
        taken = 0 if row is None else int(row[0])
        return "applied" if taken >= 2 else "taken" if taken else "open"

    @reads
    def run_of(self, run_id: str) -> RunRecord | None:
        """One run as `runs` shows it, or None."""
        from flowbatch.store import views

        return next(iter(views.runs(self._conn, lost.owner_state, run_id)), None)

    def _ack_requests(self) -> None:
        # Inside the flush's transaction: the request is applied once its effects are.
        self._conn.executemany(
            "UPDATE requests SET taken = 2 WHERE seq = ?", [(seq,) for seq in self._taken]
        )
        self._taken = []

    @reads
    def take_requests(self, run_id: str) -> list[tuple[str, str, str]]:
        """The run's open requests as (job_id, action, reason), oldest first; each is
        returned by exactly one call."""
        query = (
            "SELECT seq, job_id, action, reason FROM requests"
            " WHERE run_id = ? AND taken = 0 ORDER BY seq"
        )
        # Polled every fraction of a second: look without the write lock first.
        if self._conn.execute(query, (run_id,)).fetchone() is None:
            return []
        with self._write():
            rows = self._conn.execute(query, (run_id,)).fetchall()
            self._conn.executemany(
                "UPDATE requests SET taken = 1 WHERE seq = ?", [(r[0],) for r in rows]
            )
        self._taken += [int(r[0]) for r in rows]
        return [(r[1], r[2], r[3]) for r in rows]

    # -- reading --------------------------------------------------------------------------
    @reads
    def describe(self, job_id: str) -> dict[str, Any]:
        """One job shaped like an entry of AWS DescribeJobs' `jobs` (`job`, rendered by
        `records.describe_json`); StoreError for an unknown id."""
        return describe_json(self.job(job_id))

    @reads
    def job(self, job_id: str) -> JobRecord:
        """One job as DescribeJobs describes it (with its `detail`); StoreError (with a
        suggestion where one exists) for an unknown id. Every child of an array job can
        be described, created by the runner or not (see `views.describe_child`)."""
        from flowbatch.store import views

        found = views.describe(self._conn, job_id)
        if found is None:
            child = self._array_child(job_id)
            if child is not None:
                found = views.describe_child(self._conn, child[0], child[1])
        if found is None:
            raise self.unknown_job(job_id)
        detail = found.detail
        assert detail is not None  # views.describe always fills it
        run_id = found.run_id
        moved = [self.log_path(a.log_path, run_id) for a in detail.attempts]
        log_path = self.log_path(detail.log_path, run_id)
        if log_path == detail.log_path and moved == [a.log_path for a in detail.attempts]:
            return found  # the common case: nothing moved, no copies
        attempts = tuple(
            dataclasses.replace(a, log_path=path)
            for a, path in zip(detail.attempts, moved, strict=True)
        )
        return dataclasses.replace(
            found, detail=dataclasses.replace(detail, attempts=attempts, log_path=log_path)
        )

    def log_path(self, recorded: str | None, run_id: str) -> str | None:
        """Where an attempt's logs are now: the `log_path` recorded (a stem, or an older
        store's directory: `executors.logfiles`), or, when nothing is there because the
        state directory moved since (a checkout renamed, a CI artifact unpacked
        elsewhere), the same `logs/RUN_ID/...` below this store's directory."""
        if not recorded:
            return recorded
        # Below this store's own directory: where it would be looked for anyway, no stat.
        if recorded.startswith(os.path.join(os.path.abspath(self.path.parent), "logs", "")):
            return recorded
        if logfiles.exists(recorded):
            return recorded
        parts = Path(recorded).parts
        for i in range(len(parts) - 2, -1, -1):
            if parts[i] == "logs" and parts[i + 1] == run_id:
                here = self.path.parent.joinpath(*parts[i:])
                return os.path.abspath(here) if logfiles.exists(here) else recorded
        return recorded

    @reads
    def jobs(
        self,
        *,
        run_id: str | None = None,
        queue: str | None = None,
        status: str | None = None,
        name: str | None = None,
        parent: str | None = None,
    ) -> list[dict[str, Any]]:
        """Job summaries in submission order, shaped like AWS ListJobs' (`job_records`,
        rendered by `records.summary_json`)."""
        found = self.job_records(
            run_id=run_id, queue=queue, status=status, name=name, parent=parent
        )
        return [summary_json(job) for job in found]

    @reads
    def job_records(
        self,
        *,
        run_id: str | None = None,
        queue: str | None = None,
        status: JobState | str | None = None,
        name: str | None = None,
        parent: str | None = None,
    ) -> list[JobRecord]:
        """Jobs in submission order: top-level jobs, or with `parent` the children of
        that array job by index. A listing: no record has its `detail`."""
        from flowbatch.store import views

        if isinstance(status, JobState):
            status = status.value
        return views.summaries(
            self._conn, run_id=run_id, queue=queue, status=status, name=name, parent=parent
        )

    @reads
    def list_jobs(self, query: views.JobQuery) -> tuple[list[views.ListedJob], bool]:
        """One page of ListJobs (`views.list_jobs`): at most `query.limit` jobs, and
        whether more follow."""
        from flowbatch.store import views

        return views.list_jobs(self._conn, query)

    @reads
    def events(self, job_id: str) -> list[dict[str, Any]]:
        """Every recorded state change of one job, in the order reported."""
        from flowbatch.store import views

        return views.events(self._conn, job_id)

    @reads
    def runs(self) -> list[dict[str, Any]]:
        """Every run, newest first, as `flowbatch runs --json` shows it (`run_records`,
        rendered by `records.run_json`)."""
        return [run_json(run) for run in self.run_records()]

    @reads
    def run_records(self) -> list[RunRecord]:
        """Every run, newest first, with counts of its top-level jobs by state."""
        from flowbatch.store import views

        return views.runs(self._conn, lost.owner_state)

    @reads
    def latest_run(self, pipeline: str | None = None, *, aliases: Iterable[str] = ()) -> str | None:
        """The newest run of `pipeline` (a path as given to begin_run) or of any of its
        `aliases` (the same file spelled otherwise), or of any pipeline."""
        names = list(dict.fromkeys([*([] if pipeline is None else [pipeline]), *aliases]))
        if len(names) > 1:
            row = self._conn.execute(
                f"SELECT run_id FROM runs WHERE pipeline IN ({', '.join('?' * len(names))})"
                " ORDER BY created_at DESC, rowid DESC LIMIT 1",
                names,
            ).fetchone()
            return None if row is None else str(row[0])
        if pipeline is None:
            row = self._conn.execute(
                "SELECT run_id FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1"
            ).fetchone()
        else:
            row = self._conn.execute(
                "SELECT run_id FROM runs WHERE pipeline = ?"
                " ORDER BY created_at DESC, rowid DESC LIMIT 1",
                (pipeline,),
            ).fetchone()
        return None if row is None else str(row[0])

    @reads
    def records(self, run_id: str) -> dict[str, dict[int | None, tuple[JobState, str | None]]]:
        """What `run_id` left of each job, for `run --resume` (`views.records`)."""
        from flowbatch.store import views

        return views.records(self._conn, run_id)

    def job_ids_starting(self, prefix: str, limit: int = 6) -> list[str]:
        """Ids of top-level jobs (of any run) that start with `prefix`, at most `limit`:
        the CLI takes a unique prefix for an id."""
        rows = self._conn.execute(
            "SELECT job_id FROM jobs WHERE job_id >= ? AND job_id < ? AND parent_id IS NULL"
            " ORDER BY job_id LIMIT ?",
            (prefix, prefix + "\U0010ffff", limit),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def unknown_job(self, job_id: str) -> StoreError:
        """The error for an id that is not in the store, with a near id if one exists."""
        hint = self.suggest(job_id)
        message = f"no job with id `{job_id}` in `{self.path}`"
        return StoreError(message + (f"; did you mean `{hint}`?" if hint else ""))

    @reads
    def suggest(self, text: str) -> str | None:
        """A job id close to `text`: a unique id it is a prefix of, the id of a job so
        named in the latest run, or a near spelling among recent ids."""
        rows = self._conn.execute(
            "SELECT job_id FROM jobs WHERE job_id >= ? AND job_id < ? LIMIT 2",
            (text, text + "\U0010ffff"),
        ).fetchall()
        if len(rows) == 1:
            return str(rows[0][0])
        latest = self.latest_run()
        if latest is not None:
            row = self._conn.execute(
                "SELECT job_id FROM jobs WHERE run_id = ? AND name = ? AND parent_id IS NULL",
                (latest, text),
            ).fetchone()
            if row is not None:
                return str(row[0])
        recent = [
            str(r[0])
            for r in self._conn.execute(
                "SELECT job_id FROM jobs WHERE parent_id IS NULL ORDER BY seq DESC LIMIT 2000"
            )
        ]
        import difflib  # an unknown id only

        close = difflib.get_close_matches(text, recent, n=1, cutoff=0.8)
        return close[0] if close else None

    # -- housekeeping ---------------------------------------------------------------------
    def prune(self, older_than_days: float = DEFAULT_KEEP_DAYS) -> int:
        """Delete runs that ended more than `older_than_days` ago, with their jobs,
        attempts, events and requests; returns how many runs. A run that has not ended
        is kept (its runner may be alive, perhaps on another machine), and so is one
        whose attempts may still run (`stray_attempts`): their ids are what stops them."""
        return len(self.prune_runs(older_than_days))

    @reads
    def prune_runs(
        self, older_than_days: float = DEFAULT_KEEP_DAYS, *, now: float | None = None
    ) -> list[str]:
        """Like `prune`, returning the ids of the deleted runs (so that the CLI can
        remove their log directories)."""
        cutoff = (time.time() if now is None else now) - older_than_days * _DAY
        with self._write():
            old = [
                str(r[0])
                for r in self._conn.execute(
                    "SELECT run_id FROM runs WHERE ended_at < ? AND NOT EXISTS (SELECT 1"
                    " FROM attempts a WHERE a.run_id = runs.run_id AND a.stopped_at IS NULL)",
                    (cutoff,),
                )
            ]
            for table in ("events", "attempts", "requests", "jobs", "runs"):
                self._conn.executemany(f"DELETE FROM {table} WHERE run_id = ?", [(r,) for r in old])
        return old

    # -- internals ------------------------------------------------------------------------
    def _write(self) -> Transaction:
        return Transaction(self._conn, self.path)

    def _array_child(self, job_id: str) -> tuple[str, int, str] | None:
        """(parent id, index, run id) for a `PARENT:i` naming a child of an array job in
        the store, whether the runner has created it or not; None when `job_id` has not
        that shape or PARENT is not in the store. StoreError when PARENT is no array
        job or `i` is outside it."""
        match = _CHILD_ID.fullmatch(job_id)
        if match is None:
            return None
        parent_id, index = match[1], int(match[2])
        row = self._conn.execute(
            "SELECT name, array_size, run_id FROM jobs WHERE job_id = ?", (parent_id,)
        ).fetchone()
        if row is None:
            return None
        name, size, run_id = row
        if size is None:
            raise StoreError(
                f"no job with id `{job_id}`: job `{parent_id}` ({name}) is not an array job"
            )
        if not 0 <= index < size:
            children = "1 child: 0" if size == 1 else f"{size} children: 0..{size - 1}"
            raise StoreError(
                f"no job with id `{job_id}`: array job `{parent_id}` ({name}) has {children}"
            )
        return parent_id, index, str(run_id)

    def _ids_to_look_up(self, batch: Iterable[JobEvent]) -> Iterable[str]:
        states, own = self._states, self._own_parents
        for ev in batch:
            if ev.job_id in states:
                continue
            if ev.index is None:
                yield ev.job_id
                continue
            parent = ev.job_id.rpartition(":")[0]
            if parent not in own:
                yield ev.job_id
                yield parent

    def _load_states(self, job_ids: Iterable[str]) -> None:
        """Fill the state cache for ids this writer has not seen (another Store wrote
        them, or a child not yet created, which stays absent)."""
        unknown = list(dict.fromkeys(j for j in job_ids if j not in self._states))
        for start in range(0, len(unknown), _CHUNK):
            chunk = unknown[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            for job_id, status, size in self._conn.execute(
                f"SELECT job_id, status, array_size FROM jobs WHERE job_id IN ({marks})",
                chunk,
            ):
                self._states[job_id] = None if status is None else JobState(status)
                if size is not None:
                    self._parents.add(job_id)
