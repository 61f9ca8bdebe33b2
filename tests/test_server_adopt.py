"""A restarted flowbatch server re-adopts the attempts it had RUNNING on an engine that
outlives it (`Adoptable`: SLURM's): the same attempt goes on, with its number and log
directory, and its end is recorded as if the server had never stopped. One its engine
no longer knows ends with the host-lost reason, and the retry strategy decides. Here
with the scripted executor and a real store, in process; tests/test_server_engines.py
does it with a real server and real SLURM."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from proc_helpers import wait_until
from run_helpers import RecordingSink

from flowbatch.executors.fake import FakeExecutor, Outcome
from flowbatch.lang.model import ComputeEnv, Host, JobSpec, Queue
from flowbatch.run.clock import FakeClock
from flowbatch.run.runner import Adopted, Runner, RunOptions, standing_runner
from flowbatch.run.state import JobState
from flowbatch.server import arns
from flowbatch.server.registry import Registry
from flowbatch.server.service import HOST_LOST, RUN_ID, NamedSink, Service
from flowbatch.store.jobstore import Store

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HOST = Host(name="cluster", vcpus=8, memory=8192)
CE = ComputeEnv(name="cluster", type="slurm", vcpus=8, memory=8192, hosts=(HOST,))
QUEUE = Queue(name="q", compute=("cluster",))


def _service(state: Path, fake: FakeExecutor) -> tuple[Service, Runner, Store]:
    store = Store.open(state)
    names: dict[str, str] = {}
    runner = standing_runner(
        RunOptions(run_id=RUN_ID, job_ids={}, state_dir=state, flush_interval=0.02),
        sinks=[NamedSink(store, names)],
        executors=lambda ce: fake,
    )
    service = Service(
        store,
        runner,
        names,
        make_registry=lambda callbacks: Registry(
            store.catalog,
            region="us-east-1",
            account=arns.ACCOUNT,
            machine_vcpus=4,
            machine_memory=8192,
            scheduling=callbacks,
            job_tags=callbacks,
        ),
        workdir=state / "work",
    )
    return service, runner, store


def _status(service: Service, job_id: str) -> str:
    return str(_describe(service, job_id)["status"])


def _describe(service: Service, job_id: str) -> dict[str, Any]:
    (found,) = service.call("DescribeJobs", {"jobs": [job_id]})["jobs"]
    return dict(found)


async def _serving(service: Service, runner: Runner, until: Callable[[], bool]) -> None:
    """Run the scheduler until `until()` holds, then stop it as a killed server would
    leave it: what runs stays recorded RUNNING."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run, False)
        await wait_until(until, timeout=20)
        tg.cancel_scope.cancel()


async def test_running_attempts_are_adopted_after_a_restart_and_lost_ones_retried(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    first = FakeExecutor(lambda attempt: Outcome(duration=3600))  # runs until the stop
    service, runner, store = _service(state, first)
    service.start({"cluster": CE}, {"q": QUEUE})
    service.call(
        "RegisterJobDefinition",
        {
            "jobDefinitionName": "long",
            "type": "container",
            "containerProperties": {"command": ["long"], "vcpus": 1, "memory": 64},
        },
    )

    def submit(name: str, **kw: Any) -> str:
        p = {"jobName": name, "jobQueue": "q", "jobDefinition": "long", **kw}
        return str(service.call("SubmitJob", p)["jobId"])

    adopted = submit("adopted", retryStrategy={"attempts": 3})
    array = submit("array", arrayProperties={"size": 2})
    gone_retried = submit("gone-retried", retryStrategy={"attempts": 2})
    gone_failed = submit("gone-failed")
    jobs = [adopted, array, gone_retried, gone_failed]
    await _serving(
        service,
        runner,
        lambda: all(
            _status(service, j) == "RUNNING"
            for j in [*jobs, f"{array}:0", f"{array}:1"]
            if j != array
        ),
    )
    assert len(first.attempts) == 5
    ids = {a.job_id: f"fake-{n}" for n, a in enumerate(first.attempts, 1)}
    logs = {a.job_id: a.log_stem for a in first.attempts}
    store.close()

    second = FakeExecutor()  # what was running ends at once, as the script says: succeeds
    second.gone = {ids[gone_retried], ids[gone_failed]}
    service, runner, store = _service(state, second)
    try:
        assert service.start({"cluster": CE}, {"q": QUEUE}) == 4
        ended = ("SUCCEEDED", "FAILED")
        await _serving(service, runner, lambda: all(_status(service, j) in ended for j in jobs))
        # adopted: the same attempts (numbers, log stems, engine ids), none submitted again
        watched = {a.job_id: (a.attempt, a.log_stem, ext) for a, ext in second.adopted}
        assert watched == {j: (1, logs[j], ids[j]) for j in ids}
        assert [a.job_id for a in second.attempts] == [gone_retried]  # its retry, attempt 2
        assert second.attempts[0].attempt == 2

        job = _describe(service, adopted)
        assert job["status"] == "SUCCEEDED"
        (attempt,) = job["attempts"]
        assert attempt["stoppedAt"] >= attempt["startedAt"] > 0
        assert attempt["container"]["exitCode"] == 0
        # its events as one server would have written them: nothing reported twice
        events = [(e["status"], e["applied"]) for e in store.events(adopted)]
        life = ("SUBMITTED", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED")
        assert events == [(s, True) for s in life]
        for i in (0, 1):
            child = _describe(service, f"{array}:{i}")
            assert child["status"] == "SUCCEEDED" and len(child["attempts"]) == 1
        assert _describe(service, array)["status"] == "SUCCEEDED"

        retried = _describe(service, gone_retried)
        assert retried["status"] == "SUCCEEDED"
        assert retried["attempts"][0]["statusReason"] == HOST_LOST
        assert len(retried["attempts"]) == 2
        failed = _describe(service, gone_failed)
        assert failed["status"] == "FAILED" and failed["statusReason"] == HOST_LOST
        assert len(failed["attempts"]) == 1
        assert not store.rejected  # every state change was one the job could make
    finally:
        store.close()


async def test_an_adopted_attempt_ends_through_the_runner_and_terminate_stops_it(
    tmp_path: Path,
) -> None:
    sink = RecordingSink()
    async with FakeClock().autojump() as clock:
        fake = FakeExecutor(
            lambda a: Outcome(duration=100 if a.name == "a" else 1e9), sleep=clock.sleep
        )
        runner = standing_runner(
            RunOptions(run_id="server", job_ids={}, state_dir=tmp_path, flush_interval=1),
            sinks=[sink],
            executors=lambda ce: fake,
            clock=clock,
        )
        runner.set_compute(CE, enabled=True)
        runner.set_queue(QUEUE)
        assert runner.adoptable("cluster", "cluster") and not runner.adoptable("cluster", "h2")
        specs = [JobSpec(name=n, command="x", queue="q") for n in ("a", "b")]

        def adopted(attempt: int, slurm_id: str) -> Adopted:
            return Adopted(attempt, "cluster", "cluster", tmp_path / slurm_id, slurm_id, "lost")

        runner.submit(
            specs,
            {"a": "id-a", "b": "id-b"},
            running={("a", None): adopted(2, "7"), ("b", None): adopted(1, "8")},
        )
        assert sink.events == []  # they were reported RUNNING before the restart
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run, False)
            await wait_until(lambda: len(fake.adopted) == 2)
            runner.request("id-b", "terminate", "stop it")
            await wait_until(lambda: len(sink.events) == 2)
            tg.cancel_scope.cancel()
    a, b = sorted(sink.events, key=lambda e: e.name)
    assert (a.state, a.attempt, a.external_id, a.log_path) == (
        JobState.SUCCEEDED,
        2,
        "7",
        str(tmp_path / "7"),
    )
    assert (b.state, b.attempt, b.reason) == (JobState.FAILED, 1, "stop it")
    assert [(at.name, at.attempt, at.log_stem, at.job_id) for at, _ in fake.adopted] == [
        ("a", 2, tmp_path / "7", "id-a"),
        ("b", 1, tmp_path / "8", "id-b"),
    ]
    assert fake.finished == [("a", None, 2)] and fake.attempts == []  # nothing submitted
