"""`flowbatch run --resume` as a user runs it: real runs in subprocesses, counting the
processes that actually start (each job appends a line to a file)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from proc_helpers import Spawner, run_to_end, wait_for

from flowbatch.executors.processes import Process
from flowbatch.store.jobstore import Store

pytestmark = pytest.mark.slow


def run(tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_to_end(
        [sys.executable, "-m", "flowbatch", "run", str(tmp / "p.flow"), *extra,
         "--state-dir", str(tmp / "state")],
    )  # fmt: skip


def started(tmp: Path) -> list[str]:
    log = tmp / "log"
    return log.read_text().split() if log.exists() else []


CHAIN = """
job a {
  command = "echo a >> log; cat in.txt > a.out"
  inputs = ["in.txt"]
  outputs = ["a.out"]
}
job b {
  command = "echo b >> log; test ! -e fail-b"
  after = [a]
}
job c {
  command = "echo c >> log"
  after = [b]
}
job side {
  command = "echo side >> log"
}
"""


def test_resume_after_a_failure_reruns_the_failed_job_and_its_downstream(
    tmp_path: Path,
) -> None:
    (tmp_path / "p.flow").write_text(CHAIN)
    (tmp_path / "in.txt").write_text("one\n")
    (tmp_path / "fail-b").touch()
    assert run(tmp_path).returncode == 1
    assert sorted(started(tmp_path)) == ["a", "b", "side"]
    (tmp_path / "fail-b").unlink()
    (tmp_path / "log").unlink()
    done = run(tmp_path, "--resume")
    assert done.returncode == 0, done.stderr
    assert sorted(started(tmp_path)) == ["b", "c"]
    with Store.open(tmp_path / "state") as store:
        latest = store.latest_run(str(tmp_path / "p.flow"))
        assert latest is not None
        jobs = {j["jobName"]: j for j in store.jobs(run_id=latest)}
        assert {n: j["status"] for n, j in jobs.items()} == dict.fromkeys(jobs, "SUCCEEDED")
        first = [r["runId"] for r in store.runs()][1]
        assert jobs["a"]["statusReason"] == f"Reused from run {first} (unchanged)"
        assert jobs["a"]["attempts"] == 0
        assert jobs["b"]["attempts"] == 1


def test_changed_input_reruns_that_job_and_downstream_only(tmp_path: Path) -> None:
    (tmp_path / "p.flow").write_text(CHAIN)
    (tmp_path / "in.txt").write_text("one\n")
    assert run(tmp_path).returncode == 0
    (tmp_path / "log").unlink()
    assert run(tmp_path, "--resume").returncode == 0
    assert started(tmp_path) == []  # nothing changed: nothing runs
    (tmp_path / "in.txt").write_text("two\n")
    assert run(tmp_path, "--resume").returncode == 0
    assert started(tmp_path) == ["a", "b", "c"]
    assert (tmp_path / "a.out").read_text() == "two\n"


def test_deleted_output_reruns_the_job(tmp_path: Path) -> None:
    (tmp_path / "p.flow").write_text(CHAIN)
    (tmp_path / "in.txt").write_text("one\n")
    assert run(tmp_path).returncode == 0
    (tmp_path / "log").unlink()
    (tmp_path / "a.out").unlink()
    assert run(tmp_path, "--resume").returncode == 0
    assert started(tmp_path) == ["a", "b", "c"]
    assert (tmp_path / "a.out").exists()


def test_without_resume_everything_runs_again(tmp_path: Path) -> None:
    (tmp_path / "p.flow").write_text(CHAIN)
    (tmp_path / "in.txt").write_text("one\n")
    assert run(tmp_path).returncode == 0
    assert run(tmp_path).returncode == 0
    assert sorted(started(tmp_path)) == sorted(["a", "b", "c", "side"] * 2)


ARRAY = """
job split {
  command = "echo split >> log"
}
job work {
  command = "echo w{{ array.index }} >> log; f=once-{{ array.index }}; ! rm $f 2>/dev/null"
  array = 20
  after = [split]
}
job pair {
  command = "echo p{{ array.index }} >> log"
  array = 20
  after = [n_to_n(work)]
}
job merge {
  command = "echo merge >> log"
  after = [pair]
}
"""


def test_partially_failed_array_reruns_exactly_its_failed_children(tmp_path: Path) -> None:
    (tmp_path / "p.flow").write_text(ARRAY)
    for i in (3, 11, 17):
        (tmp_path / f"once-{i}").touch()  # these children fail once
    assert run(tmp_path).returncode == 1
    first = started(tmp_path)
    assert len([s for s in first if s.startswith("w")]) == 20
    assert sorted(s for s in first if s.startswith("p")) == sorted(
        f"p{i}" for i in range(20) if i not in (3, 11, 17)
    )
    assert "merge" not in first
    (tmp_path / "log").unlink()
    done = run(tmp_path, "--resume")
    assert done.returncode == 0, done.stderr
    assert sorted(started(tmp_path)) == sorted(["w3", "w11", "w17", "p3", "p11", "p17", "merge"])
    with Store.open(tmp_path / "state") as store:
        latest = store.latest_run(str(tmp_path / "p.flow"))
        work = next(j for j in store.jobs(run_id=latest) if j["jobName"] == "work")
        assert work["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 20
        children = store.jobs(parent=work["jobId"])
        assert len(children) == 20
        assert sum(c["statusReason"].startswith("Reused from run") for c in children) == 17


SLOW = """
job quick {
  command = "echo quick >> log"
}
job slow {
  command = "echo slow >> log; exec sleep 60"
  after = [quick]
}
"""


def test_a_run_killed_with_kill_9_resumes_without_rerunning_what_succeeded(
    tmp_path: Path, spawn: Spawner
) -> None:
    (tmp_path / "p.flow").write_text(SLOW)
    proc = spawn(
        [sys.executable, "-m", "flowbatch", "run", str(tmp_path / "p.flow"),
         "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def quick_recorded() -> bool:
        if not (tmp_path / "state" / "jobs.db").exists():
            return False
        with Store.open(tmp_path / "state") as store:
            return any(j["jobName"] == "quick" and j["status"] == "SUCCEEDED" for j in store.jobs())

    wait_for(lambda: "slow" in started(tmp_path))
    wait_for(quick_recorded)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with Store.open(tmp_path / "state") as store:
        # Found gone on opening: recorded as lost, not left RUNNING (issue 9 item 5).
        lost = store.runs()[0]
        assert lost["status"] == "FAILED" and lost["statusReason"].startswith("Runner lost")
        # Whether `slow` died with its runner depends on the machine (a reaper, a death
        # signal): stop it here as `flowbatch terminate` would, so that resume may run it.
        for stray in store.stray_attempts(run_id=lost["runId"]):
            leader = Process.parse(stray.external_id or "")
            assert leader is not None and leader.ticks is not None
            leader.signal_group(signal.SIGKILL)
            wait_for(lambda leader=leader: not leader.alive())
    (tmp_path / "p.flow").write_text(SLOW.replace("exec sleep 60", "true"))
    (tmp_path / "log").unlink()
    assert run(tmp_path, "--resume").returncode == 0
    assert started(tmp_path) == ["slow"]
