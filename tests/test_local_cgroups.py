"""LocalExecutor with a cgroup per attempt (where this machine allows cgroups: root or a
delegated tree, v1 or v2): the memory limit is enforced as on AWS, the peak is the whole
tree's, and stopping an attempt reaches processes that left its process group with
`setsid`. Where no cgroup can be made these tests are skipped; the executor then runs
each job in its process group only (the documented limit)."""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus
from click.testing import CliRunner
from proc_helpers import alive, kill_written_pids, wait_until, written_pid

from flowbatch.cli import app
from flowbatch.executors import local
from flowbatch.executors.base import REASON_TIMEOUT, Attempt, ExecResult
from flowbatch.executors.cgroups import Cgroups, describe_missing
from flowbatch.executors.container import REASON_OOM
from flowbatch.executors.local import LocalExecutor
from flowbatch.lang.model import local_compute

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

GRACE = 0.2
WAIT_LIMIT = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=[1, 2], ids=["v1", "v2"])
async def executor(request: pytest.FixtureRequest) -> AsyncIterator[LocalExecutor]:
    """An executor whose jobs get cgroups of one version (skipped where there are none;
    this machine is often hybrid: v1 controllers, a v2 tree without them)."""
    made = LocalExecutor(
        local_compute(2, 4096), grace=GRACE, cgroups=Cgroups.create(versions=(request.param,))
    )
    try:
        if made.cgroups is None:
            pytest.skip(f"this machine gives flowbatch no writable cgroup v{request.param}")
        yield made
    finally:
        await made.aclose()


def _needs_memory(executor: LocalExecutor) -> None:
    cgroups = executor.cgroups
    if cgroups is None or not cgroups.memory:
        pytest.skip("no memory controller in this cgroup hierarchy")


@pytest.fixture
def strays(tmp_path: Path) -> Iterator[Path]:
    """Kills the pids a test's jobs wrote to *.pid files, whatever the test did."""
    yield tmp_path
    kill_written_pids(tmp_path)


def _attempt(
    tmp: Path, command: str | tuple[str, ...], *, memory: int = 512, timeout: float | None = None
) -> Attempt:
    log_dir = tmp / "logs"
    log_dir.mkdir(exist_ok=True)
    return Attempt(
        run_id="r",
        job_id="job-1",
        name="job",
        index=None,
        attempt=1,
        command=command,
        env={"PATH": os.environ["PATH"]},
        workdir=tmp,
        vcpus=1,
        memory=memory,
        gpus=0,
        timeout=timeout,
        image=None,
        log_stem=log_dir / "job.attempt-1",
        compute=local_compute(2, 4096),
    )


async def _run(executor: LocalExecutor, attempt: Attempt) -> ExecResult:
    results: list[ExecResult] = []

    async def body(*, task_status: TaskStatus[str]) -> None:
        results.append(await executor.run(attempt, task_status=task_status))

    with anyio.fail_after(WAIT_LIMIT):
        async with anyio.create_task_group() as tg:
            await tg.start(body)
    return results[0]


def _touch(mib: int) -> str:
    return f"python3 -c \"b = bytearray({mib} * 2**20); b[::4096] = b'x' * len(b[::4096])\""


# A grandchild in a session of its own that ignores SIGTERM: out of reach of the group.
_ESCAPED = "setsid sh -c 'trap \"\" TERM; echo $$ > escaped.pid; exec sleep 60' & wait"


async def test_memory_beyond_the_limit_is_an_oom_kill_with_aws_reason(
    tmp_path: Path, executor: LocalExecutor
) -> None:
    _needs_memory(executor)
    result = await _run(executor, _attempt(tmp_path, _touch(300), memory=64))
    assert result.exit_code == 137 and not result.ok
    assert result.reason == REASON_OOM
    assert result.peak_memory is not None and 32 <= result.peak_memory <= 64


async def test_peak_memory_is_the_whole_trees_even_for_a_small_job(
    tmp_path: Path, executor: LocalExecutor
) -> None:
    _needs_memory(executor)
    hog = await _run(executor, _attempt(tmp_path, _touch(150)))
    small = await _run(executor, _attempt(tmp_path, "true"))
    assert hog.ok and small.ok and hog.reason == ""
    assert hog.peak_memory is not None and 150 <= hog.peak_memory < 300
    assert small.peak_memory is not None and small.peak_memory < 64


async def test_timeout_stops_a_grandchild_that_left_with_setsid(
    strays: Path, executor: LocalExecutor
) -> None:
    command = _ESCAPED.replace("& wait", "& until [ -s escaped.pid ]; do :; done; wait")
    result = await _run(executor, _attempt(strays, command, timeout=0.5))
    assert result.status_reason == REASON_TIMEOUT
    escaped = written_pid(strays / "escaped.pid")
    assert escaped is not None
    await wait_until(lambda: not alive(escaped), timeout=WAIT_LIMIT)


async def test_terminate_stops_a_grandchild_that_left_with_setsid(
    strays: Path, executor: LocalExecutor
) -> None:
    attempt = _attempt(strays, _ESCAPED)
    escaped: int | None = None

    async def body(*, task_status: TaskStatus[str]) -> None:
        await executor.run(attempt, task_status=task_status)

    with anyio.fail_after(WAIT_LIMIT):
        async with anyio.create_task_group() as tg:
            leader = int(str(await tg.start(body)).partition("@")[0])
            await wait_until(lambda: written_pid(strays / "escaped.pid") is not None)
            escaped = written_pid(strays / "escaped.pid")
            assert escaped is not None and os.getsid(escaped) != os.getsid(leader)
            tg.cancel_scope.cancel()  # what `terminate` and Ctrl-C do to the attempt
    assert escaped is not None
    await wait_until(lambda: not alive(escaped), timeout=WAIT_LIMIT)


async def test_an_ended_attempts_cgroup_is_removed_and_the_runs_with_aclose(
    strays: Path,
) -> None:
    executor = LocalExecutor(local_compute(2, 4096), grace=GRACE)
    try:
        cgroups = executor.cgroups
        if cgroups is None:
            pytest.skip("this machine gives flowbatch no writable cgroup hierarchy")
        # The leader exits at once; its escaped grandchild is what is left of the tree.
        result = await _run(
            executor,
            _attempt(strays, _ESCAPED.replace("& wait", "& until [ -s escaped.pid ]; do :; done")),
        )
        assert result.ok
        escaped = written_pid(strays / "escaped.pid")
        assert escaped is not None
        await wait_until(lambda: not alive(escaped), timeout=WAIT_LIMIT)
        assert [p for p in cgroups.root.iterdir() if p.is_dir()] == []
    finally:
        await executor.aclose()
    assert not cgroups.root.exists()


async def test_a_program_that_does_not_exist_still_cannot_start(
    tmp_path: Path, executor: LocalExecutor
) -> None:
    # Behind the cgroup's wrapper the shell would say 127; Popen's own error is kept.
    result = await _run_unstarted(executor, _attempt(tmp_path, ("no-such-program-xyz", "a")))
    assert result.exit_code is None
    assert result.status_reason.startswith("CannotStartContainerError")
    assert "no-such-program-xyz" in result.status_reason


async def _run_unstarted(executor: LocalExecutor, attempt: Attempt) -> ExecResult:
    return await executor.run(attempt, task_status=anyio.TASK_STATUS_IGNORED)


def test_cgroups_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBATCH_CGROUPS", "off")
    assert Cgroups.create() is None


@pytest.mark.parametrize("cgroups", ["on", "off"])
def test_a_run_says_once_when_local_jobs_get_no_cgroups(tmp_path: Path, cgroups: str) -> None:
    if cgroups == "on":
        probe = Cgroups.create()
        if probe is None:
            pytest.skip("this machine gives flowbatch no writable cgroup hierarchy")
        probe.remove()
    text = 'job a {\n  command = "true"\n  array = 3\n}\njob b {\n  command = "true"\n}\n'
    (tmp_path / "p.flow").write_text(text)
    args = ["run", str(tmp_path / "p.flow"), "--state-dir", str(tmp_path / "state")]
    result = CliRunner().invoke(app, args, env={"FLOWBATCH_CGROUPS": cgroups})
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "not enforced" in line]
    assert notes == ([] if cgroups == "on" else [f"note: {describe_missing()}"])


async def test_a_reaper_killed_by_hand_is_replaced_for_the_cgroup_jobs_that_follow(
    strays: Path, executor: LocalExecutor
) -> None:
    """Jobs in cgroups send the reaper no line, so a reaper killed by hand must be
    replaced as the next job starts: else the runner dying later leaves every job on."""

    async def body(name: str, *, task_status: TaskStatus[str]) -> None:
        attempt = _attempt(strays, f"echo $$ > {name}.pid; exec sleep 60")
        await executor.run(dataclasses.replace(attempt, job_id=name), task_status=task_status)

    with anyio.fail_after(WAIT_LIMIT):
        async with anyio.create_task_group() as tg:
            await tg.start(body, "first")
            await wait_until(lambda: written_pid(strays / "first.pid") is not None)
            reaper = executor._reaper
            assert reaper is not None
            killed = reaper.proc
            killed.kill()
            await wait_until(lambda: killed.poll() is not None)
            await tg.start(body, "second")
            await wait_until(lambda: written_pid(strays / "second.pid") is not None)
            reaper.close()  # the pipe closes as when the runner is killed
            jobs = [written_pid(strays / f"{n}.pid") or 0 for n in ("first", "second")]
            await wait_until(lambda: not any(alive(pid) for pid in jobs), timeout=5)


def _memory_cgroup_of_this_thread() -> str:
    lines = Path("/proc/thread-self/cgroup").read_text().splitlines()
    return next(line.split(":", 2)[2] for line in lines if line.split(":")[1] == "memory")


@pytest.fixture
def v1() -> Iterator[Cgroups]:
    """The runner's cgroups where the spawning thread steps into a job's (cgroup v1)."""
    cgroups = Cgroups.create(versions=(1,))
    if cgroups is None or not cgroups.steps_in:
        pytest.skip("this machine gives flowbatch no writable cgroup v1 memory hierarchy")
    try:
        yield cgroups
    finally:
        cgroups.remove()


async def test_the_spawning_thread_is_back_home_after_each_job_and_no_limit_held_it(
    tmp_path: Path, v1: Cgroups, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the runner's thread is inside a job's cgroup its page faults are charged
    there: no limit may be in place then, or the OOM killer could pick the runner."""
    home = _memory_cgroup_of_this_thread()
    seen: list[tuple[str, int]] = []
    real_popen = subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        job = Path(f"/sys/fs/cgroup/memory{_memory_cgroup_of_this_thread()}")
        seen.append((job.name, int((job / "memory.limit_in_bytes").read_text())))
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", popen)
    executor = LocalExecutor(local_compute(2, 4096), grace=GRACE, cgroups=v1)
    try:
        ok = await _run(executor, _attempt(tmp_path, "cat /proc/self/cgroup", memory=64))
        missing_program = _attempt(tmp_path, ("no-such-program-xyz",), memory=64)
        missing = await _run_unstarted(executor, missing_program)
        assert _memory_cgroup_of_this_thread() == home
    finally:
        await executor.aclose()
    assert ok.ok and missing.exit_code is None
    jobs = [(name, limit) for name, limit in seen if name.startswith("job-1")]
    assert len(jobs) == 2 and all(limit > 64 * 2**20 for _, limit in jobs), seen
    assert ok.peak_memory is not None  # the limit came after: the cgroup measured it


async def test_a_job_already_past_its_limit_when_it_is_set_is_killed_as_by_the_oom_killer(
    tmp_path: Path, v1: Cgroups
) -> None:
    cgroup = v1.job("past-its-limit")
    assert cgroup is not None
    ready = tmp_path / "ready"
    hog = (
        "import sys, time; b = bytearray(96 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
        "open(sys.argv[1], 'w').close(); time.sleep(60)"
    )
    proc = v1.spawn_inside(
        cgroup, functools.partial(subprocess.Popen, [sys.executable, "-c", hog, str(ready)])
    )
    try:
        await wait_until(ready.exists, timeout=WAIT_LIMIT)
        assert not local._limit_started(cgroup, 32)
        await wait_until(lambda: proc.poll() is not None, timeout=WAIT_LIMIT)
        assert proc.returncode == -9
    finally:
        proc.kill()
        proc.wait()
        cgroup.remove()
