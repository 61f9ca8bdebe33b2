"""`flowbatch run`, `cancel` and `terminate` as a user runs them: real subprocesses,
a second process for control, SIGINT and kill -9 mid-run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from proc_helpers import Spawner, alive, wait_for

from flowbatch.cli import app
from flowbatch.executors.base import GRACE_SECONDS
from flowbatch.executors.processes import Process
from flowbatch.store.jobstore import DB_NAME, Store

pytestmark = pytest.mark.slow


def start(spawn: Spawner, tmp: Path, text: str, *extra: str) -> subprocess.Popen[str]:
    (tmp / "p.flow").write_text(text)
    return spawn(
        [sys.executable, "-m", "flowbatch", "run", str(tmp / "p.flow"), *extra],
        cwd=tmp,  # the state directory is ./.flowbatch of the directory run from
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def flowbatch(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowbatch", *args, "--state-dir", str(tmp / ".flowbatch")],
        capture_output=True,
        text=True,
        timeout=120,
    )


def running_pids(tmp: Path) -> list[int]:
    return [int(p.read_text()) for p in tmp.glob("pid-*") if p.read_text().strip()]


def stored_children(tmp: Path, name: str = "s") -> list[dict[str, object]]:
    """The children of array job `name` as the store has them (none before it exists)."""
    if not (tmp / ".flowbatch" / DB_NAME).exists():
        return []
    with Store.open(tmp / ".flowbatch", create=False) as store:
        parent = next((j for j in store.jobs() if j["jobName"] == name), None)
        return [] if parent is None else store.jobs(parent=parent["jobId"])


def stored_running(tmp: Path, at_least: int = 1) -> bool:
    return sum(c["status"] == "RUNNING" for c in stored_children(tmp)) >= at_least


def leaders(tmp: Path) -> list[Process]:
    """The recorded process-group leader (`pid@starttime`) of every attempt."""
    conn = sqlite3.connect(tmp / ".flowbatch" / DB_NAME)
    try:
        ids = [str(r[0]) for r in conn.execute("SELECT external_id FROM attempts")]
    finally:
        conn.close()
    found = [Process.parse(i) for i in ids]
    assert all(p is not None and p.ticks is not None for p in found), ids
    return [p for p in found if p is not None]


SLEEPERS = 'job s {\n  command = "echo $$ > pid-$AWS_BATCH_JOB_ARRAY_INDEX; exec sleep 60"\n'
SLEEPERS += '  array = 4\n}\njob after {\n  command = "true"\n  after = [s]\n}\n'


def test_exit_codes_and_failure_reason(tmp_path: Path, spawn: Spawner) -> None:
    proc = start(
        spawn,
        tmp_path,
        'job a {\n  command = "exit 3"\n}\njob b {\n  command = "true"\n  after = [a]\n}\n',
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "Dependency failed: a (job " in err and "exited with code 3" in err
    bad = start(spawn, tmp_path, "job {\n")
    bad.communicate(timeout=60)
    assert bad.returncode == 2


def test_sigint_terminates_jobs_and_leaves_a_consistent_store(
    tmp_path: Path, spawn: Spawner
) -> None:
    proc = start(spawn, tmp_path, SLEEPERS)
    wait_for(lambda: stored_running(tmp_path, at_least=2))
    pids = leaders(tmp_path)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    wait_for(lambda: not any(p.alive() for p in pids), timeout=5)
    store = Store.open(tmp_path / ".flowbatch")
    try:
        run = store.runs()[0]
        assert run["status"] == "INTERRUPTED"
        for job in store.jobs(run_id=run["runId"]):
            assert store.describe(job["jobId"])["status"] == "FAILED"
    finally:
        store.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_end_a_run_as_interrupted(
    tmp_path: Path, spawn: Spawner, sig: signal.Signals
) -> None:
    # Issue 9 item 5: SIGHUP (a closed terminal) used to kill the runner outright and
    # leave its jobs RUNNING in the store.
    proc = start(spawn, tmp_path, SLEEPERS)
    wait_for(lambda: stored_running(tmp_path, at_least=2))
    pids = leaders(tmp_path)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert f"interrupted ({sig.name})" in err
    wait_for(lambda: not any(p.alive() for p in pids), timeout=5)
    with Store.open(tmp_path / ".flowbatch", create=False) as store:
        assert store.runs()[0]["status"] == "INTERRUPTED"
        assert {c["status"] for c in stored_children(tmp_path)} == {"FAILED"}


def test_terminate_from_another_process(tmp_path: Path, spawn: Spawner) -> None:
    # Issue 9 item 9: waited for pid files, not for the store, so `cancel` could reach
    # child 0 before the store had it RUNNING (and the run leaked when it failed).
    proc = start(spawn, tmp_path, SLEEPERS)
    wait_for(lambda: stored_running(tmp_path, at_least=2))
    children = stored_children(tmp_path)
    first = next(c for c in children if c["status"] == "RUNNING")["jobId"]
    parent = str(first).rpartition(":")[0]
    cancel = flowbatch(tmp_path, "cancel", str(first))
    assert cancel.returncode == 1 and "flowbatch terminate" in cancel.stderr, cancel.stderr
    term = flowbatch(tmp_path, "terminate", parent, "--reason", "enough")
    assert term.returncode == 0, term.stderr
    assert f"job {parent} terminated" in term.stderr
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "enough" in err
    assert not any(p.alive() for p in leaders(tmp_path))


def test_kill_9_leaves_a_store_that_describes_every_job(tmp_path: Path, spawn: Spawner) -> None:
    proc = start(spawn, tmp_path, SLEEPERS)
    wait_for(lambda: stored_running(tmp_path, at_least=2))  # a flush recorded them running
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    store = Store.open(tmp_path / ".flowbatch")
    try:
        jobs = store.jobs()
        assert {j["jobName"] for j in jobs} >= {"s", "after"}
        for job in jobs:
            assert store.describe(job["jobId"])["jobName"] == job["jobName"]
    finally:
        store.close()


STUBBORN = "job stubborn {\n  command = \"trap '' TERM; echo $$ > job.pid; exec sleep 30\"\n}\n"


def test_a_second_sigint_kills_jobs_that_ignore_sigterm(tmp_path: Path, spawn: Spawner) -> None:
    proc = start(spawn, tmp_path, STUBBORN)
    pid_file = tmp_path / "job.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"))
    pid = int(pid_file.read_text())
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)  # the scenario: a user presses Ctrl-C again during the grace period
    assert alive(pid)  # it ignores SIGTERM: the first signal leaves it its grace period
    proc.send_signal(signal.SIGINT)
    # Without the second signal flowbatch would wait out the whole grace period first.
    _, err = proc.communicate(timeout=GRACE_SECONDS * 0.8)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    wait_for(lambda: not alive(pid), timeout=5)
    store = Store.open(tmp_path / ".flowbatch")
    try:
        run = store.runs()[0]
        assert run["status"] == "INTERRUPTED"
        job = store.describe(store.jobs(run_id=run["runId"])[0]["jobId"])
        assert job["status"] == "FAILED" and "SIGINT" in job["statusReason"]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("override", "unknown"), [("local=lcoal", "lcoal"), ("lcoal=local", "lcoal")]
)
def test_a_compute_override_naming_no_environment_records_nothing(
    tmp_path: Path, override: str, unknown: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.flow").write_text('job a {\n  command = "true"\n}\n')
    result = CliRunner().invoke(app, ["run", str(tmp_path / "p.flow"), "--compute", override])
    assert result.exit_code == 2
    assert f"no compute environment `{unknown}`" in result.output
    assert "did you mean `local`?" in result.output
    assert not (tmp_path / ".flowbatch").exists()  # no run became "latest"


def test_a_locked_database_is_an_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.flow").write_text('job a {\n  command = "true"\n}\n')
    Store.open(tmp_path / ".flowbatch").close()
    holder = sqlite3.connect(tmp_path / ".flowbatch" / DB_NAME, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        args = ["run", str(tmp_path / "p.flow"), "--busy-timeout", "0.05"]
        result = CliRunner().invoke(app, args)
    finally:
        holder.close()
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "error:" in result.output and "locked" in result.output


def test_two_runs_on_one_state_dir_at_once_both_work(tmp_path: Path, spawn: Spawner) -> None:
    # Two pipelines, one state directory, run at the same time: both succeed and the
    # store holds both runs whole (WAL, short write transactions, busy timeouts).
    state = tmp_path / "state"
    procs = []
    for name in ("one", "two"):
        work = tmp_path / name
        work.mkdir()
        (work / "p.flow").write_text(
            'job fan {\n  command = "echo {{ array.index }} > out-{{ array.index }}"\n'
            '  array = 60\n}\njob done {\n  command = "true"\n  after = [fan]\n}\n'
        )
        procs.append(spawn(
            [sys.executable, "-m", "flowbatch", "run", str(work / "p.flow"),
             "--state-dir", str(state)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with Store.open(state, create=False) as store:
        runs = store.runs()
        assert [r["status"] for r in runs] == ["SUCCEEDED", "SUCCEEDED"]
        for run in runs:
            jobs = store.jobs(run_id=run["runId"])
            assert {j["jobName"]: j["status"] for j in jobs} == {
                "fan": "SUCCEEDED", "done": "SUCCEEDED"
            }  # fmt: skip
            fan = next(j for j in jobs if j["jobName"] == "fan")
            assert fan["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 60
    assert (state / DB_NAME).exists()
    conn = sqlite3.connect(state / DB_NAME)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
