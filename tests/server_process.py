"""A real `flowbatch server` process for tests: started on a free loopback port (it
prints the port it took), driven by unmodified boto3 and the AWS CLI, and stopped by
the `spawn` fixture's teardown whatever the test did.

`from server_process import start_server`: pytest puts tests/ on sys.path (conftest).
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from proc_helpers import Spawner

REGION = "us-east-1"
TERMINAL = ("SUCCEEDED", "FAILED")


@dataclass
class Server:
    url: str
    state: Path
    proc: subprocess.Popen[str]
    stderr: Path
    env: dict[str, str] = field(default_factory=dict)

    def client(self, service: str = "batch") -> Any:
        """An unmodified boto3 client configured as a user would: the credentials file
        the server wrote, its profile, the endpoint."""
        session = botocore.session.Session()
        session.set_config_variable("credentials_file", self.env["AWS_SHARED_CREDENTIALS_FILE"])
        session.set_config_variable("config_file", self.env["AWS_CONFIG_FILE"])
        session.set_config_variable("profile", "flowbatch")
        return boto3.Session(botocore_session=session, region_name=REGION).client(
            service, endpoint_url=self.url
        )

    def client_with(self, **credentials: str) -> Any:
        """A boto3 client with other credentials (a wrong key, a forged secret)."""
        return boto3.client("batch", endpoint_url=self.url, region_name=REGION, **credentials)

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")


def server_env(state: Path) -> dict[str, str]:
    """What a user sets to use the server's key: AWS's own variables, nothing else of
    the developer's AWS configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(state / "credentials"),
        AWS_CONFIG_FILE=str(state / "no-aws-config"),
        AWS_PROFILE="flowbatch",
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


def start_server(
    spawn: Spawner, state: Path, *extra: str, timeout: float = 60.0, cwd: Path | None = None
) -> Server:
    """Start `flowbatch server` on a free port of 127.0.0.1 with `state` as its state
    directory and wait for its `listening on URL` line."""
    state.mkdir(parents=True, exist_ok=True)
    stderr = state.parent / f"{state.name}.server.log"
    with stderr.open("ab") as err:
        proc = spawn(
            [sys.executable, "-m", "flowbatch", "server", "--listen", "127.0.0.1:0",
             "--state-dir", str(state), *extra],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=cwd,
        )  # fmt: skip
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                raise AssertionError(
                    f"flowbatch server did not say it listens:\n{stderr.read_text()}"
                )
            if not sel.select(timeout=left):
                continue
            line = proc.stdout.readline()
            if line.startswith("listening on "):
                url = line.split()[-1]
                break
    return Server(url=url, state=state, proc=proc, stderr=stderr, env=server_env(state))


def make_queue(batch: Any, name: str = "q", *, state: str = "ENABLED", vcpus: int = 2) -> None:
    """A job queue `name` on the UNMANAGED environment `ce` (made the first time) of
    `vcpus` vCPUs of this machine."""
    if not batch.describe_compute_environments(computeEnvironments=["ce"])["computeEnvironments"]:
        batch.create_compute_environment(
            computeEnvironmentName="ce", type="UNMANAGED", unmanagedvCpus=vcpus
        )
    batch.create_job_queue(
        jobQueueName=name,
        state=state,
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "ce"}],
    )


def wait_jobs(
    client: Any,
    job_ids: Iterable[str],
    done: Callable[[dict[str, Any]], bool] = lambda j: j["status"] in TERMINAL,
    timeout: float = 120.0,
) -> dict[str, dict[str, Any]]:
    """DescribeJobs until every job satisfies `done` (by default: ended)."""
    ids = list(job_ids)
    deadline = time.monotonic() + timeout
    while True:
        found = {}
        for start in range(0, len(ids), 100):
            for job in client.describe_jobs(jobs=ids[start : start + 100])["jobs"]:
                found[job["jobId"]] = job
        if len(found) == len(ids) and all(done(j) for j in found.values()):
            return found
        if time.monotonic() > deadline:
            states = {j: found.get(j, {}).get("status") for j in ids}
            raise AssertionError(f"jobs not done in time: {states}")
        time.sleep(0.1)
