"""Attacks on the cgroup v1 step-in spawn (`Cgroups.enter`/`leave`, `_limit_started`).

While the spawning thread is inside a job's cgroup, v1 charges every page the runner
process faults (its other threads' included: the charge follows the memory's owner,
the thread group leader) to the job. A runner thread that reads or allocates during a
spawn then shows up as the job's memory: in its peak, and against its limit when that
is set just after the spawn. The runner has such a thread: `inputs` are hashed in a
worker thread while other jobs start (`run.runner`, `fingerprint._read_digest`). Here
the other thread is made to run exactly while the spawning thread is inside (a hook on
Popen); in a run it happens by chance: `flowbatch run` of 8 jobs hashing 240 MiB of
uncached inputs each beside 600 `sleep 0` jobs with `memory = 8MiB` had 19 of those
killed (137, OutOfMemoryError) and 30 more exit 0 with the OOM reason, peaks up to
21 MiB; at 4aeed32 (the wrapper) all 600 ran in 1 MiB.

A runner that may not move back into its own cgroup must neither stay out of it nor
leave a thread inside a job's cgroup, which is killed with the job.

Real processes, real cgroups; skipped where this machine gives no writable v1 memory
hierarchy (or, for the last two, where the tests do not run as root)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_local_cgroups import _attempt, _run

from flowbatch.executors.cgroups import Cgroups
from flowbatch.executors.container import REASON_OOM
from flowbatch.executors.local import LocalExecutor
from flowbatch.executors.reaper import remove_cgroup
from flowbatch.lang.model import local_compute
from flowbatch.run import fingerprint

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

WAIT_LIMIT = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def executor() -> AsyncIterator[LocalExecutor]:
    cgroups = Cgroups.create(versions=(1,))
    if cgroups is None or not cgroups.steps_in:
        pytest.skip("this machine gives flowbatch no writable cgroup v1 memory hierarchy")
    made = LocalExecutor(local_compute(2, 4096), grace=0.2, cgroups=cgroups)
    try:
        yield made
    finally:
        await made.aclose()


def _in_a_job_cgroup() -> bool:
    lines = Path("/proc/thread-self/cgroup").read_text().splitlines()
    memory = next(line.split(":", 2)[2] for line in lines if line.split(":")[1] == "memory")
    return "/flowbatch-" in memory


@pytest.fixture
def meanwhile(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Callable[[], object]], None]]:
    """`meanwhile(work)`: `work` runs in another thread of this process while the
    spawning thread is inside a job's cgroup (joined before the spawn goes on)."""
    works: list[Callable[[], object]] = []
    real_popen = subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        if _in_a_job_cgroup():
            for work in works:
                thread = threading.Thread(target=work)
                thread.start()
                thread.join()
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", popen)
    yield works.append


def _uncached_file(path: Path, mib: int) -> Path:
    path.write_bytes(os.urandom(mib << 20))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # clean pages, so that the kernel can drop them now
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return path


async def test_inputs_hashed_by_the_runner_during_a_spawn_are_not_the_jobs_peak(
    tmp_path: Path, executor: LocalExecutor, meanwhile: Callable[[Callable[[], object]], None]
) -> None:
    """The runner's `inputs` thread reads a file while a `sleep 0` job is spawned: the
    page cache it fills is not the job's memory (with the wrapper, or without cgroups,
    the job's peak is 1 MiB)."""
    big = _uncached_file(tmp_path / "input.bin", 48)
    meanwhile(lambda: fingerprint._read_digest(big, big.stat()))
    result = await _run(executor, _attempt(tmp_path, "sleep 0", memory=512))
    assert result.ok
    assert result.peak_memory is not None and result.peak_memory < 16, result.peak_memory


async def test_memory_a_runner_thread_faults_during_a_spawn_does_not_oom_kill_the_job(
    tmp_path: Path, executor: LocalExecutor, meanwhile: Callable[[Callable[[], object]], None]
) -> None:
    """A runner thread allocates while a small job is spawned: the job, which uses
    1 MiB, must not be killed (and reported) as past its 32 MiB."""
    held: list[bytes] = []
    meanwhile(lambda: held.append(b"x" * (48 << 20)))
    try:
        result = await _run(executor, _attempt(tmp_path, "sleep 0", memory=32))
    finally:
        held.clear()
    assert (result.exit_code, result.reason) == (0, ""), result
    assert result.ok


async def test_a_job_that_exited_0_is_never_reported_as_an_oom_kill(
    tmp_path: Path,
    executor: LocalExecutor,
    meanwhile: Callable[[Callable[[], object]], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`_limit_started` kills and marks OOM whatever is over the limit when it is set,
    even a job already ended by itself with 0: its result says exit 0 and
    `OutOfMemoryError` at once (seen by chance in runs: 32 of 300 `sleep 0` jobs with
    `memory = 4` beside a hashing thread)."""
    held: list[bytes] = []
    meanwhile(lambda: held.append(b"x" * (48 << 20)))
    popen = subprocess.Popen  # the `meanwhile` hook

    def ended_before_the_limit(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = popen(*args, **kwargs)
        if "reaper.py" not in " ".join(map(str, args[0])):
            # The job has exited (not reaped) before the spawn returns.
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        return proc

    monkeypatch.setattr(subprocess, "Popen", ended_before_the_limit)
    try:
        result = await _run(executor, _attempt(tmp_path, "/bin/true", memory=32))
    finally:
        held.clear()
    assert result.exit_code == 0
    assert result.reason != REASON_OOM, result


_ONE_JOB = """
import json, os, sys
from pathlib import Path
import anyio
from flowbatch.executors.base import Attempt
from flowbatch.executors.cgroups import Cgroups
from flowbatch.executors.local import LocalExecutor
from flowbatch.lang.model import local_compute

def memory_cgroup():
    for line in Path("/proc/thread-self/cgroup").read_text().splitlines():
        if line.split(":")[1] == "memory":
            return line.split(":", 2)[2]

async def main():
    work = Path(sys.argv[1])
    home = Path("/sys/fs/cgroup/memory" + sys.argv[2])
    if sys.argv[3:] == ["home later"]:
        os.chmod(home / "tasks", 0o644)  # its owner may, without CAP_DAC_OVERRIDE
    cgroups = Cgroups.create(versions=(1,))
    stepped_at_first = cgroups.steps_in
    if sys.argv[3:] == ["home later"]:
        os.chmod(home / "tasks", 0o444)
    executor = LocalExecutor(local_compute(2, 4096), grace=0.2, cgroups=cgroups)
    attempt = Attempt(
        run_id="r", job_id="j", name="j", index=None, attempt=1, command="sleep 0",
        env={"PATH": os.environ["PATH"]}, workdir=work, vcpus=1, memory=64, gpus=0,
        timeout=None, image=None, log_stem=work / "j", compute=local_compute(2, 4096),
    )
    results = []
    async def body(*, task_status):
        results.append(await executor.run(attempt, task_status=task_status))
    async with anyio.create_task_group() as tg:
        await tg.start(body)
    after_job = memory_cgroup()
    await executor.aclose()
    print(json.dumps({
        "stepped_at_first": stepped_at_first, "steps_in": cgroups.steps_in,
        "ok": results[0].ok, "before": sys.argv[2],
        "after_job": after_job, "root_left": cgroups.root.exists(),
    }))

anyio.run(main)
"""


def _own_memory_dir() -> Path:
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    own = next(line.split(":", 2)[2] for line in lines if line.split(":")[1] == "memory")
    return Path(f"/sys/fs/cgroup/memory{own}")


@pytest.fixture
def home_not_writable() -> Iterator[Path]:
    """A cgroup for the runner whose own `tasks` it may not write, though it may make
    cgroups below it: a subtree delegated to a user with `cgcreate -a user` and no
    `-t user`, the runner placed in it by root (`cgexec`). Emulated as root without
    CAP_DAC_OVERRIDE and the files read-only (checked by hand as uid 65534 too)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv")
    probe = Cgroups.create(versions=(1,))
    if probe is None or not probe.steps_in:
        pytest.skip("this machine gives flowbatch no writable cgroup v1 memory hierarchy")
    probe.remove()
    home = _own_memory_dir() / f"attack-{os.getpid()}"
    home.mkdir()
    try:
        for name in ("tasks", "cgroup.procs"):
            (home / name).chmod(0o444)
        yield home
    finally:
        # What the runner left (its reaper stops its jobs once it is gone), then the rest.
        for cgroup in [*sorted((p for p in home.rglob("*") if p.is_dir()), reverse=True), home]:
            remove_cgroup(str(cgroup), deadline=WAIT_LIMIT)


def _one_job(home: Path, work: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """A runner placed in `home` by root, without CAP_DAC_OVERRIDE, runs one job."""
    root = Path(__file__).resolve().parents[1]
    drop = "-dac_override,-dac_read_search"
    mount = "/sys/fs/cgroup/memory"
    script = 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"'
    argv = ["/bin/sh", "-c", script, "sh", str(home)]
    argv += ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}"]
    argv += [sys.executable, "-c", _ONE_JOB, str(work), str(home)[len(mount) :], *extra]
    return subprocess.run(
        argv,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_runner_whose_own_cgroup_it_cannot_write_wraps_its_jobs_and_leaves_nothing(
    tmp_path: Path, home_not_writable: Path
) -> None:
    """Such a delegation worked with the wrapper, where the runner never moved: the
    runner finds out at the start that it could not get back, and wraps its jobs."""
    found = _one_job(home_not_writable, tmp_path)
    assert found.returncode == 0, found.stderr
    seen = json.loads(found.stdout)
    assert not seen["stepped_at_first"] and seen["ok"], seen
    assert seen["after_job"] == seen["before"], seen  # the runner is still in its own
    assert not seen["root_left"], seen


def test_a_spawning_thread_that_cannot_leave_a_jobs_cgroup_ends_and_the_runner_lives_on(
    tmp_path: Path, home_not_writable: Path
) -> None:
    """Its own cgroup refuses the runner after the start: the thread that spawned the
    job stays inside the job's cgroup, which is killed with the job. It must be gone
    by then, or the runner (its pid is in the cgroup's `cgroup.procs`) is killed too."""
    found = _one_job(home_not_writable, tmp_path, "home later")
    assert found.returncode == 0, (found.returncode, found.stderr)
    seen = json.loads(found.stdout)
    assert seen["stepped_at_first"] and not seen["steps_in"] and seen["ok"], seen
    assert seen["after_job"] == seen["before"], seen
    assert not seen["root_left"], seen
