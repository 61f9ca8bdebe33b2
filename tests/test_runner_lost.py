"""A runner that dies must not leave lies behind (issue 9 item 5): a run whose runner is
gone is recorded FAILED with a reason saying so, `logs --follow` stops, `terminate`
stops what the runner left running (never a reused pid), `run --resume` refuses to run
a job whose last attempt may still run; a runner on another machine is not guessed at;
`cancel` says what happened (item 9)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from engine_helpers import engine_unavailable
from proc_helpers import Spawner, wait_for

from flowbatch.cli import app
from flowbatch.cli.control import _act
from flowbatch.executors.processes import Process
from flowbatch.run.state import JobEvent, JobState
from flowbatch.store.jobstore import DB_NAME, RUNNER_LOST, Store


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every command here finds the state directory where it runs (./.flowbatch), as a
    # user's would: the runs start in tmp_path, and so do the commands that look at them.
    monkeypatch.chdir(tmp_path)


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def statuses(state: Path) -> dict[str, tuple[str, str]]:
    with Store.open(state, create=False) as store:
        out = {}
        for job in store.jobs():
            out[job["jobName"]] = (job["status"], job["statusReason"])
            for child in store.jobs(parent=job["jobId"]):
                out[child["jobId"]] = (child["status"], child["statusReason"])
        return out


SLEEPERS = 'job s {\n  command = "echo started; exec sleep 60"\n  array = 2\n}\n'
SLEEPERS += 'job after {\n  command = "true"\n  after = [s]\n}\n'


def children_running(state: Path) -> list[str]:
    if not (state / DB_NAME).exists():
        return []
    with Store.open(state, create=False) as store:
        parent = next((j for j in store.jobs() if j["jobName"] == "s"), None)
        if parent is None:
            return []
        return [c["jobId"] for c in store.jobs(parent=parent["jobId"]) if c["status"] == "RUNNING"]


def kill_strays(state: Path) -> None:
    """Kill what a killed runner left (its jobs' groups, by pid and start time)."""
    if not (state / DB_NAME).exists():
        return
    with Store.open(state, create=False) as store:
        for stray in store.stray_attempts():
            leader = Process.parse(stray.external_id or "")
            if leader is not None and leader.ticks is not None:
                leader.signal_group(signal.SIGKILL)


@pytest.mark.slow
def test_issue_9_a_runner_killed_with_kill_9_is_recorded_lost(
    tmp_path: Path, spawn: Spawner
) -> None:
    state = tmp_path / ".flowbatch"
    (tmp_path / "p.flow").write_text(SLEEPERS)
    runner = spawn(
        [sys.executable, "-m", "flowbatch", "run", str(tmp_path / "p.flow")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _killed_runner(state, runner, spawn)
    finally:
        kill_strays(state)


def _killed_runner(state: Path, runner: subprocess.Popen[bytes], spawn: Spawner) -> None:
    wait_for(lambda: len(children_running(state)) == 2)
    child = children_running(state)[0]
    follow = spawn(
        [sys.executable, "-m", "flowbatch", "logs", child, "--follow", "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.killpg(runner.pid, signal.SIGKILL)  # the runner alone: its jobs have sessions of their own
    runner.wait(timeout=30)
    # `logs --follow` returns by itself once it finds the runner gone.
    out, err = follow.communicate(timeout=30)
    assert follow.returncode == 0, err
    assert out == "started\n" and RUNNER_LOST in err
    runs = cli("runs", "--json", "--state-dir", str(state))
    (run,) = json.loads(runs.output)["runs"]
    assert run["status"] == "FAILED"
    assert run["statusReason"].startswith(f"{RUNNER_LOST}: `flowbatch run` (pid {runner.pid} on ")
    found = statuses(state)
    assert {s for s, _ in found.values()} == {"FAILED"}  # nothing RUNNING for ever
    assert all(r.startswith(RUNNER_LOST) for _, r in found.values())
    # Whatever the machine did with the orphans (a reaper may have killed them),
    # terminate stops what is left and then nothing of the job runs.
    with Store.open(state, create=False) as store:
        leaders = [Process.parse(s.external_id or "") for s in store.stray_attempts(child)]
    assert len(leaders) == 1 and leaders[0] is not None and leaders[0].ticks is not None
    term = cli("terminate", child, "--state-dir", str(state))
    assert term.exit_code == 0, term.output
    assert "its runner was lost" in term.output
    assert not leaders[0].alive()
    with Store.open(state, create=False) as store:
        assert store.stray_attempts(child) == []


# -- a lost run made by hand: a real run, then its record rewritten as a killed runner's --
@pytest.fixture
def sleeper() -> Iterator[Process]:
    """A live process group standing for a job a lost runner left running: like such a
    job, its parent is gone (it is no zombie of ours once it dies); killed in teardown."""
    started = subprocess.run(
        ["sh", "-c", "setsid sleep 60 >/dev/null 2>&1 & echo $!"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    pid = int(started.stdout)

    def leads_its_group() -> bool:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.startswith(f"{pid} (sleep)") and int(stat.rsplit(")", 1)[1].split()[2]) == pid

    proc = Process.of(pid)
    try:
        wait_for(leads_its_group)
        proc = Process.of(pid)
        yield proc
    finally:
        proc.signal_group(signal.SIGKILL)


def lose(state: Path, external_id: str, *, host: str | None = None, boot: str | None = None) -> str:
    """Rewrite the latest run as one whose runner died while its one job ran as
    `external_id`; the job's id."""
    me = Process.of(os.getpid())
    assert me.ticks is not None
    dead = f"{me.pid}@{me.ticks + 1}"  # this pid, another start time: another process
    conn = sqlite3.connect(state / DB_NAME, isolation_level=None)
    try:
        (run_id,) = conn.execute("SELECT run_id FROM runs").fetchone()
        conn.execute(
            "UPDATE runs SET status = NULL, ended_at = NULL, owner = ?, pid = ?,"
            " hostname = COALESCE(?, hostname), boot_id = COALESCE(?, boot_id)",
            (dead, me.pid, host, boot),
        )
        conn.execute("UPDATE jobs SET status = 'RUNNING', status_reason = ''")
        conn.execute(
            "UPDATE attempts SET stopped_at = NULL, exit_code = NULL, external_id = ?",
            (external_id,),
        )
        (job_id,) = conn.execute("SELECT job_id FROM jobs WHERE run_id = ?", (run_id,)).fetchone()
    finally:
        conn.close()
    return str(job_id)


def first_run(tmp_path: Path) -> Path:
    (tmp_path / "p.flow").write_text('job a {\n  command = "echo ran >> ran.txt"\n}\n')
    result = cli("run", str(tmp_path / "p.flow"))
    assert result.exit_code == 0, result.output
    return tmp_path / ".flowbatch"


def resume(tmp_path: Path) -> Result:
    return cli("run", str(tmp_path / "p.flow"), "--resume")


@pytest.mark.slow
def test_issue_9_resume_never_runs_a_job_beside_its_attempt_that_may_still_run(
    tmp_path: Path, sleeper: Process, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    state = first_run(tmp_path)
    job_id = lose(state, str(sleeper))
    refused = resume(tmp_path)
    assert refused.exit_code == 2, refused.output
    assert job_id in refused.output and "may still be running" in refused.output
    assert "flowbatch terminate" in refused.output
    assert (tmp_path / "ran.txt").read_text() == "ran\n"  # not run again
    term = cli("terminate", job_id)
    assert term.exit_code == 0, term.output
    assert f"process group {sleeper.pid}" in term.output
    # Its own lines are lines, not a newline written out as `\\n`.
    assert "\\n" not in term.output
    assert f"job {job_id}: its runner was lost" in term.output.splitlines()
    wait_for(lambda: not sleeper.alive())
    again = resume(tmp_path)
    assert again.exit_code == 0, again.output
    assert (tmp_path / "ran.txt").read_text() == "ran\nran\n"


@pytest.mark.slow
def test_a_stray_found_dead_does_not_hold_resume_back(
    tmp_path: Path, spawn: Spawner, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = spawn(["sleep", "60"])
    leader = Process.of(gone.pid)
    gone.kill()
    gone.wait(timeout=30)
    monkeypatch.chdir(tmp_path)
    state = first_run(tmp_path)
    lose(state, str(leader))
    again = resume(tmp_path)
    assert again.exit_code == 0, again.output


@pytest.mark.slow
def test_a_pid_recorded_without_its_start_time_is_never_signalled(
    tmp_path: Path, sleeper: Process, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    state = first_run(tmp_path)
    job_id = lose(state, str(sleeper.pid))  # as runs before v4 recorded it
    term = cli("terminate", job_id)
    assert term.exit_code == 1 and "cannot be stopped from here" in term.output
    assert "\\n" not in term.output and len(term.output.splitlines()) == 3
    assert sleeper.alive()
    assert resume(tmp_path).exit_code == 2  # may still run: it could be the job


def test_a_run_whose_machine_restarted_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    state = first_run(tmp_path)
    lose(state, "1@1", boot="another-boot")
    runs = json.loads(cli("runs", "--json").output)["runs"]
    assert runs[0]["status"] == "FAILED" and runs[0]["statusReason"].startswith(RUNNER_LOST)
    assert resume(tmp_path).exit_code == 0  # its local attempts died with the machine


def test_a_run_in_another_pid_namespace_is_not_guessed_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A runner in a container sharing the state directory (and the hostname): its pid
    # means nothing here.
    monkeypatch.chdir(tmp_path)
    state = first_run(tmp_path)
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    lose(state, "1@1", boot=f"{boot} pid:[1]")
    runs = json.loads(cli("runs", "--json").output)["runs"]
    assert runs[0]["status"] == "UNKNOWN"
    assert {s for s, _ in statuses(state).values()} == {"RUNNING"}


def test_a_run_on_another_machine_is_not_guessed_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    state = first_run(tmp_path)
    other = socket.gethostname() + "-elsewhere"
    lose(state, "1@1", host=other)
    runs = json.loads(cli("runs", "--json").output)["runs"]
    assert runs[0]["status"] == "UNKNOWN"
    assert runs[0]["statusReason"].startswith(f"its runner is on {other}")
    assert {s for s, _ in statuses(state).values()} == {"RUNNING"}  # left as recorded


# -- item 9: cancel answers with what happened --------------------------------------------
RUN = "r1"


def _store_with_one_job(tmp_path: Path) -> tuple[Store, str]:
    from flowbatch.lang.model import JobSpec, Pipeline, local_compute

    pipeline = Pipeline(
        path="p.flow",
        params={},
        computes={"local": local_compute(1, 1024)},
        queues={},
        jobs={"j": JobSpec(name="j", command="true")},
    )
    store = Store.open(tmp_path / "state")
    store.begin_run(RUN, pipeline, {"j": "id-j"}, created_at=1.0)
    for state in (JobState.SUBMITTED, JobState.RUNNABLE):
        store.emit(JobEvent(run_id=RUN, job_id="id-j", name="j", index=None, state=state, time=1))
    store.flush()
    return store, "id-j"


def _runner(store: Store, *moves: JobState) -> threading.Thread:
    """Play the runner: take the requests once they come, apply `moves` (what the
    runner did meanwhile), and flush, which acknowledges them."""

    def play() -> None:
        wait_for(lambda: bool(store.take_requests(RUN)))
        for n, state in enumerate(moves):
            store.emit(
                JobEvent(run_id=RUN, job_id="id-j", name="j", index=None, state=state,
                         time=2 + n, attempt=1, reason="Job cancelled by user"
                         if state is JobState.FAILED else "")
            )  # fmt: skip
        store.flush()

    return threading.Thread(target=play)


@pytest.mark.parametrize(
    ("moves", "code", "said"),
    [
        # The runner had placed and started it before it read the request.
        ((JobState.STARTING, JobState.RUNNING), 1, "had already started (RUNNING)"),
        ((JobState.FAILED,), 0, "job id-j cancelled"),
    ],
)
def test_issue_9_cancel_says_what_happened(
    tmp_path: Path, moves: tuple[JobState, ...], code: int, said: str
) -> None:
    store, job_id = _store_with_one_job(tmp_path)
    reader = Store.open(tmp_path / "state", create=False)
    try:
        runner = _runner(store, *moves)
        runner.start()
        try:
            got = _act(reader, job_id, "cancel", "Job cancelled by user", wait=30)
        finally:
            runner.join(timeout=30)
    finally:
        reader.close()
        store.close()
    assert got[0] == code and said in got[1], got


@pytest.mark.slow
@pytest.mark.slurm
def test_terminate_scancels_the_slurm_job_a_lost_runner_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("sbatch") is None:
        engine_unavailable("slurm", "sbatch is not on PATH")
    partition = os.environ.get("FLOWBATCH_TEST_SLURM_PARTITION", "")
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--chdir", "/tmp", "-o", "/dev/null",
         *(["-p", partition] if partition else []), "--wrap", "sleep 120"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if submitted.returncode != 0:
        engine_unavailable("slurm", f"sbatch failed: {submitted.stderr.strip()}")
    slurm_id = submitted.stdout.strip().split(";")[0]
    try:
        monkeypatch.chdir(tmp_path)
        state = first_run(tmp_path)
        job_id = lose(state, slurm_id)
        conn = sqlite3.connect(state / DB_NAME, isolation_level=None)
        try:
            conn.execute("""UPDATE runs SET computes = '{"local": "slurm"}'""")
        finally:
            conn.close()
        refused = resume(tmp_path)
        assert refused.exit_code == 2 and f"slurm `local`, {slurm_id}" in refused.output
        term = cli("terminate", job_id)
        assert term.exit_code == 0 and f"SLURM job {slurm_id} cancelled" in term.output
        assert resume(tmp_path).exit_code == 0
    finally:
        subprocess.run(["scancel", slurm_id], capture_output=True, timeout=60)


def _as_a_directory_per_attempt(run_dir: Path) -> None:
    """A run's logs moved to the layout of flowbatch before the flat one, as an older
    runner left them: `NAME[/INDEX]/attempt-N/{stdout,stderr}`."""
    for path in run_dir.iterdir():
        stem, _, stream = path.name.rpartition(".")
        parts = stem.split(".")
        where = run_dir.joinpath(*parts[:-1], parts[-1])
        where.mkdir(parents=True, exist_ok=True)
        path.rename(where / stream)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["flat", "a directory per attempt"])
def test_issue_9_an_attempt_started_but_never_recorded_is_found_when_the_run_is_settled(
    tmp_path: Path, layout: str
) -> None:
    """`kill -9` between an attempt's start and the runner's next flush: the store knows
    no attempt, but its log files hold what it printed. Settling the run as lost
    records the attempt, so `describe` and `logs` do not say it never ran. Logs an older
    flowbatch left (a directory per attempt) are found as well."""
    (tmp_path / "p.flow").write_text(
        'job a {\n  command = "echo printed before the runner died"\n}\n'
        'job s {\n  command = "echo child $AWS_BATCH_JOB_ARRAY_INDEX"\n  array = 2\n}\n'
    )
    result = cli("run", str(tmp_path / "p.flow"))
    assert result.exit_code == 0, result.output
    state = tmp_path / ".flowbatch"
    (run_dir,) = (state / "logs").iterdir()
    assert sorted(p.name for p in run_dir.iterdir()) == [
        f"{stem}.{stream}"
        for stem in ("a.attempt-1", "s.0.attempt-1", "s.1.attempt-1")
        for stream in ("stderr", "stdout")
    ]
    if layout != "flat":
        _as_a_directory_per_attempt(run_dir)
    me = Process.of(os.getpid())
    assert me.ticks is not None
    conn = sqlite3.connect(state / DB_NAME, isolation_level=None)
    try:
        # As the store reads when the runner died before its flush: nothing started.
        conn.execute(
            "UPDATE runs SET status = NULL, ended_at = NULL, owner = ?, pid = ?",
            (f"{me.pid}@{me.ticks + 1}", me.pid),
        )
        conn.execute(
            "UPDATE jobs SET status = 'RUNNABLE', status_reason = '', attempt = 0,"
            " log_path = NULL, started_at = NULL, stopped_at = NULL, exit_code = NULL"
        )
        conn.execute("DELETE FROM attempts")
        ids = dict(conn.execute("SELECT name, job_id FROM jobs WHERE parent_id IS NULL"))
        (child,) = conn.execute(
            "SELECT job_id FROM jobs WHERE parent_id = ? AND array_index = 1", (ids["s"],)
        ).fetchone()
    finally:
        conn.close()
    described = json.loads(cli("describe", ids["a"]).output)
    (job,) = described["jobs"]
    assert job["status"] == "FAILED" and job["statusReason"].startswith(RUNNER_LOST)
    (tried,) = job["attempts"]
    assert tried["statusReason"].startswith(RUNNER_LOST)
    assert tried["container"]["exitCode"] is None
    ending = "/a.attempt-1" if layout == "flat" else "/a/attempt-1"
    assert tried["container"]["logStreamName"].endswith(ending)
    logs = cli("logs", ids["a"])
    assert logs.exit_code == 0, logs.output
    assert logs.output == "printed before the runner died\n"
    logs = cli("logs", child)
    assert logs.exit_code == 0, logs.output
    assert logs.output == "child 1\n"
    # Its process was never recorded, so nothing here could judge or stop it: it must
    # not hold `--resume` back for ever (the runner's reaper stopped it).
    again = cli("run", str(tmp_path / "p.flow"), "--resume")
    assert again.exit_code == 0, again.output
