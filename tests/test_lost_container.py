"""A container job whose runner, reaper and runtime client were all killed (kill -9 of
everything flowbatch started) keeps running under conmon: nothing in the job's process
group is left to signal. `run --resume` must still refuse, and `terminate` must remove
the container (found by its name, which says run, job and attempt)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_helpers import engine_unavailable
from proc_helpers import alive, descendants, reaper_of, run_to_end, wait_for

from flowbatch.executors.processes import Process
from flowbatch.store.jobstore import Store

pytestmark = pytest.mark.slow
FLOWBATCH = [sys.executable, "-m", "flowbatch"]
IMAGE = "localhost/flowbatch-busybox:test"


def _running(prefix: str) -> list[str]:
    out = subprocess.run(
        ["podman", "ps", "--format", "{{.Names}}"], capture_output=True, text=True, timeout=60
    )
    return [n for n in out.stdout.split() if n.startswith(prefix)]


@pytest.fixture
def podman() -> None:
    if shutil.which("podman") is None:
        engine_unavailable("podman", "podman is not on PATH")
    found = subprocess.run(["podman", "image", "exists", IMAGE], capture_output=True, timeout=60)
    if found.returncode != 0:
        engine_unavailable("podman", f"the image {IMAGE} is missing")


@pytest.fixture
def prefix(tmp_path: Path) -> Iterator[list[str]]:
    """The container name prefix of the test's run, once known; its containers go."""
    holder: list[str] = []
    yield holder
    for name in _running(holder[0]) if holder else []:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True, timeout=60)


def _run_id(state: Path) -> str | None:
    if not (state / "jobs.db").exists():
        return None
    with Store.open(state, create=False) as store:
        runs = store.runs()
        jobs = store.jobs()
    if not runs or not jobs or jobs[0]["status"] != "RUNNING":
        return None
    return str(runs[0]["runId"])


def test_a_container_left_by_a_killed_runner_is_found_and_removed(
    tmp_path: Path, podman: None, prefix: list[str]
) -> None:
    (tmp_path / "p.flow").write_text(
        f'job c {{\n  command = "sleep 120"\n  image = "{IMAGE}"\n}}\n'
    )
    state = ["--state-dir", str(tmp_path / "state")]
    runner = subprocess.Popen(
        [*FLOWBATCH, "run", "p.flow", *state],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: _run_id(tmp_path / "state"), timeout=60)
        prefix.append(f"fb-{_run_id(tmp_path / 'state')}")
        wait_for(lambda: _running(prefix[0]), timeout=60)
        below = descendants(runner.pid)
        reaper = reaper_of(runner.pid)  # the reaper first, then the runner, then podman
        os.kill(reaper, signal.SIGKILL)
        wait_for(lambda: not alive(reaper))
        runner.kill()
        runner.wait(timeout=10)
        for pid in below:
            leader = Process.of(pid)
            if leader.alive() and os.getpgid(pid) == pid:
                leader.signal_group(signal.SIGKILL)
        assert _running(prefix[0])  # conmon keeps it running

        resumed = run_to_end([*FLOWBATCH, "run", "p.flow", *state, "--resume"], cwd=tmp_path)
        assert resumed.returncode == 2, resumed.stderr
        stopped = run_to_end([*FLOWBATCH, "terminate", "c", *state], cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert not _running(prefix[0])
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
