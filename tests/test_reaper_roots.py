"""A runner killed between making a cgroup and registering it with its reaper must not
leave it behind: the reaper knows the runner's directory of cgroups before it exists,
and removes it with whatever job cgroups it holds, registered or not."""

from __future__ import annotations

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
