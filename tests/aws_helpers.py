"""What the aws_batch tests share: an `aws_batch` compute environment, an attempt to
run on it, a `task_status` that keeps the ids it is given, and a client factory that
records every request the executor's botocore clients send."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

from moto_fixtures import QUEUE, REGION, Recorder

from flowbatch.executors import logfiles
from flowbatch.executors.aws_batch import default_clients
from flowbatch.executors.base import Attempt
from flowbatch.lang.model import ComputeEnv


def cloud(endpoint: str = "http://127.0.0.1:9", poll: float = 0.05) -> ComputeEnv:
    options = {"job_queue": QUEUE, "region": REGION, "endpoint": endpoint, "poll_interval": poll}
    return ComputeEnv(
        name="cloud", type="aws_batch", vcpus=256, memory=1 << 40, options=MappingProxyType(options)
    )


def attempt(tmp_path: Path, ce: ComputeEnv, name: str = "a", **changes: Any) -> Attempt:
    index = changes.pop("index", None)
    number = changes.pop("attempt", 1)
    job_id = "job-1" if index is None else f"job-1:{index}"
    values: dict[str, Any] = {
        "run_id": "20261201-120000-abcd",
        "job_id": job_id,
        "name": name,
        "index": index,
        "attempt": number,
        "command": "echo hello",
        "env": {"AWS_BATCH_JOB_ID": job_id, "GREETING": "hi", "FLOWBATCH_RUN_ID": "r"},
        "workdir": tmp_path,
        "vcpus": 2,
        "memory": 512,
        "gpus": 0,
        "timeout": 90.0,
        "image": "busybox",
        "log_stem": logfiles.stem(tmp_path, name, index, number),
        "compute": ce,
        "pipeline": "/work/p/post trade.flow",
        "tags": {"team": "data"},
    }
    values.update(changes)
    return Attempt(**values)


class Started:
    def __init__(self) -> None:
        self.ids: list[str] = []

    def started(self, value: object = None) -> None:
        self.ids.append(str(value))


def recording(recorder: Recorder, on_submit: Any = None) -> Any:
    """A client factory that records every request the executor's clients send."""

    def clients(ce: ComputeEnv) -> tuple[Any, Any]:
        batch, logs = default_clients(ce)
        for client in (batch, logs):
            client.meta.events.register("provide-client-params.*.*", recorder)
        if on_submit is not None:
            batch.meta.events.register("after-call.batch.SubmitJob", on_submit)
        return batch, logs

    return clients
