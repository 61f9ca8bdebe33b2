"""A real `flowbatch server` under requests a careful client would not send, and states a
long-running server reaches: each must be a ClientException (never a 500), and a
server must always come back after a restart, whatever it had accepted."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from click.testing import CliRunner
from proc_helpers import Spawner
from server_process import Server, make_queue, start_server, wait_jobs

from flowbatch.cli import app
from flowbatch.store.jobstore import Store

pytestmark = pytest.mark.slow


def once(server: Server) -> Any:
    """A boto3 client of the server that does not retry a 500 (botocore does, 4 times)."""
    session = botocore.session.Session()
    session.set_config_variable("credentials_file", server.env["AWS_SHARED_CREDENTIALS_FILE"])
    session.set_config_variable("profile", "flowbatch")
    return boto3.Session(botocore_session=session, region_name="us-east-1").client(
        "batch", endpoint_url=server.url, config=Config(retries={"total_max_attempts": 1})
    )


def definition(batch: Any) -> None:
    batch.register_job_definition(
        jobDefinitionName="d", type="container", containerProperties={"command": ["true"]}
    )


def test_a_job_waiting_on_one_that_expired_does_not_keep_the_server_from_starting(
    spawn: Spawner, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    # Jobs are kept 1.8 s after they end (expired every 0.45 s).
    server = start_server(spawn, state, "--keep-hours", "0.0005")
    batch = server.client()
    make_queue(batch, "q")
    make_queue(batch, "held", state="DISABLED")
    definition(batch)
    first = batch.submit_job(jobName="first", jobQueue="q", jobDefinition="d")["jobId"]
    waiting = batch.submit_job(
        jobName="waiting", jobQueue="held", jobDefinition="d", dependsOn=[{"jobId": first}]
    )["jobId"]
    wait_jobs(batch, [first])
    deadline = time.monotonic() + 30
    while batch.describe_jobs(jobs=[first])["jobs"]:  # until it has expired
        assert time.monotonic() < deadline, "the first job did not expire"
        time.sleep(0.1)
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=30)

    again = start_server(spawn, state, "--keep-hours", "0.0005")
    batch = again.client()
    # The dependency was met before it expired: the job runs once its queue takes work.
    batch.update_job_queue(jobQueue="held", state="ENABLED")
    assert wait_jobs(batch, [waiting])[waiting]["status"] == "SUCCEEDED"


def test_cancel_and_terminate_of_a_child_that_is_not_there_are_client_errors(
    spawn: Spawner, tmp_path: Path
) -> None:
    server = start_server(spawn, tmp_path / "state")
    batch = once(server)
    make_queue(batch, "held", state="DISABLED")
    definition(batch)
    array = batch.submit_job(
        jobName="a", jobQueue="held", jobDefinition="d", arrayProperties={"size": 3}
    )["jobId"]
    single = batch.submit_job(jobName="s", jobQueue="held", jobDefinition="d")["jobId"]
    answers = {}
    for job_id in (f"{array}:abc", f"{array}:3", f"{array}:-1", f"{single}:0"):
        for call in (batch.cancel_job, batch.terminate_job):
            try:
                call(jobId=job_id, reason="r")
                answers[job_id, call.__name__] = 200
            except ClientError as error:
                answers[job_id, call.__name__] = error.response["Error"]["Code"]
    assert set(answers.values()) == {"ClientException"}, answers
    # Nothing was cancelled: child -1 is no child of the array (it was its last).
    listed = batch.list_jobs(arrayJobId=array, jobStatus="FAILED")["jobSummaryList"]
    assert listed == []


def test_the_jobs_of_a_local_run_in_the_same_state_directory_are_not_the_servers(
    spawn: Spawner, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    (tmp_path / "p.flow").write_text('job a {\n  command = "echo local-secret"\n}\n')
    ran = CliRunner().invoke(app, ["run", str(tmp_path / "p.flow"), "--state-dir", str(state)])
    assert ran.exit_code == 0, ran.output
    with Store.open(state) as store:
        [local] = store.job_ids_starting("")
    server = start_server(spawn, state)
    logs = server.client("logs")
    with pytest.raises(ClientError) as raised:
        logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=f"a/default/{local}.1")
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
    batch = server.client()
    arn = f"arn:aws:batch:us-east-1:000000000000:job/{local}"
    for call in (
        lambda: batch.tag_resource(resourceArn=arn, tags={"k": "v"}),
        lambda: batch.list_tags_for_resource(resourceArn=arn),
    ):
        with pytest.raises(ClientError) as raised:
            call()
        assert "not found" in raised.value.response["Error"]["Message"]


def test_a_second_server_on_the_same_state_directory_is_refused(
    spawn: Spawner, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    go = tmp_path / "go"
    first = start_server(spawn, state)
    batch = first.client()
    make_queue(batch, "q")
    _until_file(batch, "held", go)
    held = batch.submit_job(jobName="held", jobQueue="q", jobDefinition="held")["jobId"]
    wait_jobs(batch, [held], lambda j: j["status"] == "RUNNING")
    try:
        with pytest.raises(AssertionError, match="did not say it listens"):
            start_server(spawn, state, timeout=30)
        # The first server's job was left alone: still running, its attempt not ended.
        [job] = batch.describe_jobs(jobs=[held])["jobs"]
        assert job["status"] == "RUNNING" and "stoppedAt" not in job["attempts"][0], job
    finally:
        go.touch()
    assert wait_jobs(batch, [held])[held]["status"] == "SUCCEEDED"


def test_a_job_cancelled_and_expired_while_it_waited_is_no_dependent_when_its_dependency_ends(
    spawn: Spawner, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    go = tmp_path / "go"
    # Jobs are kept 1.8 s after they end (expired every 0.45 s).
    server = start_server(spawn, state, "--keep-hours", "0.0005")
    batch = server.client()
    make_queue(batch, "q")
    _until_file(batch, "until-go", go)
    definition(batch)
    first = batch.submit_job(jobName="first", jobQueue="q", jobDefinition="until-go")["jobId"]
    waiting = batch.submit_job(
        jobName="waiting", jobQueue="q", jobDefinition="d", dependsOn=[{"jobId": first}]
    )["jobId"]
    batch.cancel_job(jobId=waiting, reason="not wanted")
    deadline = time.monotonic() + 30
    while batch.describe_jobs(jobs=[waiting])["jobs"]:  # until it has expired
        assert time.monotonic() < deadline, "the cancelled job did not expire"
        time.sleep(0.1)
    go.touch()
    assert wait_jobs(batch, [first], timeout=30)[first]["status"] == "SUCCEEDED"
    assert server.proc.poll() is None


def _until_file(batch: Any, name: str, go: Path) -> None:
    """Register definition `name`: a job that runs until the file `go` exists."""
    batch.register_job_definition(
        jobDefinitionName=name,
        type="container",
        containerProperties={"command": ["sh", "-c", f"until [ -e {go} ]; do sleep 0.05; done"]},
    )
