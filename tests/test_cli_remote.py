"""The CLI against a server (`--server URL`): what `submit`, `jobs`, `describe`, `logs`,
`cancel` and `terminate` send and how they read the answers, against moto's Batch
running as a real HTTP server (moto without Docker: jobs are SUCCEEDED at once, so
only the requests and their shapes are checked here), and how every failure on the way
(refused credentials, a server error, nothing listening) becomes one line and an exit
code, never a traceback. The translation itself is in test_cli_submit.py.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import boto3
import moto_fixtures
import pytest
from click.testing import CliRunner, Result

from flowbatch.cli import app
from flowbatch.cli.remote import Remote, RemoteError, control_command, list_jobs, logs_command

REGION = "us-east-1"
KEYS = {"AWS_ACCESS_KEY_ID": "AKIDTESTTESTTEST0000", "AWS_SECRET_ACCESS_KEY": "x" * 40}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env(**extra: str) -> dict[str, str | None]:
    """For CliRunner: no AWS setting of the developer's, then `extra`."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("AWS_")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent/credentials",
        AWS_CONFIG_FILE="/nonexistent/config",
        FLOWBATCH_SERVER=None,
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.update(extra)
    return env


@dataclass
class Moto:
    url: str

    def client(self, service: str = "batch") -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"],
        )

    def cli(self, *args: str, **env: str) -> Result:
        full = {**KEYS, **env}
        return CliRunner().invoke(app, list(args), env=_clean_env(**full))


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    """moto's Batch on a free port (moto_fixtures), with queues `default` and `fast`."""
    with moto_fixtures.moto_server() as running:
        server = Moto(running.endpoint)
        iam = server.client("iam")
        role = iam.create_role(RoleName="cli", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        batch = server.client()
        ce = batch.create_compute_environment(
            computeEnvironmentName="local-ce", type="UNMANAGED", serviceRole=role
        )["computeEnvironmentArn"]
        for name in ("default", "fast"):
            batch.create_job_queue(
                jobQueueName=name,
                state="ENABLED",
                priority=1,
                computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
            )
        yield server


PIPELINE = """
param word = "a b; echo PWNED"
compute local {
  vcpus = 8
  memory = 8GiB
}
queue fast { compute = [local] }
job prep {
  image = "busybox"
  command = "echo {{ params.word }}"
  memory = 256MiB
  timeout = 2m
  queue = fast
  retry {
    attempts = 2
    evaluate_on_exit = [{ on_exit_code = "137", action = "retry" }]
  }
}
job frames {
  image = "busybox"
  command = ["echo", "{{ array.index }}"]
  array = 3
  sequential = true
  after = [prep]
}
job each {
  image = "busybox"
  command = "echo each {{ job.id }}"
  array = 3
  after = [n_to_n(frames), frames[1]]
  env = { MODE = "fast" }
}
"""


def _submit(moto: Moto, tmp_path: Path, text: str = PIPELINE, *args: str) -> dict[str, str]:
    (tmp_path / "p.flow").write_text(text)
    result = moto.cli("submit", str(tmp_path / "p.flow"), "--server", moto.url, *args)
    assert result.exit_code == 0, result.output
    return dict(line.split(" ") for line in result.stdout.splitlines())


@pytest.mark.moto
@pytest.mark.slow
def test_submit_registers_definitions_and_wires_dependencies(moto: Moto, tmp_path: Path) -> None:
    ids = _submit(moto, tmp_path)
    assert list(ids) == ["prep", "frames", "each"]  # topological order
    batch = moto.client()
    jobs = {j["jobName"]: j for j in batch.describe_jobs(jobs=list(ids.values()))["jobs"]}
    assert jobs["prep"]["dependsOn"] == []
    assert jobs["prep"]["jobQueue"].endswith(":job-queue/fast")
    assert jobs["frames"]["dependsOn"] == [{"jobId": ids["prep"]}, {"type": "SEQUENTIAL"}]
    assert jobs["frames"]["arrayProperties"]["size"] == 3
    assert jobs["each"]["dependsOn"] == [
        {"jobId": ids["frames"], "type": "N_TO_N"},
        {"jobId": f"{ids['frames']}:1"},
    ]
    assert jobs["prep"]["container"]["command"] == ["/bin/sh", "-c", "echo 'a b; echo PWNED'"]
    # one command for every child: `array.index` differs, so a `case` picks each child's
    frames_command = jobs["frames"]["container"]["command"]
    assert frames_command[:2] == ["/bin/sh", "-c"]
    assert "AWS_BATCH_JOB_ARRAY_INDEX" in frames_command[2]
    assert jobs["each"]["tags"]["flowbatch:pipeline"] == str(tmp_path / "p.flow")
    definition = batch.describe_job_definitions(jobDefinitionName="p-prep")["jobDefinitions"][-1]
    assert definition["type"] == "container"
    assert definition["containerProperties"]["image"] == "busybox"
    resources = definition["containerProperties"]["resourceRequirements"]
    assert {r["type"]: r["value"] for r in resources} == {"VCPU": "1", "MEMORY": "256"}
    assert definition["timeout"] == {"attemptDurationSeconds": 120}
    retry = definition["retryStrategy"]
    assert retry["attempts"] == 2
    # moto writes the action lowercased
    rules = [{**rule, "action": rule["action"].upper()} for rule in retry["evaluateOnExit"]]
    assert rules == [{"action": "RETRY", "onExitCode": "137"}]
    assert definition["tags"] == {"flowbatch:pipeline": str(tmp_path / "p.flow")}
    each = batch.describe_job_definitions(jobDefinitionName="p-each")["jobDefinitions"][-1]
    assert each["containerProperties"]["environment"] == [{"name": "MODE", "value": "fast"}]


@pytest.mark.moto
@pytest.mark.slow
def test_submit_to_a_queue_the_server_lacks_sends_nothing(moto: Moto, tmp_path: Path) -> None:
    (tmp_path / "lonely.flow").write_text(
        "queue nowhere { compute = [local] }\n"
        'job one {\n  image = "busybox"\n  command = "true"\n  queue = nowhere\n}\n'
    )
    result = moto.cli("submit", str(tmp_path / "lonely.flow"), "--server", moto.url)
    assert result.exit_code == 2
    assert "no job queue `nowhere` on the server" in result.stderr
    assert "Traceback" not in result.output
    found = moto.client().describe_job_definitions(jobDefinitionName="lonely-one")
    assert found["jobDefinitions"] == []


@pytest.mark.moto
@pytest.mark.slow
def test_jobs_lists_every_queue_and_status(moto: Moto, tmp_path: Path) -> None:
    ids = _submit(moto, tmp_path)
    listed = moto.cli("jobs", "--server", moto.url, "--json")
    assert listed.exit_code == 0, listed.output
    found = {j["jobId"] for j in json.loads(listed.stdout)["jobSummaryList"]}
    assert set(ids.values()) <= found  # `prep` is in queue fast, the others in default
    only = moto.cli("jobs", "--server", moto.url, "--queue", "fast", "--json")
    fast = {j["jobId"] for j in json.loads(only.stdout)["jobSummaryList"]}
    assert ids["prep"] in fast
    assert ids["frames"] not in fast
    children = moto.cli("jobs", "--server", moto.url, "--children", ids["frames"])
    assert children.exit_code == 0, children.output
    assert [line.split()[0] for line in children.stdout.splitlines()[1:]] == [
        f"{ids['frames']}:{i}" for i in range(3)
    ]
    running = moto.cli("jobs", "--server", moto.url, "--status", "RUNNING", "--json")
    assert json.loads(running.stdout)["jobSummaryList"] == []  # all SUCCEEDED in moto


@pytest.mark.moto
@pytest.mark.slow
def test_describe_prints_what_the_server_has(moto: Moto, tmp_path: Path) -> None:
    ids = _submit(moto, tmp_path)
    result = moto.cli("describe", "--server", moto.url, ids["each"], ids["prep"])
    assert result.exit_code == 0, result.output
    assert [j["jobName"] for j in json.loads(result.stdout)["jobs"]] == ["each", "prep"]
    unknown = moto.cli("describe", "--server", moto.url, "no-such-job")
    assert unknown.exit_code == 2
    assert "no job `no-such-job` on the server" in unknown.stderr


@pytest.mark.moto
@pytest.mark.slow
def test_cancel_of_a_finished_job_says_so(moto: Moto, tmp_path: Path) -> None:
    ids = _submit(moto, tmp_path)
    for action in ("cancel", "terminate"):
        result = moto.cli(action, "--server", moto.url, ids["prep"])
        assert result.exit_code == 1
        assert f"job {ids['prep']} already SUCCEEDED" in result.stderr


@pytest.mark.moto
@pytest.mark.slow
def test_logs_reads_the_attempts_stream_through_get_log_events(moto: Moto, tmp_path: Path) -> None:
    ids = _submit(moto, tmp_path)
    job = moto.client().describe_jobs(jobs=[ids["prep"]])["jobs"][0]
    stream = job["container"]["logStreamName"]
    logs = moto.client("logs")
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName="/aws/batch/job")
    logs.create_log_stream(logGroupName="/aws/batch/job", logStreamName=stream)
    now = int(time.time() * 1000)
    lines = [f"line {i} \x1b[31m" for i in range(5)]
    logs.put_log_events(
        logGroupName="/aws/batch/job",
        logStreamName=stream,
        logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)],
    )
    result = moto.cli("logs", "--server", moto.url, ids["prep"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "".join(f"{line}\n" for line in lines)  # output as it is
    parent = moto.cli("logs", "--server", moto.url, ids["frames"])
    assert parent.exit_code == 2
    assert "is an array job" in parent.stderr


@pytest.mark.moto
@pytest.mark.slow
def test_the_servers_key_in_the_state_dir_is_used_when_the_chain_has_none(
    moto: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _clean_env().items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    state = tmp_path / "state"
    state.mkdir()
    (state / "credentials").write_text(
        "[flowbatch]\naws_access_key_id = AKIAFROMSTATEDIR0001\n"
        f"aws_secret_access_key = {'s' * 40}\n"
    )
    remote = Remote(moto.url, state)
    seen: ClassVar[list[str]] = []
    remote.client("batch").meta.events.register(
        "before-send", lambda request, **_: seen.append(request.headers["Authorization"].decode())
    )
    assert "default" in [q for q in _queue_names(remote)]
    assert "Credential=AKIAFROMSTATEDIR0001/" in seen[0]
    missing = Remote(moto.url, tmp_path / "elsewhere")
    with pytest.raises(RemoteError, match="no AWS credentials") as err:
        missing.client("batch")
    assert err.value.exit_code == 2


def _queue_names(remote: Remote) -> list[str]:
    from flowbatch.cli.remote import queue_names

    return queue_names(remote)


# -- failures on the way, with a stub server --------------------------------------------------
class _Stub(http.server.BaseHTTPRequestHandler):
    status = 403
    code = "UnrecognizedClientException"
    message = "The security token included in the request is invalid."

    answers: ClassVar[dict[str, dict[str, Any]]] = {}  # path: a 200's body, instead of the error
    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(self.path)
        if self.path in self.answers:
            body = json.dumps(self.answers[self.path]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        body = json.dumps({"__type": self.code, "message": self.message}).encode()
        self.send_response(self.status)
        self.send_header("x-amzn-ErrorType", self.code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[tuple[str, type[_Stub]]]:
    handler = type("Handler", (_Stub,), {"answers": {}, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=_clean_env(**KEYS))


@pytest.mark.slow
def test_refused_credentials_are_one_line_and_exit_2(stub: tuple[str, type[_Stub]]) -> None:
    url, _ = stub
    result = _cli("jobs", "--server", url)
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: DescribeJobQueues: the server refused the credentials "
        "(UnrecognizedClientException: The security token included in the request is invalid.)"
    )
    assert "AWS_SHARED_CREDENTIALS_FILE" in result.stderr  # the hint
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_a_bad_request_exits_2_and_a_server_error_exits_1(stub: tuple[str, type[_Stub]]) -> None:
    url, handler = stub
    handler.status, handler.code, handler.message = 400, "ClientException", "Job ID(s) not found"
    bad = _cli("describe", "--server", url, "x")
    assert bad.exit_code == 2
    assert "DescribeJobs: the server said ClientException: Job ID(s) not found" in bad.stderr
    handler.status, handler.code, handler.message = 500, "ServerException", "boom"
    broken = _cli("describe", "--server", url, "x")
    assert broken.exit_code == 1
    assert "ServerException: boom" in broken.stderr
    assert "Traceback" not in bad.output + broken.output


@pytest.mark.slow
def test_nothing_listening_exits_1() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    result = _cli("describe", "--server", url, "x")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot reach the flowbatch server at {url}")
    assert "Traceback" not in result.output


def test_a_server_that_is_no_url_exits_2() -> None:
    result = _cli("jobs", "--server", "ftp://x")
    assert result.exit_code == 2
    assert "not an http:// or https:// URL" in result.stderr


def test_server_comes_from_the_environment_too(stub: tuple[str, type[_Stub]]) -> None:
    url, _ = stub
    result = CliRunner().invoke(app, ["jobs"], env=_clean_env(**KEYS, FLOWBATCH_SERVER=url))
    assert result.exit_code == 2
    assert "refused the credentials" in result.stderr


# -- the loops, with a fake server ---------------------------------------------------------
class FakeRemote(Remote):
    """A Remote whose calls go to methods of this class: a scripted server."""

    def __init__(self, jobs: list[dict[str, Any]]) -> None:
        super().__init__("http://fake")
        self.states = jobs  # DescribeJobs answers these in turn, the last one for ever
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.events: list[list[str]] = []

    def call(self, operation: str, service: str = "batch", **params: Any) -> dict[str, Any]:
        self.sent.append((operation, params))
        if operation == "describe_jobs":
            job = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            return {"jobs": [job]}
        if operation == "list_jobs":
            pages = {None: ("a", "t1"), "t1": ("b", "t2"), "t2": ("c", None)}
            name, token = pages[params.get("nextToken")]
            job = {"jobId": f"{name}-{params['jobStatus']}", "createdAt": 1}
            return {"jobSummaryList": [job], **({"nextToken": token} if token else {})}
        if operation == "get_log_events":
            token = params.get("nextToken") or "0"
            ready = self.events[: int(token) + 1] if self.events else []
            lines = ready[int(token)] if int(token) < len(ready) else []
            following = str(int(token) + 1) if lines else token
            return {"events": [{"message": m} for m in lines], "nextForwardToken": following}
        return {}


def test_list_jobs_follows_next_token_for_every_status() -> None:
    remote = FakeRemote([{}])
    found = list_jobs(remote, queue="q", status=None, children=None, name=None)
    assert len(found) == 3 * 7
    assert all(p["jobQueue"] == "q" for op, p in remote.sent if op == "list_jobs")
    children = FakeRemote([{}])
    list_jobs(children, queue=None, status="running", children="A", name=None)
    assert children.sent == [
        ("list_jobs", {"arrayJobId": "A", "jobStatus": "RUNNING"}),
        ("list_jobs", {"arrayJobId": "A", "jobStatus": "RUNNING", "nextToken": "t1"}),
        ("list_jobs", {"arrayJobId": "A", "jobStatus": "RUNNING", "nextToken": "t2"}),
    ]


def test_cancel_waits_for_the_job_to_show_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("flowbatch.cli.remote._POLL_SECONDS", 0.01)
    reason = "Job cancelled by user"
    remote = FakeRemote(
        [
            {"jobId": "J", "status": "RUNNABLE"},
            {"jobId": "J", "status": "RUNNABLE"},
            {"jobId": "J", "status": "FAILED", "statusReason": reason},
        ]
    )
    control_command(remote, "cancel", "J", None, wait=30)
    assert ("cancel_job", {"jobId": "J", "reason": reason}) in remote.sent
    assert "job J cancelled" in capsys.readouterr().err
    # a server that words the reason its own way, and says the job was cancelled
    worded = FakeRemote(
        [
            {"jobId": "J", "status": "RUNNABLE"},
            {"jobId": "J", "status": "FAILED", "statusReason": "by X", "isCancelled": True},
        ]
    )
    control_command(worded, "cancel", "J", "by X: no longer needed", wait=30)
    assert "job J cancelled" in capsys.readouterr().err
    failed = FakeRemote(
        [
            {"jobId": "J", "status": "RUNNABLE"},
            {"jobId": "J", "status": "FAILED", "statusReason": "oom"},
        ]
    )
    with pytest.raises(RemoteError, match="job J FAILED: oom"):
        control_command(failed, "terminate", "J", None, wait=30)
    started = FakeRemote([{"jobId": "J", "status": "RUNNING"}])
    with pytest.raises(RemoteError, match="had already started") as err:
        control_command(started, "cancel", "J", None, wait=30)
    assert err.value.exit_code == 1
    assert not any(op == "cancel_job" for op, _ in started.sent)


def test_logs_follow_prints_until_the_attempt_ends(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("flowbatch.cli.remote._POLL_SECONDS", 0.01)
    running = {
        "jobId": "J",
        "status": "RUNNING",
        "attempts": [],
        "container": {"logStreamName": "d/default/J.1"},
    }
    done = {**running, "status": "SUCCEEDED"}
    remote = FakeRemote([running, running, done])
    remote.events = [["one"], ["two", "three"], ["four"]]
    logs_command(remote, "J", None, follow=True)
    assert capsys.readouterr().out == "one\ntwo\nthree\nfour\n"
    streams = {p["logStreamName"] for op, p in remote.sent if op == "get_log_events"}
    assert streams == {"d/default/J.1"}
    assert all(
        p["logGroupName"] == "/aws/batch/job" and p["startFromHead"]
        for op, p in remote.sent
        if op == "get_log_events"
    )


@pytest.mark.moto
@pytest.mark.slow
def test_submit_checks_against_the_compute_environments_given(moto: Moto, tmp_path: Path) -> None:
    (tmp_path / "big.flow").write_text(
        'job big {\n  image = "busybox"\n  command = "true"\n  vcpus = 4096\n  queue = fast\n}\n'
    )
    (tmp_path / "server.flow").write_text(
        "compute cluster {\n  vcpus = 8192\n  memory = 64GiB\n}\n"
        "queue fast { compute = [cluster] }\n"
    )
    alone = moto.cli("submit", str(tmp_path / "big.flow"), "--server", moto.url)
    assert alone.exit_code == 2  # no queue `fast` in the file
    given = moto.cli(
        "submit",
        str(tmp_path / "big.flow"),
        "--server",
        moto.url,
        "--computes",
        str(tmp_path / "server.flow"),
    )
    assert given.exit_code == 0, given.output
    (job_id,) = [line.split()[1] for line in given.stdout.splitlines()]
    job = moto.client().describe_jobs(jobs=[job_id])["jobs"][0]
    assert job["jobQueue"].endswith(":job-queue/fast")


def test_submit_needs_a_server(tmp_path: Path) -> None:
    (tmp_path / "p.flow").write_text('job one {\n  command = "true"\n}\n')
    result = _cli("submit", str(tmp_path / "p.flow"))
    assert result.exit_code == 2
    assert "submit needs --server URL" in result.stderr


@pytest.mark.slow
def test_submit_never_sends_a_job_twice(stub: tuple[str, type[_Stub]], tmp_path: Path) -> None:
    url, handler = stub
    handler.status, handler.code, handler.message = 500, "ServerException", "lost"
    handler.answers = {
        "/v1/describejobqueues": {"jobQueues": [{"jobQueueName": "default"}]},
        "/v1/registerjobdefinition": {
            "jobDefinitionName": "p-one",
            "jobDefinitionArn": "arn:aws:batch:us-east-1:0:job-definition/p-one:1",
            "revision": 1,
        },
    }
    (tmp_path / "p.flow").write_text('job one {\n  command = "true"\n}\n')
    result = _cli("submit", str(tmp_path / "p.flow"), "--server", url)
    assert result.exit_code == 1
    assert "SubmitJob: the server said ServerException: lost" in result.stderr
    assert handler.seen.count("/v1/submitjob") == 1
    retried = _cli("describe", "--server", url, "x")  # the other commands retry once
    assert retried.exit_code == 1
    assert handler.seen.count("/v1/describejobs") == 2
