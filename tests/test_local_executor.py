"""LocalExecutor against real processes: exit codes and log files, environment and
working directory, stopping whole process trees (timeout, cancellation), Spot
interruptions, container exit reasons and output that never passes through flowbatch."""

from __future__ import annotations

import errno
import os
import random
import re
import resource
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import MappingProxyType

import anyio
import pytest
from anyio.abc import TaskStatus
from proc_helpers import alive, wait_until

from flowbatch.executors import logfiles
from flowbatch.executors.base import REASON_ESSENTIAL_EXITED, REASON_TIMEOUT, Attempt, ExecResult
from flowbatch.executors.container import REASON_OOM
from flowbatch.executors.local import LocalExecutor
from flowbatch.lang.model import ComputeEnv, local_compute

pytestmark = pytest.mark.anyio

GRACE = 0.2  # seconds between SIGTERM and SIGKILL in these tests
WAIT_LIMIT = 10.0  # bound on waiting for a condition a job brings about


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _attempt(
    tmp_path: Path,
    command: str,
    *,
    env: Mapping[str, str] | None = None,
    workdir: Path | None = None,
    timeout: float | None = None,
    compute: ComputeEnv | None = None,
    image: str | None = None,
    host_env: Mapping[str, str] | None = None,
) -> Attempt:
    log_dir = tmp_path / "logs"
    log_dir.mkdir(exist_ok=True)
    return Attempt(
        run_id="20240101-000000-abcd",
        job_id="job-1",
        name="job",
        index=None,
        attempt=1,
        command=command,
        env=dict(env) if env is not None else {"PATH": os.environ["PATH"]},
        workdir=workdir or tmp_path,
        vcpus=1,
        memory=256,
        gpus=0,
        timeout=timeout,
        image=image,
        log_stem=log_dir / "job.attempt-1",
        compute=compute or local_compute(2, 4096),
        host_env=dict(host_env or {}),
    )


async def _run(executor: LocalExecutor, attempt: Attempt) -> tuple[ExecResult, int]:
    """Run `attempt` to its end; returns the result and the pid reported at start."""
    results: list[ExecResult] = []

    async def body(*, task_status: TaskStatus[str]) -> None:
        results.append(await executor.run(attempt, task_status=task_status))

    async with anyio.create_task_group() as tg:
        pid = await tg.start(body)
    return results[0], int(pid.partition("@")[0])  # "pid@starttime"


def _read_pid(path: Path) -> int | None:
    text = path.read_text() if path.exists() else ""
    return int(text) if text.endswith("\n") else None


# A job whose leader waits on a child that ignores SIGTERM; the child writes its pid.
_STUBBORN = "sh -c 'trap \"\" TERM; echo $$ > child.pid; exec sleep 60' & wait"


@pytest.fixture
async def executor() -> AsyncIterator[LocalExecutor]:
    made = LocalExecutor(local_compute(2, 4096), grace=GRACE)
    yield made
    await made.aclose()


async def test_exit_code_and_output_files(tmp_path: Path, executor: LocalExecutor) -> None:
    attempt = _attempt(tmp_path, "echo out; echo err >&2; exit 3")
    result, pid = await _run(executor, attempt)
    assert result.exit_code == 3 and not result.ok
    assert result.status_reason == REASON_ESSENTIAL_EXITED and result.reason == ""
    assert pid > 0
    assert logfiles.beside(attempt.log_stem, "stdout").read_text() == "out\n"
    assert logfiles.beside(attempt.log_stem, "stderr").read_text() == "err\n"


async def test_env_is_exactly_the_attempts_and_workdir_is_used(
    tmp_path: Path, executor: LocalExecutor
) -> None:
    workdir = tmp_path / "wd"
    workdir.mkdir()
    env = {"PATH": os.environ["PATH"], "GREETING": "hello world"}
    attempt = _attempt(
        tmp_path, 'printf "%s|%s|%s" "$GREETING" "${HOME-unset}" "$(pwd)"', env=env, workdir=workdir
    )
    result, _ = await _run(executor, attempt)
    assert result.exit_code == 0 and result.ok
    assert logfiles.beside(attempt.log_stem, "stdout").read_text() == f"hello world|unset|{workdir}"


@pytest.mark.slow
async def test_timeout_kills_the_tree_including_a_child_ignoring_sigterm(
    tmp_path: Path, executor: LocalExecutor
) -> None:
    attempt = _attempt(tmp_path, _STUBBORN, timeout=1.5)
    result, leader = await _run(executor, attempt)
    child = _read_pid(tmp_path / "child.pid")
    assert child is not None, "the child never started"
    assert result.status_reason == REASON_TIMEOUT and "1.5s" in result.reason
    assert result.retryable is False
    assert not alive(leader)  # reaped by the executor
    # SIGKILL was sent; its delivery to a reparented child is asynchronous.
    await wait_until(lambda: not alive(child), WAIT_LIMIT)


async def test_cancelling_the_awaiting_task_terminates_the_group(
    tmp_path: Path, executor: LocalExecutor
) -> None:
    attempt = _attempt(tmp_path, _STUBBORN)
    results: list[ExecResult] = []
    pidfile = tmp_path / "child.pid"

    async def body(*, task_status: TaskStatus[str]) -> None:
        results.append(await executor.run(attempt, task_status=task_status))

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            leader = int(str(await tg.start(body)).partition("@")[0])
            await wait_until(lambda: _read_pid(pidfile) is not None, WAIT_LIMIT)
            found = _read_pid(pidfile)
            assert found is not None and alive(found) and alive(leader)
            child: int = found
            scope.cancel()
    assert scope.cancelled_caught
    assert results == []  # cancellation propagates; there is no result
    assert not alive(leader)  # reaped by the executor
    # SIGKILL was sent; its delivery to a reparented child is asynchronous.
    await wait_until(lambda: not alive(child), WAIT_LIMIT)


@pytest.mark.slow
async def test_spot_interruption_gives_aws_reason_and_is_retryable(tmp_path: Path) -> None:
    spot = ComputeEnv(name="spot", vcpus=2, memory=4096, spot=True, interruption_rate=1.0, hosts=())
    executor = LocalExecutor(spot, grace=GRACE, rng=random.Random(7))
    attempt = _attempt(tmp_path, "exec sleep 60", compute=spot)
    try:
        result, leader = await _run(executor, attempt)
    finally:
        await executor.aclose()
    assert re.fullmatch(r"Host EC2 \(instance i-[0-9a-f]{17}\) terminated\.", result.status_reason)
    assert result.retryable is True
    assert result.exit_code == 143  # SIGTERM, which sleep does not ignore
    assert not alive(leader)


async def test_fifty_megabytes_of_output_go_to_the_file_not_memory(
    tmp_path: Path, executor: LocalExecutor
) -> None:
    size = 50 * 1024 * 1024
    attempt = _attempt(tmp_path, f"head -c {size} /dev/zero")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result, _ = await _run(executor, attempt)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert result.exit_code == 0
    assert logfiles.beside(attempt.log_stem, "stdout").stat().st_size == size
    assert grown < 10 * 1024, f"the runner grew by {grown} KiB"


def _stand_in_podman(tmp_path: Path, script: str) -> tuple[ComputeEnv, dict[str, str]]:
    """A compute environment whose container runtime is `podman` on PATH, which is a
    shell script running `script`; and the runner's env that puts it first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    podman = bin_dir / "podman"
    podman.write_text(f"#!/bin/sh\n{script}\n")
    podman.chmod(0o755)
    compute = ComputeEnv(
        name="local", vcpus=2, memory=4096, options=MappingProxyType({"runtime": "podman"})
    )
    return compute, {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


async def test_container_attempt_gets_the_oom_reason_for_137(
    tmp_path: Path, executor: LocalExecutor
) -> None:
    # A stand-in runtime that ends as the OOM killer would make podman end.
    compute, env = _stand_in_podman(tmp_path, "exit 137")
    attempt = _attempt(tmp_path, "true", host_env=env, compute=compute, image="busybox")
    result, _ = await _run(executor, attempt)
    assert result.exit_code == 137
    assert result.reason == REASON_OOM


@pytest.mark.parametrize("image", [None, "busybox"])
@pytest.mark.parametrize("gone", ["missing", "a file"])
async def test_a_missing_workdir_fails_the_attempt_before_it_starts(
    tmp_path: Path, executor: LocalExecutor, image: str | None, gone: str
) -> None:
    # The runtime itself runs in the attempt's own directory (conmon#504), so the job's
    # directory is checked first: the same reason with or without a container.
    compute, env = _stand_in_podman(tmp_path, "touch ran\nexit 125")
    workdir = tmp_path / "gone"
    if gone == "a file":
        workdir.write_text("not a directory")
    attempt = _attempt(
        tmp_path, "true", host_env=env, compute=compute, image=image, workdir=workdir
    )
    # It never starts, so it is awaited directly: there is no pid to report.
    result = await executor.run(attempt, task_status=anyio.TASK_STATUS_IGNORED)
    assert result.exit_code is None
    why = os.strerror(errno.ENOENT if gone == "missing" else errno.ENOTDIR)
    assert result.status_reason.endswith(f"{why}: {workdir}")
    assert result.status_reason.startswith("CannotStartContainerError")
    assert not (logfiles.beside(attempt.log_stem, "conmon") / "ran").exists()


async def test_container_attempt_exiting_normally_has_no_reason(
    tmp_path: Path, executor: LocalExecutor
) -> None:
    compute, env = _stand_in_podman(tmp_path, "exit 1")
    attempt = _attempt(tmp_path, "true", host_env=env, compute=compute, image="busybox")
    result, _ = await _run(executor, attempt)
    assert result.exit_code == 1 and result.reason == ""


async def test_peak_memory_without_cgroups_is_measured_per_attempt(tmp_path: Path) -> None:
    # Without a cgroup (see test_local_cgroups.py for with), the figure is the kernel's
    # rusage. A child of the shell touches 400 MiB, more than this test process holds, so
    # the kernel's figure is the job's own. A bare `true` is below what the kernel folds
    # in from the parent at exec time, so it is reported as unknown rather than as the
    # parent's size.
    executor = LocalExecutor(local_compute(2, 4096), grace=GRACE, cgroups=None)
    hog = _attempt(
        tmp_path,
        'python3 -c "b = bytearray(400 * 2**20); b[::4096] = b\\"x\\" * len(b[::4096])"',
    )
    try:
        hog_result, _ = await _run(executor, hog)
        small_result, _ = await _run(executor, _attempt(tmp_path, "true"))
    finally:
        await executor.aclose()
    assert hog_result.ok and small_result.ok
    assert hog_result.peak_memory is not None and 400 <= hog_result.peak_memory < 600
    assert small_result.peak_memory is None
