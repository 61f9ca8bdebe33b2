"""The job database's schema, its versions and how a database is opened.

`PRAGMA user_version` is the schema version; `MIGRATIONS[i]` takes a database from
version i to i + 1. A database written by a newer flowbatch is refused rather than
guessed at (ninja's `# ninja log v7` with `kOldestSupportedVersion`). Nothing is ever
pickled: states are `JobState.value` strings, maps are JSON text.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Concatenate, Final, ParamSpec, Protocol, TypeVar

from flowbatch.errors import FlowbatchError


class StoreError(FlowbatchError):
    """A problem with the job database, worded for the user (newer schema, unknown id).
    `read_only` is True when the database or its directory cannot be written."""

    def __init__(self, message: str, *, read_only: bool = False) -> None:
        super().__init__(message)
        self.read_only = read_only


class NewerSchema(StoreError):
    """A database written by a newer flowbatch (schema `version`, above `supported`)."""

    def __init__(self, path: str, version: int, supported: int) -> None:
        super().__init__(path)
        self.path, self.version, self.supported = path, version, supported

    @property
    def message(self) -> str:
        return (
            f"job database `{self.path}` is schema v{self.version}; "
            f"this flowbatch reads up to v{self.supported}"
        )


class UnknownRun(StoreError):
    """No run `run_id` in the database at `path` (None: `latest`, and no run at all);
    `recent` are the newest runs' ids, newest first."""

    def __init__(self, path: str, run_id: str | None, recent: Sequence[str]) -> None:
        super().__init__(path)
        self.path, self.run_id, self.recent = path, run_id, tuple(recent)

    @property
    def message(self) -> str:
        if self.run_id is None:
            return f"no runs recorded in `{self.path}`"
        shown = ", ".join(self.recent[:5]) + (", ..." if len(self.recent) > 5 else "")
        return f"no run `{self.run_id}` in `{self.path}`" + (
            f"; recent runs: {shown}" if self.recent else ""
        )


# How long a writer or reader waits for another process's transaction. Write
# transactions are one flush each (milliseconds), so this only matters under a storm.
BUSY_TIMEOUT_SECONDS: Final = 30.0

_V1: Final = """
CREATE TABLE runs (
    run_id     TEXT PRIMARY KEY,
    pipeline   TEXT NOT NULL,
    params     TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    ended_at   REAL,
    status     TEXT,
    pid        INTEGER,
    hostname   TEXT
);
CREATE INDEX runs_by_pipeline ON runs (pipeline, created_at);

-- Indexes are few on purpose: every one costs each flush; pruning, the only reader by
-- run of events and attempts, is rare and may scan.

-- One row per single job, array parent and array child. Children carry only what
-- changes; their static facts are their parent's.
CREATE TABLE jobs (
    seq            INTEGER PRIMARY KEY,
    job_id         TEXT NOT NULL UNIQUE,
    run_id         TEXT NOT NULL,
    name           TEXT NOT NULL,
    parent_id      TEXT,
    array_index    INTEGER,
    array_size     INTEGER,
    sequential     INTEGER NOT NULL DEFAULT 0,
    queue          TEXT,
    command        TEXT,
    image          TEXT,
    vcpus          REAL,
    memory         INTEGER,
    gpus           INTEGER,
    timeout        REAL,
    retry_attempts INTEGER,
    environment    TEXT,
    parameters     TEXT,
    tags           TEXT,
    depends_on     TEXT,
    status         TEXT,
    status_reason  TEXT NOT NULL DEFAULT '',
    created_at     REAL,
    started_at     REAL,
    stopped_at     REAL,
    attempt        INTEGER NOT NULL DEFAULT 0,
    exit_code      INTEGER,
    compute        TEXT,
    host           TEXT,
    log_path       TEXT,
    external_id    TEXT
);
CREATE INDEX jobs_by_parent ON jobs (parent_id, status);

CREATE TABLE attempts (
    job_id        TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    run_id        TEXT NOT NULL,
    started_at    REAL,
    stopped_at    REAL,
    exit_code     INTEGER,
    reason        TEXT,
    status_reason TEXT,
    log_path      TEXT,
    compute       TEXT,
    host          TEXT,
    external_id   TEXT,
    PRIMARY KEY (job_id, attempt)
) WITHOUT ROWID;

-- Every state change as reported, in order; `applied` is 0 for a change the
-- transition table does not allow (kept for diagnosis, never applied to the job).
CREATE TABLE events (
    seq       INTEGER PRIMARY KEY,
    run_id    TEXT NOT NULL,
    job_id    TEXT NOT NULL,
    state     TEXT NOT NULL,
    time      REAL NOT NULL,
    reason    TEXT NOT NULL,
    attempt   INTEGER NOT NULL,
    exit_code INTEGER,
    applied   INTEGER NOT NULL
);
CREATE INDEX events_by_job ON events (job_id, seq);

CREATE TABLE requests (
    seq        INTEGER PRIMARY KEY,
    run_id     TEXT NOT NULL,
    job_id     TEXT NOT NULL,
    action     TEXT NOT NULL,
    reason     TEXT NOT NULL,
    created_at REAL NOT NULL,
    taken      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX requests_open ON requests (run_id, taken);
"""

# v2 (resume): what each success was made of, and the top-level jobs of a run found
# without a scan. The index is partial so that the children's inserts never pay for it.
_V2: Final = """
ALTER TABLE jobs ADD COLUMN fingerprint TEXT;
CREATE INDEX jobs_by_run ON jobs (run_id) WHERE parent_id IS NULL;
"""

# v3: each attempt's peak memory (MiB), where the executor can measure it.
_V3: Final = """
ALTER TABLE attempts ADD COLUMN peak_memory INTEGER;
"""

# v4: who owns a run, so that a run whose runner died is found out instead of reading
# RUNNING for ever: `owner` is the runner as `pid@starttime` (flowbatch.executors.processes),
# `boot_id` the kernel's boot id (a pid and start time repeat across reboots), and
# `reason` says why a run ended as it did (runner lost, job database not writable), and
# `computes` maps its compute environments to their types, so that an attempt left
# running by a lost runner can be stopped by what it is (a process group, a SLURM job).
_V4: Final = """
ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE runs ADD COLUMN boot_id TEXT;
ALTER TABLE runs ADD COLUMN reason TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN computes TEXT;
"""

# v5 (flowbatch server): the service's catalog, each resource as the JSON of its AWS
# shape (what Describe* returns, so that nothing is lost between the API and the disk),
# plus each SubmitJob request as accepted (what a restarted server rebuilds the job
# from), and the index ListJobs reads by queue and status.
_V5: Final = """
CREATE TABLE catalog (
    kind       TEXT NOT NULL,      -- compute_environment | job_queue | job_definition
    name       TEXT NOT NULL,      -- the name, and a definition's is NAME:REVISION
    arn        TEXT NOT NULL UNIQUE,
    body       TEXT NOT NULL,      -- the AWS shape, JSON
    updated_at REAL NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;

CREATE TABLE submissions (
    job_id     TEXT PRIMARY KEY,
    run_id     TEXT NOT NULL,
    request    TEXT NOT NULL,      -- the SubmitJob request, JSON, after validation
    definition TEXT NOT NULL,      -- the definition's ARN it was submitted with
    tags       TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
) WITHOUT ROWID;

CREATE INDEX jobs_by_queue ON jobs (queue, status, seq) WHERE parent_id IS NULL;
"""

MIGRATIONS: Final[tuple[str, ...]] = (_V1, _V2, _V3, _V4, _V5)
SCHEMA_VERSION: Final = len(MIGRATIONS)


_P = ParamSpec("_P")
_R = TypeVar("_R")
_S = TypeVar("_S", bound="_HasPath")


class _HasPath(Protocol):
    path: Path


def reads(method: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """A method of a store (anything with `.path`) whose SQLite errors while reading (a
    corrupted page, a file swapped underneath) leave as StoreError naming the database,
    never as a traceback."""

    @functools.wraps(method)
    def wrapper(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreError(f"job database `{self.path}` cannot be read: {exc}") from None

    return wrapper


def open_database(
    db_path: Path, *, create: bool, busy_timeout: float = BUSY_TIMEOUT_SECONDS
) -> tuple[sqlite3.Connection, bool]:
    """The job database at `db_path` and whether it is read-only: created (with its
    directory) unless `create` is False, in which case a missing database raises
    StoreError and one that cannot be written is opened read-only. What is created is
    private to its user (0700 directory, 0600 database) whatever the umask."""
    state_dir = db_path.parent
    shown = str(db_path)
    if db_path.is_dir():
        raise StoreError(
            f"`{db_path}` is a directory, not a job database: move it away, or give"
            " another --state-dir"
        )
    if not create and not db_path.exists():
        raise StoreError(f"no job database at `{db_path}`: nothing has run here yet")
    read_only = False
    try:
        if create:
            private_dirs(state_dir)
        private_file(db_path)
    except OSError as exc:
        if create or not db_path.is_file():
            what = "state directory" if create else "job database"
            where = state_dir if create else db_path
            raise StoreError(
                f"cannot write the {what} `{where}`: {exc.strerror or exc}", read_only=True
            ) from None
        read_only = True
    try:
        conn = connect(db_path, shown_as=shown, busy_timeout=busy_timeout, read_only=read_only)
    except StoreError as err:
        if create or read_only or not err.read_only:
            raise
        read_only = True
        conn = connect(db_path, shown_as=shown, read_only=True)
    return conn, read_only


def connect(
    db_path: Path,
    *,
    shown_as: str,
    busy_timeout: float = BUSY_TIMEOUT_SECONDS,
    read_only: bool = False,
) -> sqlite3.Connection:
    """An open connection to `db_path`, created and migrated to SCHEMA_VERSION.

    `shown_as` is how messages name the file; `busy_timeout` is how long to wait for
    another process's write transaction. With `read_only` the file is only read
    (`mode=ro`, or `immutable` where even the WAL's shared memory cannot be made, as
    in a read-only directory with no writer) and must already be at SCHEMA_VERSION.
    Raises StoreError for a database from a newer flowbatch, a file that is not a job
    database, or one that cannot be opened.
    """
    if read_only:
        return _connect_read_only(db_path, shown_as)
    try:
        conn = sqlite3.connect(
            db_path,
            timeout=busy_timeout,
            isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE ... COMMIT
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise StoreError(f"job database `{shown_as}` cannot be opened: {exc}") from None
    try:
        _set_up(conn, shown_as, deadline=time.monotonic() + busy_timeout)
    except sqlite3.DatabaseError as exc:
        conn.close()
        # SQLITE_READONLY, or SQLITE_CANTOPEN for the WAL files of a read-only directory
        read_only = getattr(exc, "sqlite_errorcode", 0) & 0xFF in (8, 14)
        message = f"job database `{shown_as}` cannot be read: {exc}"
        raise StoreError(message, read_only=read_only) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_read_only(db_path: Path, shown_as: str) -> sqlite3.Connection:
    uri = "file:" + urllib.parse.quote(str(db_path.absolute()))
    last: sqlite3.Error | None = None
    # `mode=ro` sees a live writer's WAL; `immutable` needs no -shm file (a read-only
    # directory whose last writer closed cleanly has none and none can be made).
    for flags in ("mode=ro", "mode=ro&immutable=1"):
        conn = sqlite3.connect(
            f"{uri}?{flags}", uri=True, isolation_level=None, check_same_thread=False
        )
        try:
            version = _version(conn)
        except sqlite3.Error as exc:
            conn.close()
            last = exc
            continue
        _refuse_newer(version, shown_as)
        if version < SCHEMA_VERSION:
            conn.close()
            raise StoreError(
                f"job database `{shown_as}` is schema v{version} and cannot be upgraded "
                f"to v{SCHEMA_VERSION}: it is read-only here"
            )
        return conn
    raise StoreError(f"job database `{shown_as}` cannot be read: {last}")


def _set_up(conn: sqlite3.Connection, shown_as: str, *, deadline: float) -> None:
    """WAL mode, then the schema. Two processes that open a new state directory at once
    can be told "database is locked" at once, without SQLite's busy handler (seen
    under load: the busy timeout covers waiting for a lock, not every way of losing a
    race for one), so a locked database is tried again until the busy timeout is up."""
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL never corrupts on a crash; a killed process loses at
            # most its open transaction.
            conn.execute("PRAGMA synchronous=NORMAL")
            _migrate(conn, shown_as)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)  # back off as SQLite's own busy handler does


def _version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def _refuse_newer(version: int, shown_as: str) -> None:
    if version > SCHEMA_VERSION:
        raise NewerSchema(shown_as, version, SCHEMA_VERSION)


def _migrate(conn: sqlite3.Connection, shown_as: str) -> None:
    version = _version(conn)
    _refuse_newer(version, shown_as)
    if version == SCHEMA_VERSION:
        return
    # Another process may be migrating the same file: take the write lock first and
    # read the version again under it.
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _version(conn)
        _refuse_newer(version, shown_as)
        for script in MIGRATIONS[version:]:
            for statement in _statements(script):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT our open transaction; run statement by statement so
    # a migration is all or nothing.
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def private_dirs(path: Path) -> None:
    """Create `path` and any missing parent 0700, whatever the umask (mkdir's mode is
    masked by it, and only ever narrowed)."""
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for p in reversed(missing):
        try:
            p.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made by another process meanwhile


def private_file(db_path: Path) -> None:
    """Create the database file 0600 before SQLite does (SQLite uses 0644 less the
    umask, and gives its -wal, -shm and -journal files the database's mode), or
    narrow an existing one of this user that others can read. OSError if the file
    cannot be opened for writing."""
    fd = os.open(db_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        side = db_path.with_name(db_path.name + suffix)
        try:
            st = side.stat()
            if st.st_uid == os.geteuid() and st.st_mode & 0o077:
                side.chmod(0o600)
        except OSError:
            continue


class Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error: the write lock is taken
    up front so that two writers never deadlock upgrading a read lock. SQLite's errors
    (a lock held too long, a full disk) leave as StoreError."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._path = path

    def __enter__(self) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to `{self._path}`: {exc}") from None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self._conn.execute("COMMIT")
                return
            except sqlite3.Error as err:
                exc = err
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"cannot write to `{self._path}`: {exc}") from None
