"""flowbatch server's runner with real processes: jobs submitted while others run,
dependencies on jobs that ended, and a stop that leaves running jobs as recorded (for
the next start to settle) with their processes gone."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from proc_helpers import alive, wait_until
from run_helpers import RecordingSink

from flowbatch.executors.local import LocalExecutor
from flowbatch.lang.model import ComputeEnv, Dependency, Host, JobSpec, Queue
from flowbatch.run.runner import RunOptions, standing_runner
from flowbatch.run.state import JobState

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
S = JobState


def spec(name: str, command: str, *after: str, tmp: Path) -> JobSpec:
    return JobSpec(
        name=name,
        command=command,
        queue="q",
        workdir=str(tmp),
        after=tuple(Dependency(job=a) for a in after),
        vcpus=1,
        memory=64,
    )


async def test_jobs_come_and_go_and_a_stop_leaves_running_ones_recorded(tmp_path: Path) -> None:
    sink = RecordingSink()
    runner = standing_runner(
        RunOptions(run_id="server", job_ids={}, state_dir=tmp_path / "state", flush_interval=0.05),
        sinks=[sink],
        executors=lambda ce: LocalExecutor(ce, grace=0.5),
    )
    host = Host(name="local", vcpus=2, memory=1024)
    runner.set_compute(ComputeEnv(name="local", vcpus=2, memory=1024, hosts=(host,)), enabled=True)
    runner.set_queue(Queue(name="q", compute=("local",)))

    def final(name: str) -> S | None:
        states = [e.state for e in sink.events if e.name == name]
        return states[-1] if states else None

    pid_file = tmp_path / "pid"
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run, False)
        runner.submit([spec("a", "echo a > a.txt", tmp=tmp_path)], {"a": "a"})
        await wait_until(lambda: final("a") is S.SUCCEEDED)
        # submitted after `a` ended: the dependency is met at once
        runner.submit([spec("b", "cat a.txt > b.txt", "a", tmp=tmp_path)], {"b": "b"})
        await wait_until(lambda: final("b") is S.SUCCEEDED)
        assert (tmp_path / "b.txt").read_text() == "a\n"
        runner.submit(
            [spec("long", f"echo $$ > {pid_file}; exec sleep 300", tmp=tmp_path)], {"long": "long"}
        )
        await wait_until(lambda: final("long") is S.RUNNING and pid_file.exists())
        await wait_until(lambda: pid_file.read_text().strip().isdigit())
        pid = int(pid_file.read_text())
        assert not runner.finished.is_set()  # out of work, it goes on standing
        tg.cancel_scope.cancel()
    assert final("long") is S.RUNNING  # left as it was, for the next start to settle
    await wait_until(lambda: not alive(pid))
