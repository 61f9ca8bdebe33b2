"""A runner killed together with its reaper (kill -9 of both, the reaper first) leaves
its jobs running: nothing of flowbatch is left to stop them. What is left is found
again from the store: the attempt's cgroup is named after its job and attempt, so
`run --resume` refuses while any process of it lives (the leader gone, a grandchild
that left its group with `setsid` still there), and `terminate` stops them all and
removes the cgroup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from proc_helpers import (
    alive,
    first_job_status,
    kill_written_pids,
    reaper_of,
    run_to_end,
    wait_for,
    written_pid,
)

from flowbatch.executors.cgroups import Cgroups
from flowbatch.executors.reaper import remove_cgroup

pytestmark = pytest.mark.slow
FLOWBATCH = [sys.executable, "-m", "flowbatch"]

# The leader exits at once after SIGTERM; the grandchild left the group (setsid).
JOB = (
    "job j {\n"
    "  command = \"setsid sh -c 'echo $$ > escaped.pid; exec sleep 120' & "
    'echo $$ > leader.pid; exec sleep 120"\n'
    "}\n"
)


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """Kills whatever the test's run left, whatever the test did."""
    yield tmp_path
    kill_written_pids(tmp_path)


def test_terminate_and_resume_find_a_killed_reapers_cgroup(workdir: Path) -> None:
    probe = Cgroups.create()
    if probe is None:
        pytest.skip("this machine gives flowbatch no writable cgroup hierarchy")
    probe.remove()
    parent = probe.root.parent
    (workdir / "p.flow").write_text(JOB)
    env = dict(os.environ, FLOWBATCH_CGROUPS="on")
    state = ["--state-dir", str(workdir / "state")]
    runner = subprocess.Popen(
        [*FLOWBATCH, "run", "p.flow", *state],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: written_pid(workdir / "escaped.pid") and written_pid(workdir / "leader.pid")
        )
        wait_for(lambda: first_job_status(workdir / "state") == "RUNNING")
        reaper = reaper_of(runner.pid)
        os.kill(reaper, signal.SIGKILL)
        wait_for(lambda: not alive(reaper))
        runner.kill()
        runner.wait(timeout=10)
        escaped = written_pid(workdir / "escaped.pid") or 0
        os.killpg(written_pid(workdir / "leader.pid") or 0, signal.SIGKILL)  # its group only
        wait_for(lambda: not alive(written_pid(workdir / "leader.pid") or 0))
        assert alive(escaped)

        resumed = run_to_end(
            [*FLOWBATCH, "run", "p.flow", *state, "--resume"], cwd=workdir, env=env
        )
        assert resumed.returncode == 2, resumed.stderr
        assert "may still be running" in resumed.stderr

        stopped = run_to_end([*FLOWBATCH, "terminate", "j", *state], cwd=workdir, env=env)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert "cgroup" in stopped.stdout + stopped.stderr
        wait_for(lambda: not alive(escaped), timeout=10)
        assert not list(parent.glob(f"flowbatch-{runner.pid}-*"))
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        for leftover in parent.glob(f"flowbatch-{runner.pid}-*"):
            for job in leftover.iterdir():
                if job.is_dir():
                    remove_cgroup(str(job))
            remove_cgroup(str(leftover))
