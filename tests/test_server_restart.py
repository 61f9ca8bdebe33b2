"""`kill -9` of a flowbatch server mid-run, then a restart: every accepted job is still
there, queued ones run, running ones are settled by their retry strategy (the attempt
ends with AWS's host-lost reason), and nothing that ended runs again."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from proc_helpers import Spawner, wait_for
from server_process import start_server, wait_jobs

pytestmark = pytest.mark.slow


def definition(batch: Any, name: str, script: str) -> None:
    batch.register_job_definition(
        jobDefinitionName=name,
        type="container",
        containerProperties={
            "command": ["sh", "-c", script],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}],
        },
    )


def test_kill_9_then_restart_loses_nothing_and_runs_nothing_twice(
    spawn: Spawner, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    runs = tmp_path / "runs"
    go = tmp_path / "go"
    server = start_server(spawn, state)
    batch = server.client()
    client = [batch]
    batch.create_compute_environment(
        computeEnvironmentName="ce", type="UNMANAGED", unmanagedvCpus=2
    )
    batch.create_job_queue(
        jobQueueName="q",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "ce"}],
    )
    definition(batch, "once", f'echo "$0" >> {runs}')
    # Waits for `go` (the test's, made only after the kill), so it is running at the kill.
    definition(batch, "held", f'echo "$0" >> {runs}; while [ ! -e {go} ]; do sleep 0.05; done')

    def submit(name: str, kind: str, **kw: Any) -> str:
        return str(
            client[0].submit_job(
                jobName=name, jobQueue="q", jobDefinition=kind,
                containerOverrides={"command": ["sh", "-c", _script(kind, runs, go), name]},
                **kw,
            )["jobId"]
        )  # fmt: skip

    done_before = submit("done-before", "once")
    wait_jobs(batch, [done_before])
    retried = submit("retried", "held", retryStrategy={"attempts": 2})
    lost = submit("lost", "held")
    wait_jobs(batch, [retried, lost], lambda j: j["status"] == "RUNNING")
    wait_for(lambda: runs.exists() and {"retried", "lost"} <= set(runs.read_text().split()))
    queued = submit("queued", "once")  # no room: both vCPUs are taken
    after_lost = submit("after-lost", "once", dependsOn=[{"jobId": lost}])

    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=30)
    go.touch()

    again = start_server(spawn, state)
    batch = client[0] = again.client()
    # a job submitted now may depend on one that ended before the crash
    later = submit("later", "once", dependsOn=[{"jobId": done_before}])
    jobs = wait_jobs(batch, [done_before, retried, lost, queued, after_lost, later])
    status = {j["jobName"]: j["status"] for j in jobs.values()}
    assert status == {
        "done-before": "SUCCEEDED",
        "retried": "SUCCEEDED",
        "lost": "FAILED",
        "queued": "SUCCEEDED",
        "after-lost": "FAILED",
        "later": "SUCCEEDED",
    }
    host_lost = "Host EC2 (instance flowbatch-server) terminated."
    assert jobs[lost]["statusReason"] == host_lost
    r = jobs[retried]["attempts"]
    assert len(r) == 2 and r[0]["statusReason"] == host_lost
    assert jobs[after_lost]["statusReason"].startswith("Dependency failed")
    names = runs.read_text().split()
    assert names.count("done-before") == 1 and names.count("queued") == 1
    assert names.count("retried") == 2 and names.count("lost") == 1
    assert "after-lost" not in names


def _script(kind: str, runs: Path, go: Path) -> str:
    if kind == "once":
        return f'echo "$0" >> {runs}'
    return f'echo "$0" >> {runs}; while [ ! -e {go} ]; do sleep 0.05; done'
