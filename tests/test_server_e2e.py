"""A real `flowbatch server` driven by unmodified boto3 and the AWS CLI: the whole life
of a queue, with the jobs really running (plain commands on this machine, and the
busybox image through podman)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from engine_helpers import engine_unavailable
from proc_helpers import Spawner
from server_process import Server, start_server, wait_jobs

pytestmark = pytest.mark.slow

IMAGE = "localhost/flowbatch-busybox:test"


@pytest.fixture
def server(spawn: Spawner, tmp_path: Path) -> Server:
    return start_server(spawn, tmp_path / "state")


def make_queue(batch: Any, name: str = "q", vcpus: int = 2) -> str:
    ce = batch.create_compute_environment(
        computeEnvironmentName=f"{name}-ce",
        type="MANAGED",
        computeResources={
            "type": "EC2",
            "maxvCpus": vcpus,
            "subnets": ["subnet-1"],
            "instanceRole": "ecsInstanceRole",
        },
    )
    assert ce["computeEnvironmentArn"].endswith(f":compute-environment/{name}-ce")
    queue = batch.create_job_queue(
        jobQueueName=name,
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": f"{name}-ce"}],
    )
    return str(queue["jobQueueArn"])


def register(batch: Any, name: str, command: list[str], **props: Any) -> str:
    definition = batch.register_job_definition(
        jobDefinitionName=name,
        type="container",
        containerProperties={
            "command": command,
            "resourceRequirements": [
                {"type": "VCPU", "value": "1"},
                {"type": "MEMORY", "value": "128"},
            ],
            **props,
        },
        parameters={"word": "hello"},
    )
    return str(definition["jobDefinitionArn"])


def test_the_life_of_a_queue_through_boto3(server: Server, tmp_path: Path) -> None:
    batch = server.client()
    queue_arn = make_queue(batch)
    out = tmp_path / "out"
    out.mkdir()
    register(
        batch,
        "echo",
        ["sh", "-c", f'echo "$0 $AWS_BATCH_JOB_ARRAY_INDEX" >> {out}/log', "Ref::word"],
    )
    assert (
        batch.register_job_definition(
            jobDefinitionName="echo", type="container", containerProperties={"command": ["true"]}
        )["revision"]
        == 2
    )

    plain = batch.submit_job(
        jobName="plain",
        jobQueue="q",
        jobDefinition="echo:1",
        parameters={"word": "overridden"},
        containerOverrides={"environment": [{"name": "X", "value": "1"}]},
    )
    arr = batch.submit_job(
        jobName="arr", jobQueue=queue_arn, jobDefinition="echo:1", arrayProperties={"size": 3},
        dependsOn=[{"jobId": plain["jobId"]}],
    )  # fmt: skip
    n2n = batch.submit_job(
        jobName="n2n", jobQueue="q", jobDefinition="echo:1", arrayProperties={"size": 3},
        dependsOn=[{"jobId": arr["jobId"], "type": "N_TO_N"}],
    )  # fmt: skip
    seq = batch.submit_job(
        jobName="seq", jobQueue="q", jobDefinition="echo:1", arrayProperties={"size": 3},
        dependsOn=[{"type": "SEQUENTIAL"}],
    )  # fmt: skip
    child = batch.submit_job(
        jobName="child", jobQueue="q", jobDefinition="echo:1",
        dependsOn=[{"jobId": f"{arr['jobId']}:2"}],
        containerOverrides={"command": ["sh", "-c", f"echo child >> {out}/log"]},
    )  # fmt: skip
    ids = [j["jobId"] for j in (plain, arr, n2n, seq, child)]
    jobs = wait_jobs(batch, ids)
    assert {j["jobName"]: j["status"] for j in jobs.values()} == {
        "plain": "SUCCEEDED", "arr": "SUCCEEDED", "n2n": "SUCCEEDED", "seq": "SUCCEEDED",
        "child": "SUCCEEDED",
    }  # fmt: skip
    log = (out / "log").read_text().splitlines()
    assert log.count("overridden ") == 1  # the plain job: its parameter, no index
    assert sorted(line for line in log if line.startswith("hello")) == sorted(
        ["hello 0", "hello 1", "hello 2"] * 3
    )
    assert "child" in log
    a = jobs[arr["jobId"]]
    assert a["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 3
    assert a["jobArn"].endswith(f":job/{arr['jobId']}")

    # children listed by arrayJobId; pagination sees every job exactly once
    kids = batch.list_jobs(arrayJobId=arr["jobId"], jobStatus="SUCCEEDED")["jobSummaryList"]
    assert sorted(k["arrayProperties"]["index"] for k in kids) == [0, 1, 2]
    seen: list[str] = []
    for page in batch.get_paginator("list_jobs").paginate(
        jobQueue="q", jobStatus="SUCCEEDED", PaginationConfig={"PageSize": 2}
    ):
        seen += [s["jobId"] for s in page["jobSummaryList"]]
    assert sorted(seen) == sorted(ids)


def test_cancel_terminate_disable_and_delete(server: Server, tmp_path: Path) -> None:
    batch = server.client()
    make_queue(batch, vcpus=1)
    register(batch, "sleeper", ["sleep", "300"])
    running = batch.submit_job(jobName="long", jobQueue="q", jobDefinition="sleeper")
    waiting = batch.submit_job(jobName="waits", jobQueue="q", jobDefinition="sleeper")
    wait_jobs(batch, [running["jobId"]], lambda j: j["status"] == "RUNNING")
    batch.cancel_job(jobId=waiting["jobId"], reason="not needed")
    batch.terminate_job(jobId=running["jobId"], reason="stop now")
    jobs = wait_jobs(batch, [running["jobId"], waiting["jobId"]])
    assert jobs[waiting["jobId"]]["status"] == "FAILED"
    assert jobs[waiting["jobId"]]["statusReason"] == "not needed"
    assert jobs[running["jobId"]]["status"] == "FAILED"
    assert jobs[running["jobId"]]["statusReason"] == "stop now"
    assert jobs[running["jobId"]]["attempts"], "a terminated job keeps its attempt"

    with pytest.raises(ClientError) as err:
        batch.delete_job_queue(jobQueue="q")
    assert err.value.response["Error"]["Code"] == "ClientException"
    batch.update_job_queue(jobQueue="q", state="DISABLED")
    # a disabled queue keeps what is submitted to it RUNNABLE
    held = batch.submit_job(jobName="held", jobQueue="q", jobDefinition="sleeper")
    wait_jobs(batch, [held["jobId"]], lambda j: j["status"] == "RUNNABLE")
    batch.delete_job_queue(jobQueue="q")
    # the jobs a deleted queue held are terminated, as on AWS
    gone = wait_jobs(batch, [held["jobId"]])[held["jobId"]]
    assert (gone["status"], gone["statusReason"]) == ("FAILED", "Job queue deleted")
    batch.update_compute_environment(computeEnvironment="q-ce", state="DISABLED")
    batch.delete_compute_environment(computeEnvironment="q-ce")
    assert batch.describe_job_queues()["jobQueues"] == []
    assert batch.describe_compute_environments()["computeEnvironments"] == []


def test_a_retry_strategy_and_an_exit_code_as_aws_reports_them(server: Server) -> None:
    batch = server.client()
    make_queue(batch)
    register(batch, "fails", ["sh", "-c", "exit 3"])
    job = batch.submit_job(
        jobName="fails",
        jobQueue="q",
        jobDefinition="fails",
        retryStrategy={"attempts": 2, "evaluateOnExit": [{"onExitCode": "3", "action": "RETRY"}]},
    )
    found = wait_jobs(batch, [job["jobId"]])[job["jobId"]]
    assert found["status"] == "FAILED"
    assert [a["container"]["exitCode"] for a in found["attempts"]] == [3, 3]
    assert found["container"]["exitCode"] == 3


def test_wrong_credentials_are_refused(server: Server) -> None:
    bad = server.client_with(
        aws_access_key_id="AKIAWRONGWRONGWRONG0", aws_secret_access_key="x" * 40
    )
    with pytest.raises(ClientError) as err:
        bad.describe_job_queues()
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert err.value.response["Error"]["Code"] == "UnrecognizedClientException"
    creds = server.state / "credentials"
    key = next(line.split("=", 1)[1].strip() for line in creds.read_text().splitlines()
           if line.startswith("aws_access_key_id"))  # fmt: skip
    forged = server.client_with(aws_access_key_id=key, aws_secret_access_key="y" * 40)
    with pytest.raises(ClientError) as err:
        forged.describe_job_queues()
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert "y" * 40 not in server.log()


def test_the_aws_cli_against_the_server(server: Server, tmp_path: Path) -> None:
    aws = [sys.executable, "-m", "awscli", "--endpoint-url", server.url, "--output", "json"]

    def cli(*args: str) -> dict[str, Any]:
        done = subprocess.run(
            [*aws, "batch", *args], env=server.env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout or "{}"))

    cli("create-compute-environment", "--compute-environment-name", "ce", "--type", "UNMANAGED")
    cli("create-job-queue", "--job-queue-name", "q", "--priority", "1",
        "--compute-environment-order", "order=1,computeEnvironment=ce")  # fmt: skip
    cli("register-job-definition", "--job-definition-name", "d", "--type", "container",
        "--container-properties", json.dumps({"command": ["echo", "from the CLI"]}))  # fmt: skip
    job = cli("submit-job", "--job-name", "j", "--job-queue", "q", "--job-definition", "d")
    while True:  # the CLI polls as a user's script would: each call a new process
        found = cli("describe-jobs", "--jobs", job["jobId"])["jobs"][0]
        if found["status"] in ("SUCCEEDED", "FAILED"):
            break
    assert found["status"] == "SUCCEEDED"


@pytest.mark.podman
def test_a_container_job_runs_its_image(server: Server) -> None:
    if shutil.which("podman") is None:
        engine_unavailable("podman", "podman is not on PATH")
    if subprocess.run(["podman", "image", "exists", IMAGE], timeout=60).returncode != 0:
        engine_unavailable("podman", f"the image {IMAGE} is missing")
    batch = server.client()
    make_queue(batch)
    register(batch, "boxed", ["sh", "-c", "test -f /bin/busybox"], image=IMAGE)
    job = batch.submit_job(jobName="boxed", jobQueue="q", jobDefinition="boxed")
    found = wait_jobs(batch, [job["jobId"]])[job["jobId"]]
    assert found["status"] == "SUCCEEDED", found.get("statusReason")
    assert found["container"]["image"] == IMAGE


def test_a_jobs_output_through_cloudwatch_logs_get_log_events(server: Server) -> None:
    batch = server.client()
    make_queue(batch)
    register(batch, "talks", ["sh", "-c", 'echo "out $0"; echo "err $0" >&2', "Ref::word"])
    job = batch.submit_job(jobName="talks", jobQueue="q", jobDefinition="talks")
    found = wait_jobs(batch, [job["jobId"]])[job["jobId"]]
    stream = found["container"]["logStreamName"]
    assert stream == found["attempts"][0]["container"]["logStreamName"]
    logs = server.client("logs")
    events = logs.get_log_events(
        logGroupName="/aws/batch/job", logStreamName=stream, startFromHead=True
    )["events"]
    assert [e["message"] for e in events] == ["out hello", "err hello"]
    with pytest.raises(ClientError) as err:
        logs.get_log_events(logGroupName="/aws/batch/job", logStreamName="nope/default/x.1")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_config_declares_environments_and_queues_in_the_language(
    spawn: Spawner, tmp_path: Path
) -> None:
    config = tmp_path / "service.flow"
    config.write_text(
        'compute box {\n  type = "local"\n  vcpus = 1\n  memory = 1GiB\n}\n\n'
        "queue batch {\n  priority = 5\n  compute = [box]\n}\n"
    )
    server = start_server(spawn, tmp_path / "state", "--config", str(config))
    batch = server.client()
    (queue,) = batch.describe_job_queues(jobQueues=["batch"])["jobQueues"]
    assert queue["priority"] == 5 and queue["state"] == "ENABLED"
    register(batch, "one", ["sh", "-c", 'test "$AWS_BATCH_CE_NAME" = box'])
    job = batch.submit_job(jobName="j", jobQueue="batch", jobDefinition="one")
    assert wait_jobs(batch, [job["jobId"]])[job["jobId"]]["status"] == "SUCCEEDED"
    with pytest.raises(ClientError) as err:
        batch.delete_compute_environment(computeEnvironment="box")
    assert err.value.response["Error"]["Code"] == "ClientException"
