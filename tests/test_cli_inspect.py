"""`flowbatch jobs`, `describe`, `logs` and `runs`, through click's CliRunner, on a store
filled with JobEvents directly (as the runner would)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_store import IDS, RUN, T0, ev, pipeline

from flowbatch.cli import app
from flowbatch.run.state import JobState
from flowbatch.store.jobstore import Store

S = JobState


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    sd = tmp_path / ".flowbatch"
    with Store.open(sd) as store:
        store.begin_run("20251231-000000-0000", pipeline(), {n: f"old-{n}" for n in IDS},
                        created_at=T0 - 86400)  # fmt: skip
        store.end_run("20251231-000000-0000", "SUCCEEDED", ended_at=T0 - 86000)
        store.begin_run(RUN, pipeline(), IDS, created_at=T0)
        logs = sd / "logs" / RUN  # the run's one directory: an attempt's files share a stem
        logs.mkdir(parents=True)
        for n, text in ((1, "first try\n"), (2, "second try\n")):
            (logs / f"prep.attempt-{n}.stdout").write_text(text)
            (logs / f"prep.attempt-{n}.stderr").write_text(f"warning {n}\n")
        events = [
            ev("id-prep", S.SUBMITTED, 0),
            ev("id-prep", S.RUNNABLE, 0),
            ev("id-prep", S.STARTING, 1, attempt=1, log_path=str(logs / "prep.attempt-1")),
            ev("id-prep", S.RUNNING, 1, attempt=1),
            ev(
                "id-prep",
                S.RUNNABLE,
                3,
                attempt=1,
                exit_code=1,
                reason="Essential container in task exited",
            ),
            ev("id-prep", S.STARTING, 4, attempt=2, log_path=str(logs / "prep.attempt-2")),
            ev("id-prep", S.RUNNING, 4, attempt=2),
            ev("id-prep", S.SUCCEEDED, 10, attempt=2, exit_code=0),
            ev("id-align", S.SUBMITTED, 10),
            ev("id-align", S.PENDING, 10),
            ev("id-align:0", S.RUNNABLE, 11),
            ev("id-align:1", S.RUNNABLE, 11),
            ev("id-align:1", S.STARTING, 12, attempt=1),
            ev("id-align:1", S.RUNNING, 12, attempt=1),
            ev(
                "id-align:1",
                S.FAILED,
                95,
                attempt=1,
                exit_code=3,
                reason="Essential container in task exited",
            ),
        ]
        for e in events:
            store.emit(e)
        store.flush()
    yield sd


def run(state_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--state-dir", str(state_dir)])


def test_jobs_lists_the_latest_run_as_a_table(state_dir: Path) -> None:
    result = run(state_dir, "jobs")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "JOB ID     NAME    STATUS                     ATTEMPTS  EXIT  DURATION  REASON",
        "id-prep    prep    SUCCEEDED                  2         0     9s",
        "id-align   align   PENDING (0/3 succeeded)    0         -     -",
        "id-thumbs  thumbs  SUBMITTED (0/3 succeeded)  0         -     -",
        "id-steps   steps   SUBMITTED (0/4 succeeded)  0         -     -",
    ]


def test_jobs_lists_the_children_of_an_array(state_dir: Path) -> None:
    result = run(state_dir, "jobs", "--children", "id-align")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["id-align:0", "align[0]", "RUNNABLE", "0", "-", "-"]
    assert lines[2].split(None, 6) == [
        "id-align:1", "align[1]", "FAILED", "1", "3", "1m23s",
        "Essential container in task exited",
    ]  # fmt: skip
    # align has 3 children; the third has no row yet and is said to be coming.
    assert lines[3:] == [
        "... and 1 more not started yet (`flowbatch describe id-align:INDEX` shows any of them)"
    ]
    filtered = run(state_dir, "jobs", "--children", "id-align", "--status", "FAILED")
    assert len(filtered.stdout.splitlines()) == 2  # a filter lists what matches, no footer


def test_jobs_filters_and_prints_json(state_dir: Path) -> None:
    result = run(state_dir, "jobs", "--status", "submitted", "--json")
    assert result.exit_code == 0, result.stderr
    listed = json.loads(result.stdout)["jobSummaryList"]
    assert [j["jobName"] for j in listed] == ["thumbs", "steps"]
    old = run(state_dir, "jobs", "--run", "20251231-000000-0000", "--name", "prep", "--json")
    assert [j["jobId"] for j in json.loads(old.stdout)["jobSummaryList"]] == ["old-prep"]


def test_jobs_refuses_a_state_that_does_not_exist(state_dir: Path) -> None:
    result = run(state_dir, "jobs", "--status", "DONE")
    assert result.exit_code == 2
    assert "Invalid value for '--status': 'DONE' is not one of" in result.stderr
    assert "'succeeded'" in result.stderr.lower()


def test_jobs_of_an_unknown_run_or_array_is_an_error(state_dir: Path) -> None:
    result = run(state_dir, "jobs", "--run", "nope")
    assert result.exit_code == 2
    assert result.stderr == f"error: no run `nope` in `{state_dir / 'jobs.db'}`\n"
    result = run(state_dir, "jobs", "--children", "id-prep")
    assert result.exit_code == 2
    assert result.stderr == "error: job `id-prep` (prep) is not an array job\n"


def test_describe_prints_describe_jobs_json_with_sorted_keys(state_dir: Path) -> None:
    result = run(state_dir, "describe", "id-prep", "id-align:1")
    assert result.exit_code == 0, result.stderr
    with Store.open(state_dir) as store:
        expected = {"jobs": [store.describe("id-prep"), store.describe("id-align:1")]}
    assert result.stdout == json.dumps(expected, sort_keys=True, indent=2) + "\n"
    assert json.loads(result.stdout)["jobs"][1]["status"] == "FAILED"


def test_an_unknown_job_id_is_an_error_with_a_suggestion(state_dir: Path) -> None:
    result = run(state_dir, "describe", "id-prepp")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"error: no job with id `id-prepp` in `{state_dir / 'jobs.db'}`; did you mean `id-prep`?\n"
    )


def test_logs_prints_the_latest_attempt_or_the_one_asked_for(state_dir: Path) -> None:
    assert run(state_dir, "logs", "id-prep").stdout == "second try\n"
    assert run(state_dir, "logs", "id-prep", "--attempt", "1").stdout == "first try\n"
    assert run(state_dir, "logs", "id-prep", "--attempt", "1", "--stderr").stdout == "warning 1\n"
    result = run(state_dir, "logs", "id-prep", "--attempt", "3")
    assert result.exit_code == 2
    assert result.stderr == "error: job `id-prep` has 2 attempt(s); there is no attempt 3\n"


def test_logs_of_a_store_that_recorded_a_directory_per_attempt(tmp_path: Path) -> None:
    # Stores written before the flat layout recorded `logs/RUN/NAME[/INDEX]/attempt-N/`,
    # a directory holding `stdout` and `stderr`: still read, as recorded.
    sd = tmp_path / ".flowbatch"
    old = sd / "logs" / RUN
    with Store.open(sd) as store:
        store.begin_run(RUN, pipeline(), IDS, created_at=T0)
        for n, job, where in ((1, "id-prep", old / "prep"), (1, "id-align:1", old / "align" / "1")):
            (where / f"attempt-{n}").mkdir(parents=True)
            (where / f"attempt-{n}" / "stdout").write_text(f"{job} out\n")
            (where / f"attempt-{n}" / "stderr").write_text(f"{job} err\n")
            log = str(where / f"attempt-{n}")
            store.emit(ev(job, S.STARTING, 1, attempt=n, log_path=log))
        store.flush()
    assert run(sd, "logs", "id-prep").stdout == "id-prep out\n"
    assert run(sd, "logs", "id-align:1", "--stderr").stdout == "id-align:1 err\n"


def test_logs_of_an_array_or_an_unstarted_job_explain_themselves(state_dir: Path) -> None:
    result = run(state_dir, "logs", "id-align")
    assert result.exit_code == 2
    assert "is an array job; its logs are its children's: `id-align:0` to `id-align:2`" in (
        result.stderr
    )
    result = run(state_dir, "logs", "id-align:0")
    assert result.exit_code == 2
    assert (
        result.stderr == "error: job `id-align:0` (align[0]) has not started yet: it is RUNNABLE\n"
    )


@pytest.mark.slow
def test_logs_follow_prints_until_the_job_is_done(state_dir: Path) -> None:
    log = state_dir / "logs" / RUN / "align.0.attempt-1.stdout"  # not recorded yet
    log.write_text("line 1\n")
    with Store.open(state_dir) as store:
        store.emit(ev("id-align:0", S.STARTING, 20, attempt=1))
        store.emit(ev("id-align:0", S.RUNNING, 20, attempt=1))
        store.flush()

    def finish() -> None:
        # The job writes more, then ends; the follower must print both lines and stop.
        with log.open("a") as f:
            f.write("line 2\n")
        with Store.open(state_dir) as store:
            store.emit(ev("id-align:0", S.SUCCEEDED, 30, attempt=1, exit_code=0))
            store.flush()

    writer = threading.Thread(target=finish)
    writer.start()
    result = run(state_dir, "logs", "id-align:0", "--follow")
    writer.join(timeout=30)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "line 1\nline 2\n"


def test_runs_lists_runs_newest_first(state_dir: Path) -> None:
    result = run(state_dir, "runs")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["RUN", "ID", "PIPELINE", "STARTED", "DURATION", "STATUS", "JOBS"]
    assert lines[1].startswith(f"{RUN}  p.flow")
    assert "RUNNING" in lines[1]  # never ended, and its writer (this process) is alive
    assert lines[1].endswith("1 pending, 2 submitted, 1 succeeded")
    assert lines[2].startswith("20251231-000000-0000")
    assert lines[2].split()[-4:] == ["6m40s", "SUCCEEDED", "4", "submitted"]
    listed = json.loads(run(state_dir, "runs", "--json").stdout)["runs"]
    assert [r["runId"] for r in listed] == [RUN, "20251231-000000-0000"]


def test_a_missing_database_is_an_error(tmp_path: Path) -> None:
    result = run(tmp_path / "nothing", "runs")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: no job database at `{tmp_path / 'nothing' / 'jobs.db'}` (given by"
        " --state-dir): nothing has run with this state directory yet. flowbatch keeps its"
        " state in .flowbatch of the directory `flowbatch run` was started from: run this"
        " command there, or pass --state-dir DIR or set FLOWBATCH_STATE_DIR=DIR\n"
    )
    assert not (tmp_path / "nothing").exists()


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("prep", "id-prep"),  # a name of the latest run, not the older run's old-prep
        ("align:1", "id-align:1"),
        ("id-pr", "id-prep"),  # a unique start of an id
        ("id-al:2", "id-align:2"),
        ("old-p", "old-prep"),  # a prefix reaches older runs too
    ],
)
def test_a_job_is_its_id_a_unique_start_of_it_or_its_name_in_the_latest_run(
    state_dir: Path, given: str, meant: str
) -> None:
    result = run(state_dir, "describe", given)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["jobs"][0]["jobId"] == meant
    shown = run(state_dir, "jobs", "--children", "align" if "align" in meant else "id-align")
    assert shown.exit_code == 0, shown.stderr


def test_an_ambiguous_start_of_an_id_names_the_candidates(state_dir: Path) -> None:
    result = run(state_dir, "logs", "id-")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: `id-` is the start of several job ids: id-align, id-prep, id-steps,"
        " id-thumbs; give more of it\n"
    )


def test_logs_by_name_prints_the_latest_attempt(state_dir: Path) -> None:
    result = run(state_dir, "logs", "prep")
    assert (result.exit_code, result.stdout) == (0, "second try\n")


@pytest.mark.slow
def test_logs_streams_a_log_larger_than_it_may_hold_in_memory(state_dir: Path) -> None:
    import subprocess
    import sys

    size = 160 << 20
    log = state_dir / "logs" / RUN / "prep.attempt-2.stdout"
    with log.open("r+b") as f:
        f.truncate(size)  # sparse: no disk written, all of it still read
    # Linux carries a process's peak RSS across fork and exec (the kernel keeps the
    # larger of the old memory's and the new): a child of this test process would report
    # pytest's own peak. A small launcher forks the command afresh and reports its peak.
    launcher = (
        "import os, sys\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
        "_, status, usage = os.wait4(pid, 0)\n"
        "sys.stderr.write(f'maxrss={usage.ru_maxrss}\\n')\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    argv = ["-m", "flowbatch", "logs", "id-prep", "--state-dir", str(state_dir)]
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        total = 0
        while chunk := proc.stdout.read(1 << 20):
            total += len(chunk)
        err = proc.stderr.read().decode()
        proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert (proc.returncode, total) == (0, size), err
    maxrss = int(err.rpartition("maxrss=")[2])
    assert maxrss < 100 * 1024  # KiB: far below the 160 MiB it printed
