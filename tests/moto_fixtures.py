"""moto's AWS Batch as a real HTTP server (`moto_server`) on a free loopback port, set
to its simple Batch backend (no Docker: a submitted job ends SUCCEEDED at once), with
a compute environment and a job queue made; and a recorder of the requests botocore
sends, so that tests assert what flowbatch asked of AWS, not only that it ran."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import engine_unavailable

REGION = "us-east-1"
QUEUE = "flowbatch-test-queue"
CREDENTIALS = {  # moto accepts any; botocore needs some to sign
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def moto_server_path() -> str:
    found = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    if not os.access(found, os.X_OK):
        engine_unavailable("moto_server", "`moto[server]` is not installed")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Moto:
    endpoint: str
    proc: subprocess.Popen[bytes]

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def reset(self) -> None:
        urllib.request.urlopen(
            urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"), timeout=10
        ).close()
        _simple_batch(self.endpoint)
        _queue(self)


def _simple_batch(endpoint: str) -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/config",
        data=json.dumps({"batch": {"use_docker": False}}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()


def _queue(moto: Moto) -> None:
    iam = moto.client("iam")
    role = iam.create_role(RoleName="batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    batch = moto.client("batch")
    ce = batch.create_compute_environment(
        computeEnvironmentName="flowbatch-ce", type="UNMANAGED", state="ENABLED", serviceRole=role
    )
    batch.create_job_queue(
        jobQueueName=QUEUE,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce["computeEnvironmentArn"]}],
    )


@contextlib.contextmanager
def moto_server(env: dict[str, str] | None = None) -> Iterator[Moto]:
    """A moto_server process, ready, stopped (and waited for) whatever happens."""
    port = _free_port()
    proc = subprocess.Popen(
        [moto_server_path(), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    engine_unavailable("moto_server", f"it did not answer on {endpoint}")
                time.sleep(0.05)
        moto = Moto(endpoint, proc)
        _simple_batch(endpoint)
        _queue(moto)
        yield moto
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Recorder:
    """Every request botocore sends (operation name, parameters), in order."""

    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, model: Any, params: Any, **_: Any) -> None:
        self.sent.append((model.name, json.loads(json.dumps(params, default=str))))

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [p for name, p in self.sent if name == operation]


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in CREDENTIALS.items():
            mp.setenv(key, value)
        # Nothing of this machine's own AWS set-up (a profile, its files) takes part.
        mp.delenv("AWS_PROFILE", raising=False)
        mp.delenv("AWS_DEFAULT_PROFILE", raising=False)
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        with moto_server() as server:
            yield server
