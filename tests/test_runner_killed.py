"""A `flowbatch run` killed with SIGKILL runs no cleanup of its own: its reaper stops the
jobs it left, the whole tree of each (a grandchild that left the process group with
`setsid` included where cgroups are available), after the run's stop grace period."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from proc_helpers import alive, first_job_status, kill_written_pids, wait_for, written_pid

from flowbatch.cli import app
from flowbatch.executors.cgroups import Cgroups

pytestmark = pytest.mark.slow
RUN = [sys.executable, "-m", "flowbatch", "run"]

# The leader waits on a grandchild in a session of its own that ignores SIGTERM (only
# the SIGKILL after the grace period ends it) and on a child in its group.
JOB = (
    "job j {\n"
    '  command = "setsid sh -c \'trap \\"\\" TERM; echo $$ > escaped.pid; exec sleep 60\' & '
    'sleep 60 & echo $! > child.pid; echo $$ > leader.pid; wait"\n'
    "}\n"
)


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """Kills whatever the test's run left, whatever the test did."""
    yield tmp_path
    kill_written_pids(tmp_path)


def _start(tmp: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    (tmp / "p.flow").write_text(JOB)
    return subprocess.Popen(
        [*RUN, str(tmp / "p.flow"), "--state-dir", str(tmp / "state"), "--stop-grace", "1s"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )


@pytest.mark.parametrize("cgroups", ["on", "off"])
def test_sigkill_of_the_runner_stops_its_jobs(workdir: Path, cgroups: str) -> None:
    env = dict(os.environ)
    env["FLOWBATCH_CGROUPS"] = cgroups
    parent: Path | None = None  # where the runner makes its cgroups (it is our child)
    if cgroups == "on":
        probe = Cgroups.create()
        if probe is None:
            pytest.skip("this machine gives flowbatch no writable cgroup hierarchy")
        probe.remove()
        parent = probe.root.parent
    runner = _start(workdir, env)
    try:
        names = ("leader", "child", "escaped")
        wait_for(lambda: all(written_pid(workdir / f"{n}.pid") for n in names), timeout=30)
        # RUNNING is stored once the runner has registered the job with its reaper.
        wait_for(lambda: first_job_status(workdir / "state") == "RUNNING", timeout=30)
        pids = {n: written_pid(workdir / f"{n}.pid") or 0 for n in names}
        if parent is not None:
            assert list(parent.glob(f"flowbatch-{runner.pid}-*/*-a1"))  # the job's cgroup
        runner.kill()  # SIGKILL: the runner itself cleans nothing up
        runner.wait(timeout=10)
        # Without cgroups only the job's process group is reachable (the documented
        # limit): the escaped grandchild is the fixture's to kill.
        gone = ("leader", "child", "escaped") if cgroups == "on" else ("leader", "child")
        wait_for(lambda: not any(alive(pids[n]) for n in gone), timeout=15)
        if parent is not None:  # and the runner's cgroups are removed
            wait_for(lambda: not list(parent.glob(f"flowbatch-{runner.pid}-*")), timeout=15)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


@pytest.mark.parametrize("value", ["soon", "-1", "1x"])
def test_a_stop_grace_that_is_not_a_duration_is_bad_input(tmp_path: Path, value: str) -> None:
    (tmp_path / "p.flow").write_text('job a {\n  command = "true"\n}\n')
    args = ["run", str(tmp_path / "p.flow"), "--stop-grace", value]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "--stop-grace" in result.output
    assert not (tmp_path / ".flowbatch").exists()


@pytest.mark.parametrize("option", ["--stop-grace", "--host-timeout"])
@pytest.mark.parametrize("value", ["soon", "-1", "inf", "nan", "1x"])
def test_durations_of_run_options_are_checked_alike(
    tmp_path: Path, option: str, value: str
) -> None:
    # Both options read a duration through one parser: the same values are refused.
    (tmp_path / "p.flow").write_text('job a {\n  command = "true"\n}\n')
    args = ["run", str(tmp_path / "p.flow"), "--state-dir", str(tmp_path / "s"), option, value]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and option in result.output
    assert not (tmp_path / "s").exists()
