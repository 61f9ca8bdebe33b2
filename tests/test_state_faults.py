"""The state directory under faults (issue 9 items 4, 7 and 11): private whatever the
umask; a job database that is a directory, corrupted, read-only or on a full disk gives
one clear error (exit 2 for bad state, 1 for a run that could not finish) and a true
record; finished runs are kept 24 hours by default."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from engine_helpers import engine_unavailable
from proc_helpers import run_to_end

from flowbatch.cli import app
from flowbatch.store.jobstore import DB_NAME, Store, StoreError

ONE_JOB = 'job a {\n  command = "echo hello"\n}\n'


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def run_once(where: Path, text: str = ONE_JOB) -> str:
    """Run `text` in-process with its state in `where/state`; the run's id."""
    (where / "p.flow").write_text(text)
    result = cli("run", str(where / "p.flow"), "--state-dir", str(where / "state"))
    assert result.exit_code in (0, 1), result.output
    with Store.open(where / "state", create=False) as store:
        run_id = store.latest_run()
    assert run_id is not None
    return run_id


def no_traceback(result: Result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- item 4: private state ----------------------------------------------------------------
@pytest.mark.slow
def test_issue_9_state_is_private_under_umask_022(tmp_path: Path) -> None:
    with umask(0o022):
        run_id = run_once(tmp_path, 'job a {\n  command = "echo secret"\n  array = 2\n}\n')
        state = tmp_path / "state"
        with Store.open(state, create=False):  # an open store has its -wal and -shm
            sides = [state / f"{DB_NAME}{s}" for s in ("-wal", "-shm")]
            assert all(p.exists() for p in sides)
            assert {p.name: mode(p) for p in sides} == {p.name: 0o600 for p in sides}
    assert mode(state) == 0o700 and mode(state / DB_NAME) == 0o600
    logs = state / "logs"
    assert [p for p in logs.rglob("*") if p.is_dir()] == [logs / run_id]  # none per attempt
    assert mode(logs) == mode(logs / run_id) == 0o700
    files = list((logs / run_id).iterdir())
    assert len(files) == 4 and {mode(p) for p in files} == {0o600}  # two children's two logs
    assert (logs / run_id / "a.0.attempt-1.stdout").read_text() == "secret\n"


def test_a_database_others_could_read_is_made_private(tmp_path: Path) -> None:
    Store.open(tmp_path / "state").close()
    (tmp_path / "state" / DB_NAME).chmod(0o644)
    Store.open(tmp_path / "state").close()
    assert mode(tmp_path / "state" / DB_NAME) == 0o600


# -- item 7: bad state is one clear error -------------------------------------------------
READERS = [
    ("jobs",),
    ("runs",),
    ("describe", "some-id"),
    ("logs", "some-id"),
    ("report", "latest", "-o", "{tmp}/r.html"),
]


@pytest.mark.parametrize("args", READERS, ids=lambda a: a[0])
def test_issue_9_a_directory_named_jobs_db_is_one_clear_error(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    (tmp_path / "state" / DB_NAME).mkdir(parents=True)
    argv = [a.format(tmp=tmp_path) for a in args]
    result = cli(*argv, "--state-dir", str(tmp_path / "state"))
    no_traceback(result)
    assert result.exit_code == 2
    assert "is a directory, not a job database" in result.output


def test_a_directory_named_jobs_db_stops_a_run_before_it_starts(tmp_path: Path) -> None:
    (tmp_path / "state" / DB_NAME).mkdir(parents=True)
    (tmp_path / "p.flow").write_text(ONE_JOB)
    result = cli("run", str(tmp_path / "p.flow"), "--state-dir", str(tmp_path / "state"))
    no_traceback(result)
    assert result.exit_code == 2 and "is a directory" in result.output


@pytest.mark.parametrize("args", READERS, ids=lambda a: a[0])
def test_issue_9_a_file_that_is_no_database_is_one_clear_error(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / DB_NAME).write_bytes(b"not a database at all\n" * 300)
    argv = [a.format(tmp=tmp_path) for a in args]
    result = cli(*argv, "--state-dir", str(tmp_path / "state"))
    no_traceback(result)
    assert result.exit_code == 2
    assert "cannot be read: file is not a database" in result.output


@pytest.mark.slow
def test_issue_9_a_database_corrupted_past_its_header_is_one_clear_error(tmp_path: Path) -> None:
    run_once(tmp_path, 'job a {\n  command = "true"\n  array = 300\n}\n')
    db = tmp_path / "state" / DB_NAME
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()
    size = db.stat().st_size
    assert size > 8 * 4096
    with db.open("r+b") as f:  # keep the header and schema page; ruin the tables
        f.seek(2 * 4096)
        f.write(b"\xa5" * (size - 2 * 4096))
    for args in (("jobs",), ("runs",)):
        result = cli(*args, "--state-dir", str(tmp_path / "state"))
        no_traceback(result)
        assert result.exit_code == 2, result.output
        assert f"job database `{db}` cannot be read" in result.output


# A real file system that is full or read-only: a small tmpfs, mounted for the test.
@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "mnt"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        engine_unavailable("tmpfs mounts", mounted.stderr.strip() or "mount failed (root?)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def remount(where: Path, option: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{option}", str(where)], check=True)


@pytest.mark.slow
def test_issue_9_a_read_only_state_directory_can_still_be_read(tmp_path: Path, tmpfs: Path) -> None:
    run_id = run_once(tmpfs)
    state = str(tmpfs / "state")
    with Store.open(tmpfs / "state", create=False) as store:
        job_id = store.jobs()[0]["jobId"]
    remount(tmpfs, "ro")
    jobs = cli("jobs", "--json", "--state-dir", state)
    assert jobs.exit_code == 0, jobs.output
    assert [j["status"] for j in json.loads(jobs.output)["jobSummaryList"]] == ["SUCCEEDED"]
    described = cli("describe", job_id, "--state-dir", state)
    assert described.exit_code == 0 and '"status": "SUCCEEDED"' in described.output
    runs = cli("runs", "--state-dir", state)
    assert runs.exit_code == 0 and run_id in runs.output and "SUCCEEDED" in runs.output
    logs = cli("logs", job_id, "--state-dir", state)
    assert logs.exit_code == 0 and logs.output == "hello\n"
    report = cli("report", run_id, "-o", str(tmp_path / "r.html"), "--state-dir", state)
    assert report.exit_code == 0, report.output
    assert run_id in (tmp_path / "r.html").read_text()
    # A run cannot keep a record there: it says so before anything runs.
    again = cli("run", str(tmpfs / "p.flow"), "--state-dir", state)
    no_traceback(again)
    assert again.exit_code == 2 and "error:" in again.output and "Read-only" in again.output


FILLS_THE_DISK = """
job fill {
  command = "head -c 8m /dev/zero > state/filler; echo filled"
}
job after {
  command = "echo never"
  after = [fill]
}
"""


@pytest.mark.slow
def test_issue_9_a_full_disk_mid_run_is_one_error_and_a_true_record(tmpfs: Path) -> None:
    state = tmpfs / "state"
    (tmpfs / "p.flow").write_text(FILLS_THE_DISK)
    done = run_to_end(
        [sys.executable, "-m", "flowbatch", "run", str(tmpfs / "p.flow"),
         "--state-dir", str(state)],
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "ExceptionGroup" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "full" in errors[0], done.stderr
    (state / "filler").unlink()
    runs = cli("runs", "--json", "--state-dir", str(state))
    assert runs.exit_code == 0, runs.output
    (run,) = json.loads(runs.output)["runs"]
    # The space set aside while the run wrote was given back to record why it stopped.
    assert run["status"] == "FAILED" and "disk is full" in run["statusReason"]
    jobs = cli("jobs", "--json", "--state-dir", str(state))
    found = {j["jobName"]: j for j in json.loads(jobs.output)["jobSummaryList"]}
    assert found["fill"]["status"] == "FAILED" and found["fill"]["attempts"] == 1
    assert found["after"]["status"] == "FAILED"
    assert not (tmpfs / "never").exists()


@pytest.mark.slow
def test_issue_9_a_store_that_fails_mid_run_stops_it_with_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The write boundary fails as a full disk does, from the second flush on.
    calls = []
    real_flush = Store.flush

    def flush(self: Store) -> None:
        if self._buffer:
            calls.append(1)
            if len(calls) >= 2:
                raise StoreError(f"cannot write to `{self.path}`: database or disk is full")
        real_flush(self)

    monkeypatch.setattr(Store, "flush", flush)
    (tmp_path / "p.flow").write_text(
        'job a {\n  command = "sleep 0.5"\n}\njob b {\n  command = "true"\n  after = [a]\n}\n'
    )
    result = cli("run", str(tmp_path / "p.flow"), "--state-dir", str(tmp_path / "state"))
    no_traceback(result)
    assert result.exit_code == 1, result.output
    assert result.output.count("error:") == 1 and "disk is full" in result.output
    monkeypatch.undo()
    with Store.open(tmp_path / "state", create=False) as store:
        (run,) = store.runs()
        assert run["status"] == "FAILED" and "disk is full" in run["statusReason"]
        jobs = {j["jobName"]: j for j in store.jobs()}
        assert {j["status"] for j in jobs.values()} == {"FAILED"}
        assert all("disk is full" in j["statusReason"] for j in jobs.values())


# -- item 11: retention ---------------------------------------------------------------------
def test_issue_9_finished_runs_are_kept_24_hours_by_default(tmp_path: Path) -> None:
    from flowbatch.lang.model import Pipeline

    state = tmp_path / "state"
    now = time.time()
    with Store.open(state) as store:
        for run_id, hours in (("old", 25), ("recent", 23)):
            empty = Pipeline(path="x.flow", params={}, computes={}, queues={}, jobs={})
            store.begin_run(run_id, empty, {}, created_at=now - hours * 3600)
            store.end_run(run_id, "SUCCEEDED", ended_at=now - hours * 3600)
    run_once(tmp_path)
    with Store.open(state, create=False) as store:
        kept = [r["runId"] for r in store.runs()]
    assert "old" not in kept and "recent" in kept and len(kept) == 2
