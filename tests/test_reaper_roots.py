"""A runner killed between making a cgroup and registering it with its reaper must not
leave it behind: the reaper knows the runner's directory of cgroups before it exists,
and removes it with whatever job cgroups it holds, registered or not."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from proc_helpers import wait_for

from flowbatch.executors.cgroups import Cgroups
from flowbatch.executors.reaper import Reaper, remove_cgroup


def test_the_runners_cgroups_are_announced_before_they_exist(reaper: Reaper) -> None:
    announced: list[tuple[Path, bool]] = []

    def announce(path: Path) -> None:
        announced.append((path, path.exists()))
        reaper.send("R", str(path))

    cgroups = Cgroups.create(announce=announce)
    if cgroups is None:
        pytest.skip("this machine gives flowbatch no writable cgroup hierarchy")
    try:
        assert (cgroups.root, False) in announced
        job = cgroups.job("job-never-registered")  # the runner dies before its "+c"
        assert job is not None
        reaper.close()
        wait_for(lambda: reaper.proc.poll() is not None, timeout=10)
        assert not cgroups.root.exists()
    finally:
        if cgroups.root.exists():
            for child in cgroups.root.iterdir():
                if child.is_dir():
                    remove_cgroup(str(child))
            remove_cgroup(str(cgroups.root))


def test_a_job_cgroup_in_the_runners_directory_gets_sigterm_and_its_grace(
    reaper: Reaper, tmp_path: Path
) -> None:
    """A job's cgroup is not registered line by line (the runner's directory is): at the
    end its processes still get SIGTERM and the grace period first, as a registered
    job's do, not a bare SIGKILL."""
    cgroups = Cgroups.create(announce=lambda path: reaper.send("R", str(path)))
    if cgroups is None:
        pytest.skip("this machine gives flowbatch no writable cgroup hierarchy")
    proc: subprocess.Popen[bytes] | None = None
    try:
        job = cgroups.job("job-with-a-trap")
        assert job is not None
        marker = tmp_path / "terminated"
        script = (
            f'trap "echo term > {marker}; exit 0" TERM; touch {tmp_path / "ready"}; '
            "while :; do sleep 0.05; done"
        )
        proc = subprocess.Popen(job.wrap_shell(script), start_new_session=True)
        wait_for(lambda: (tmp_path / "ready").exists(), timeout=10)
        reaper.close()
        wait_for(lambda: reaper.proc.poll() is not None, timeout=10)
        proc.wait(timeout=10)
        assert marker.read_text() == "term\n"
        assert not cgroups.root.exists()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if cgroups.root.exists():
            for child in cgroups.root.iterdir():
                if child.is_dir():
                    remove_cgroup(str(child))
            remove_cgroup(str(cgroups.root))
