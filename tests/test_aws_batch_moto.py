"""The aws_batch executor and `flowbatch run` against moto's AWS Batch, running as a
real HTTP server (its simple backend: no containers, a job ends SUCCEEDED as it is
submitted). The requests flowbatch sends are recorded from botocore's own events and
asserted: definitions registered once and revised on change, one SubmitJob per
attempt with its command, environment and tags, logs read from CloudWatch Logs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import anyio
import pytest
from aws_helpers import Started, attempt, cloud, recording
from click.testing import CliRunner
from moto_fixtures import QUEUE, REGION, Moto, Recorder, moto  # noqa: F401

from flowbatch.cli import app
from flowbatch.executors import logfiles, make_executor
from flowbatch.executors.aws_batch import PRELUDE, AwsBatchExecutor
from flowbatch.executors.base import Attempt, ExecResult
from flowbatch.lang.model import ComputeEnv

pytestmark = [pytest.mark.anyio, pytest.mark.moto, pytest.mark.slow]


@pytest.fixture
def fresh(moto: Moto) -> Iterator[Moto]:  # noqa: F811
    moto.reset()
    yield moto


async def test_definitions_are_registered_once_and_revised_on_change(
    tmp_path: Path,
    fresh: Moto,
) -> None:
    recorder = Recorder()
    ce = cloud(fresh.endpoint)
    executor = AwsBatchExecutor(ce, clients=recording(recorder))
    results: list[ExecResult] = []

    async def one(a: Attempt) -> None:
        results.append(await executor.run(a, task_status=Started()))

    async with anyio.create_task_group() as tg:
        for i in range(3):  # three children of one array: one definition
            tg.start_soon(one, attempt(tmp_path, ce, index=i))
    assert [r.ok for r in results] == [True, True, True]
    assert len(recorder.of("RegisterJobDefinition")) == 1
    # ... and, sharing their command, one AWS array job of 3 children
    (array,) = recorder.of("SubmitJob")
    assert array["arrayProperties"] == {"size": 3}
    assert sorted(r.extra["aws_job_id"].rsplit(":", 1)[1] for r in results) == ["0", "1", "2"]
    await executor.run(attempt(tmp_path, ce, memory=1024), task_status=Started())
    registered = recorder.of("RegisterJobDefinition")
    assert len(registered) == 2  # the memory changed: a new revision
    # A second run (a new executor, nothing cached) finds both by their digest.
    again = Recorder()
    other = AwsBatchExecutor(ce, clients=recording(again))
    await other.run(attempt(tmp_path, ce, index=0), task_status=Started())
    await other.run(attempt(tmp_path, ce, memory=1024), task_status=Started())
    assert again.of("RegisterJobDefinition") == []
    revisions = fresh.client("batch").describe_job_definitions(jobDefinitionName="a")
    assert sorted(d["revision"] for d in revisions["jobDefinitions"]) == [1, 2]
    submitted = {s["jobDefinition"] for s in again.of("SubmitJob")}
    assert submitted == {d["jobDefinitionArn"] for d in revisions["jobDefinitions"]}

    first = registered[0]
    digest = first["tags"].pop("flowbatch:digest")
    assert len(digest) == 64
    assert first == {
        "jobDefinitionName": "a",
        "type": "container",
        "platformCapabilities": ["EC2"],
        "containerProperties": {
            "image": "busybox",
            "resourceRequirements": [
                {"type": "VCPU", "value": "2"},
                {"type": "MEMORY", "value": "512"},
            ],
        },
        "retryStrategy": {"attempts": 1},
        "timeout": {"attemptDurationSeconds": 90},
        "propagateTags": True,
        "tags": {"team": "data", "flowbatch:pipeline": "post trade.flow"},
    }


async def test_a_submission_carries_the_attempt_and_its_logs_come_back(
    tmp_path: Path, fresh: Moto
) -> None:
    recorder = Recorder()
    logs = fresh.client("logs")
    logs.create_log_group(logGroupName="/aws/batch/job")

    def on_submit(parsed: dict[str, Any], **_: Any) -> None:
        # What the container would print, where AWS Batch puts it (`a/default/ID`).
        stream = f"a/default/{parsed['jobId']}"
        logs.create_log_stream(logGroupName="/aws/batch/job", logStreamName=stream)
        now = int(time.time() * 1000)
        events = [{"timestamp": now + i, "message": f"line {i}"} for i in range(3)]
        logs.put_log_events(logGroupName="/aws/batch/job", logStreamName=stream, logEvents=events)

    ce = cloud(fresh.endpoint)
    executor = AwsBatchExecutor(ce, clients=recording(recorder, on_submit))
    started = Started()
    a = attempt(tmp_path, ce, index=4, attempt=2, command=("python3", "-c", "print(1)"))
    result = await executor.run(a, task_status=started)
    (submitted,) = recorder.of("SubmitJob")
    assert started.ids == [result.extra["aws_job_id"]]  # the runner records AWS's id
    assert submitted["jobName"] == "a"
    assert submitted["jobQueue"] == QUEUE
    assert submitted["jobDefinition"].startswith(
        f"arn:aws:batch:{REGION}:123456789012:job-definition/a:"
    )
    assert submitted["containerOverrides"] == {
        "command": ["/bin/sh", "-c", PRELUDE, "sh", "python3", "-c", "print(1)"],
        "environment": [  # AWS sets AWS_BATCH_* itself: flowbatch's go as FLOWBATCH_JOB_*
            {"name": "FLOWBATCH_JOB_ARRAY_INDEX", "value": "4"},
            {"name": "FLOWBATCH_JOB_ATTEMPT", "value": "2"},
            {"name": "FLOWBATCH_JOB_ID", "value": "job-1:4"},
            {"name": "FLOWBATCH_RUN_ID", "value": "r"},
            {"name": "GREETING", "value": "hi"},
        ],
    }
    assert submitted["tags"] == {
        "team": "data",
        "flowbatch:pipeline": "post trade.flow",
        "flowbatch:run": "20261201-120000-abcd",
    }
    assert "arrayProperties" not in submitted and "dependsOn" not in submitted
    assert result.ok and result.exit_code == 0
    assert logfiles.beside(a.log_stem, "stdout").read_text() == "line 0\nline 1\nline 2\n"
    assert logfiles.beside(a.log_stem, "stdout").stat().st_mode & 0o777 == 0o600
    assert logfiles.beside(a.log_stem, "stderr").read_text() == ""
    got = recorder.of("GetLogEvents")[0]
    assert got["logGroupName"] == "/aws/batch/job"
    assert got["logStreamName"] == f"a/default/{result.extra['aws_job_id']}"


async def test_a_queue_aws_does_not_know_fails_the_attempt_with_aws_words(
    tmp_path: Path, fresh: Moto
) -> None:
    ce = cloud(fresh.endpoint)
    ce = ComputeEnv(
        name=ce.name,
        type=ce.type,
        vcpus=ce.vcpus,
        memory=ce.memory,
        options=MappingProxyType({**ce.options, "job_queue": "nope"}),
    )
    result = await make_executor(ce).run(attempt(tmp_path, ce), task_status=Started())
    assert result.exit_code is None and not result.retryable
    assert result.status_reason == (
        "AWS Batch refused the job: ClientException: Job queue nope does not exist"
    )


PIPELINE = """definition step {
  image   = "busybox"
  timeout = 2m
}
job fetch: step {
  command = "echo fetch"
}
job shards: step {
  command = "echo {{ array.index }}"
  array   = 3
  after   = [fetch]
}
job native: step {
  command = "echo $AWS_BATCH_JOB_ARRAY_INDEX"
  array   = 4
  after   = [fetch]
}
job report: step {
  command = ["echo", "report"]
  after   = [shards, native]
}
"""


RUN = ["run", "p.flow", "--computes", "aws.flow", "--compute", "local=cloud"]


def test_a_pipeline_moved_to_aws_runs_there_and_its_store_shows_aws_ids(
    tmp_path: Path, fresh: Moto
) -> None:
    (tmp_path / "p.flow").write_text(PIPELINE)
    (tmp_path / "aws.flow").write_text(
        "compute cloud {\n"
        '  type          = "aws_batch"\n'
        f'  job_queue     = "{QUEUE}"\n'
        f'  region        = "{REGION}"\n'
        f'  endpoint      = "{fresh.endpoint}"\n'
        "  poll_interval = 0.05\n"
        "}\n"
    )
    state = str(tmp_path / "state")
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        result = runner.invoke(
            app,
            [*RUN, "--state-dir", state],
        )
        assert result.exit_code == 0, result.stderr
        jobs = json.loads(runner.invoke(app, ["jobs", "--json", "--state-dir", state]).stdout)
        children = runner.invoke(
            app, ["jobs", "--json", "--children", "shards", "--state-dir", state]
        )
        described = runner.invoke(
            app, ["describe", "fetch", "shards:2", "native:3", "report", "--state-dir", state]
        )
    assert described.exit_code == 0, described.stderr
    assert {j["jobName"]: j["status"] for j in jobs["jobSummaryList"]} == {
        "fetch": "SUCCEEDED",
        "shards": "SUCCEEDED",
        "native": "SUCCEEDED",
        "report": "SUCCEEDED",
    }
    assert [c["status"] for c in json.loads(children.stdout)["jobSummaryList"]] == ["SUCCEEDED"] * 3
    ours = json.loads(described.stdout)["jobs"]
    aws_ids = [job["attempts"][-1]["externalId"] for job in ours]
    assert all(job["attempts"][-1]["computeEnvironment"] == "cloud" for job in ours)
    # Each is a job AWS Batch knows, by that name, and that ended as flowbatch says.
    theirs = fresh.client("batch").describe_jobs(jobs=aws_ids)["jobs"]
    by_id = {j["jobId"]: j for j in theirs}
    assert [(by_id[i]["jobName"], by_id[i]["status"]) for i in aws_ids] == [
        ("fetch", "SUCCEEDED"),
        ("shards", "SUCCEEDED"),
        ("native", "SUCCEEDED"),
        ("report", "SUCCEEDED"),
    ]
    # `native`'s children share their command: one AWS array job of 4, child 3 is
    # AWS's `ID:3`; `shards`' differ ({{ array.index }}): one AWS job each.
    parent, _, index = aws_ids[2].rpartition(":")
    assert index == "3"
    (native,) = fresh.client("batch").describe_jobs(jobs=[parent])["jobs"]
    assert native["arrayProperties"]["size"] == 4
    assert native["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 4
    assert ":" not in aws_ids[1]
    shard = by_id[aws_ids[1]]
    assert shard["container"]["command"] == [
        "/bin/sh",
        "-c",
        PRELUDE,
        "sh",
        "/bin/sh",
        "-c",
        "echo 2",
    ]
