"""The CLI against a flowbatch server (`--server URL`, or $FLOWBATCH_SERVER): `jobs`,
`describe`, `cancel`, `terminate` and `logs` spoken as AWS Batch's API, through botocore,
as any AWS tool would speak it (the server is AWS Batch's REST-JSON API, so the same
commands work against anything that speaks it).

Who the client is, found as AWS's tools find it: the region from AWS's chain
(AWS_REGION, AWS_DEFAULT_REGION, the profile's `region`), else `us-east-1`; the
credentials from botocore's chain (the environment's keys, AWS_PROFILE, the shared
credentials file, ...; not an EC2 or ECS instance role), else the key the server
wrote into its state directory (`STATE_DIR/credentials`, profile `flowbatch`; the state
directory by the rule of `cli.common`), so that a server and the commands run from the
same directory need no setup. Whatever the server or the network says goes to the user
as one line (a `RemoteError`): 2 for a request or credentials the server refused, 1 for
a server that cannot be reached or failed.

botocore is imported only when a command talks to a server: without `--server` the local
commands work as they always have.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from flowbatch.cli.common import state_dir as resolve_state_dir
from flowbatch.cli.github import json_text
from flowbatch.errors import HintedError
from flowbatch.outputs.jobview import clip, visible

if TYPE_CHECKING:
    from flowbatch.lang.compile import Plan

SERVER_ENV = "FLOWBATCH_SERVER"
DEFAULT_REGION = "us-east-1"
PROFILE = "flowbatch"  # the profile the server writes its key under
LOG_GROUP = "/aws/batch/job"
STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
DONE = ("SUCCEEDED", "FAILED")
_DESCRIBE_MAX = 100  # AWS DescribeJobs takes at most 100 ids
_POLL_SECONDS = 0.25
_REASON_WIDTH = 60
# AWS's own codes for a request whose signature or key the server refused.
_AUTH_CODES = {
    "MissingAuthenticationTokenException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
    "AccessDeniedException",
    "ExpiredTokenException",
}


class RemoteError(HintedError):
    """What the server, or the way to it, said: one line, a hint, an exit code (2 for
    a request or credentials refused, 1 for a server unreachable or failing)."""

    def __init__(self, message: str, code: int = 2, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.code = code

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return self.code


def server_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--server URL` (else $FLOWBATCH_SERVER): talk to a flowbatch server (or anything
    that speaks AWS Batch's API) instead of the local state directory."""
    return click.option(
        "--server",
        envvar=SERVER_ENV,
        metavar="URL",
        default=None,
        help=f"A flowbatch server's URL (default: ${SERVER_ENV}); without it, the local "
        "state directory.",
    )(func)


def endpoint(url: str) -> str:
    """`url` as an endpoint: `host:port` alone is taken as http://host:port (what
    `flowbatch server` prints is the whole URL). RemoteError for anything else."""
    from urllib.parse import urlsplit

    text = url.strip()
    if "://" not in text:
        text = f"http://{text}"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- raises ValueError for a port that is no number
    except ValueError as exc:
        raise RemoteError(f"--server {visible(url)!s}: not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteError(
            f"--server `{visible(url)}`: not an http:// or https:// URL",
            hint="give the URL `flowbatch server` printed, e.g. http://127.0.0.1:8910",
        )
    return text.rstrip("/")


# -- the client ---------------------------------------------------------------------------
class Remote:
    """botocore clients for one server: `batch` and `logs` (CloudWatch Logs' GetLogEvents
    on the same endpoint), and `call`, which makes every error a RemoteError."""

    def __init__(self, url: str, state_dir: Path | None = None, *, retry: bool = True) -> None:
        self.url = endpoint(url)
        self._state_dir = state_dir
        self._retry = retry
        self._clients: dict[str, Any] = {}
        self.credentials_from = ""  # where the key came from, for the hint on a 403
        self.key_file: Path | None = None  # the server's key file, when that is the key

    def client(self, service: str) -> Any:
        found = self._clients.get(service)
        if found is None:
            found = self._clients[service] = self._make(service)
        return found

    def _make(self, service: str) -> Any:
        import botocore.session
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        session = botocore.session.Session()
        try:
            region = session.get_config_variable("region") or DEFAULT_REGION
            # Not an EC2 or ECS role: a flowbatch server cannot know their keys, and
            # asking the metadata service for them costs seconds where there is none.
            resolver = session.get_component("credential_provider")
            for method in ("iam-role", "container-role"):
                resolver.remove(method)
            credentials = session.get_credentials()
        except BotoCoreError as exc:  # AWS_PROFILE naming no profile, a broken file
            raise RemoteError(f"AWS configuration: {exc}") from None
        keys: dict[str, str] = {}
        if credentials is None:
            path = resolve_state_dir(self._state_dir) / "credentials"
            keys = _server_key(path)
            self.key_file = path.absolute()
            self.credentials_from = f"the server's key in `{path}` (profile {PROFILE})"
        else:
            self.credentials_from = f"AWS's credential chain ({credentials.method})"
        config = Config(user_agent_extra="flowbatch", connect_timeout=10, read_timeout=60)
        if not self._retry:
            # SubmitJob is not idempotent: a retry after a 500 or a lost answer may
            # submit the job a second time.
            config = config.merge(Config(retries={"mode": "standard", "total_max_attempts": 1}))
        elif not ({"AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"} & os.environ.keys()):
            # botocore's legacy default retries a refused connection for seconds; a
            # local server that is not there should be said at once (one retry).
            config = config.merge(Config(retries={"mode": "standard", "total_max_attempts": 2}))
        return session.create_client(
            service, region_name=region, endpoint_url=self.url, config=config, **keys
        )

    def call(self, operation: str, service: str = "batch", **params: Any) -> dict[str, Any]:
        """`operation` (botocore's snake_case method) with `params`; the response
        without its ResponseMetadata. Every failure is a RemoteError."""
        client = self.client(service)
        with self.errors(operation):
            response: dict[str, Any] = getattr(client, operation)(**params)
        response.pop("ResponseMetadata", None)
        return response

    @contextlib.contextmanager
    def errors(self, operation: str) -> Iterator[None]:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
            ParamValidationError,
            SSLError,
        )

        what = _operation_name(operation)
        try:
            yield
        except ClientError as exc:
            raise self._refused(what, exc) from None
        except SSLError as exc:
            raise RemoteError(
                f"{what}: TLS with {self.url} failed: {exc}",
                1,
                hint="a server with its own certificate: AWS_CA_BUNDLE=CERT.pem",
            ) from None
        except (ConnectionError, HTTPClientError) as exc:
            raise RemoteError(
                f"cannot reach the flowbatch server at {self.url}: {exc}",
                1,
                hint="is `flowbatch server` running there? (--server, or $FLOWBATCH_SERVER)",
            ) from None
        except NoCredentialsError:
            raise RemoteError(f"{what}: no AWS credentials found") from None
        except ParamValidationError as exc:
            raise RemoteError(f"{what}: {' '.join(str(exc).split())}") from None
        except BotoCoreError as exc:
            raise RemoteError(f"{what}: {exc}", 1) from None

    def _refused(self, what: str, exc: Any) -> RemoteError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "error")
        message = " ".join(str(error.get("Message") or "").split())
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        text = f"{what}: the server said {code}" + (f": {message}" if message else "")
        if status == 403 or code in _AUTH_CODES:
            return RemoteError(
                f"{what}: the server refused the credentials ({code}"
                + (f": {message}" if message else "")
                + f"); they came from {self.credentials_from}",
                2,
                hint="use the key the server wrote: AWS_SHARED_CREDENTIALS_FILE="
                "SERVER_STATE_DIR/credentials AWS_PROFILE=flowbatch (its state directory, "
                "as `flowbatch server` printed)",
            )
        return RemoteError(text, 1 if status >= 500 else 2)


def _server_key(path: Path) -> dict[str, str]:
    """The key pair of profile `flowbatch` in the server's credentials file, as
    create_client's arguments; RemoteError saying where it looked when there is none."""
    import configparser  # only with --server and no AWS credentials

    parser = configparser.RawConfigParser()
    hint = (
        f"set AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...), or run from the "
        f"directory of the server's state (--state-dir DIR, ${'FLOWBATCH_STATE_DIR'}), "
        f"whose `credentials` it wrote on first start"
    )
    try:
        with path.open(encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        raise RemoteError(
            f"no AWS credentials: botocore's chain found none, and there is no server "
            f"key at `{os.path.abspath(path)}`",
            hint=hint,
        ) from None
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise RemoteError(f"cannot read the server's key `{path}`: {exc}") from None
    if not parser.has_section(PROFILE):
        raise RemoteError(f"no profile [{PROFILE}] in `{path}`", hint=hint)
    section = parser[PROFILE]
    key, secret = section.get("aws_access_key_id"), section.get("aws_secret_access_key")
    if not key or not secret:
        raise RemoteError(f"profile [{PROFILE}] in `{path}` has no key pair", hint=hint)
    return {"aws_access_key_id": key.strip(), "aws_secret_access_key": secret.strip()}


def _operation_name(method: str) -> str:
    """botocore's `list_jobs` as the API names it, `ListJobs`."""
    return "".join(part.capitalize() for part in method.split("_"))


def fail(message: str, code: int = 2) -> NoReturn:
    raise RemoteError(message, code)


# -- jobs ---------------------------------------------------------------------------------
def _pages(remote: Remote, operation: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
    """Every item of `key` over the pages of `operation`, following nextToken."""
    token: str | None = None
    seen: set[str] = set()
    while True:
        page = remote.call(operation, **params, **({"nextToken": token} if token else {}))
        yield from page.get(key) or []
        token = page.get("nextToken")
        if not token or token in seen:  # a server handing the same token back: stop
            return
        seen.add(token)


def queue_names(remote: Remote) -> list[str]:
    return [q["jobQueueName"] for q in _pages(remote, "describe_job_queues", "jobQueues")]


def list_jobs(
    remote: Remote,
    *,
    queue: str | None,
    status: str | None,
    children: str | None,
    name: str | None,
) -> list[dict[str, Any]]:
    """The job summaries asked for, oldest first. ListJobs without a status gives
    RUNNING jobs only (AWS): every status is asked for in turn."""
    statuses = [status.upper()] if status else list(STATUSES)
    if children is not None:
        scopes: list[dict[str, str]] = [{"arrayJobId": children}]
    else:
        queues = [queue] if queue else queue_names(remote)
        scopes = [{"jobQueue": q} for q in queues]
    found: dict[str, dict[str, Any]] = {}
    for scope in scopes:
        for state in statuses:
            for job in _pages(remote, "list_jobs", "jobSummaryList", **scope, jobStatus=state):
                if name is None or job.get("jobName") == name:
                    found.setdefault(job["jobId"], job)
    return sorted(found.values(), key=lambda j: (j.get("createdAt") or 0, j["jobId"]))


def _duration(job: dict[str, Any]) -> str:
    from flowbatch.cli.inspect import duration

    return duration(job.get("startedAt"), job.get("stoppedAt"))


def jobs_command(
    remote: Remote,
    *,
    queue: str | None,
    status: str | None,
    children: str | None,
    name: str | None,
    as_json: bool,
) -> None:
    found = list_jobs(remote, queue=queue, status=status, children=children, name=name)
    if as_json:
        click.echo(json_text({"jobSummaryList": found}))
        return
    from flowbatch.cli.inspect import table

    rows = []
    for job in found:
        exit_code = (job.get("container") or {}).get("exitCode")
        size = (job.get("arrayProperties") or {}).get("size")
        rows.append(
            [
                job["jobId"],
                str(job.get("jobName", "")),
                str(job.get("status", "")) + (f" (array of {size})" if size else ""),
                "-" if exit_code is None else str(exit_code),
                _duration(job),
                clip(str(job.get("statusReason") or ""), _REASON_WIDTH),
            ]
        )
    header = ["JOB ID", "NAME", "STATUS", "EXIT", "DURATION", "REASON"]
    click.echo(table(header, rows))


def describe_jobs(remote: Remote, job_ids: Sequence[str]) -> list[dict[str, Any]]:
    """JobDetails of `job_ids`, in their order; RemoteError naming the ids the server
    does not know (DescribeJobs leaves them out without a word)."""
    details: dict[str, dict[str, Any]] = {}
    unique = list(dict.fromkeys(job_ids))
    for start in range(0, len(unique), _DESCRIBE_MAX):
        batch = unique[start : start + _DESCRIBE_MAX]
        for job in remote.call("describe_jobs", jobs=batch).get("jobs") or []:
            details[job["jobId"]] = job
            details.setdefault(job.get("jobArn", ""), job)
    missing = [job_id for job_id in unique if job_id not in details]
    if missing:
        shown = ", ".join(f"`{visible(m)}`" for m in missing[:5])
        fail(f"no job {shown} on the server at {remote.url}" + (" ..." if len(missing) > 5 else ""))
    return [details[job_id] for job_id in job_ids]


def describe_command(remote: Remote, job_ids: Sequence[str]) -> None:
    click.echo(json_text({"jobs": describe_jobs(remote, job_ids)}))


# -- cancel, terminate --------------------------------------------------------------------
def control_command(
    remote: Remote, action: str, job_id: str, reason: str | None, wait: float
) -> None:
    """CancelJob or TerminateJob, then wait (at most `wait` s) for the job to show it,
    and say what happened as the local commands do: RemoteError (exit 1) when the job
    had already started (cancel), had finished, or did not change in time."""
    from flowbatch.executors.base import REASON_CANCELLED, REASON_TERMINATED

    default = REASON_CANCELLED if action == "cancel" else REASON_TERMINATED
    reason = reason or f"{default} by user"
    job = describe_jobs(remote, [job_id])[0]
    status = job.get("status", "")
    if status in DONE:
        fail(f"job {job_id} already {status}" + _why(job), 1)
    if action == "cancel" and status in ("STARTING", "RUNNING"):
        fail(_started(job_id, status), 1)
    operation = "cancel_job" if action == "cancel" else "terminate_job"
    remote.call(operation, jobId=job_id, reason=reason)
    done = "cancelled" if action == "cancel" else "terminated"
    deadline = time.monotonic() + wait
    while True:
        job = describe_jobs(remote, [job_id])[0]
        status = job.get("status", "")
        if status == "FAILED":
            said = str(job.get("statusReason") or "")
            if job.get("isCancelled") or job.get("isTerminated") or not said or reason in said:
                click.echo(f"job {job_id} {done}", err=True)
                return
            fail(f"job {job_id} FAILED" + _why(job), 1)
        if status == "SUCCEEDED":
            fail(f"job {job_id} SUCCEEDED before the {action} reached it", 1)
        if action == "cancel" and status in ("STARTING", "RUNNING"):
            fail(_started(job_id, status), 1)
        if time.monotonic() >= deadline:
            fail(f"job {job_id} is still {status} after {wait:g} s", 1)
        time.sleep(_POLL_SECONDS)


def _why(job: dict[str, Any]) -> str:
    reason = job.get("statusReason")
    return f": {reason}" if reason else ""


def _started(job_id: str, status: str) -> str:
    return (
        f"job {job_id} had already started ({status}): cancel only stops jobs that have "
        f"not; use `flowbatch terminate {job_id}`"
    )


# -- logs ---------------------------------------------------------------------------------
def attempt_streams(job: dict[str, Any]) -> list[tuple[str | None, bool]]:
    """Each attempt's (logStreamName, ended), in order. A server may list the attempt
    that runs among `attempts` (without a stoppedAt) or, as AWS, only in `container`."""
    found = [
        ((a.get("container") or {}).get("logStreamName"), a.get("stoppedAt") is not None)
        for a in job.get("attempts") or []
    ]
    status = job.get("status")
    current = (job.get("container") or {}).get("logStreamName")
    if status in ("STARTING", "RUNNING") and (not found or found[-1][1]):
        found.append((current, False))
    elif not found and current:  # ended, its attempts not listed (moto)
        found.append((current, True))
    done = status in DONE
    return [(stream, ended or done) for stream, ended in found]


def logs_command(
    remote: Remote, job_id: str, attempt: int | None, follow: bool, out: Any = None
) -> None:
    """Print an attempt's log: its `container.logStreamName` read with CloudWatch Logs'
    GetLogEvents from the server, from the head; with `follow`, until the attempt ends."""
    out = out or sys.stdout
    job = describe_jobs(remote, [job_id])[0]
    array = job.get("arrayProperties") or {}
    if array.get("size") and "index" not in array:
        fail(
            f"job `{job_id}` ({job.get('jobName')}) is an array job; its logs are its "
            f"children's: `{job_id}:0` to `{job_id}:{array['size'] - 1}`"
        )
    streams = attempt_streams(job)
    if attempt is not None and attempt > len(streams) and (job.get("status") in DONE):
        fail(f"job `{job_id}` has {len(streams)} attempt(s); there is no attempt {attempt}")
    if not streams and not follow:
        status = job.get("status", "")
        if status in DONE:
            fail(f"job `{job_id}` never ran: it {status}" + _why(job))
        fail(f"job `{job_id}` has not started yet: it is {status}")
    number = attempt or max(len(streams), 1)
    token: str | None = None
    while True:
        stream, ended = streams[number - 1] if number <= len(streams) else (None, False)
        ended = ended or job.get("status") in DONE
        if stream is None and not follow:
            fail(f"job `{job_id}` has no log stream for attempt {number}")
        if stream is not None:
            token = _print_events(remote, stream, token, out, missing_ok=follow and not ended)
        if not follow or ended:
            return
        time.sleep(_POLL_SECONDS)
        job = describe_jobs(remote, [job_id])[0]
        streams = attempt_streams(job)


def _print_events(
    remote: Remote, stream: str, token: str | None, out: Any, *, missing_ok: bool
) -> str | None:
    """Print the events of `stream` after `token`; the token to go on from (GetLogEvents
    hands back the same nextForwardToken once there is nothing more)."""
    while True:
        params: dict[str, Any] = {
            "logGroupName": LOG_GROUP,
            "logStreamName": stream,
            "startFromHead": True,
        }
        if token:
            params["nextToken"] = token
        try:
            page = remote.call("get_log_events", "logs", **params)
        except RemoteError as exc:
            if "ResourceNotFoundException" not in exc.message:
                raise
            if missing_ok:
                return token  # not written yet
            raise RemoteError(
                f"the server has no log stream `{stream}`: {exc.message}", 1
            ) from None
        for event in page.get("events") or []:
            out.write(str(event.get("message", "")) + "\n")
        out.flush()
        following = page.get("nextForwardToken")
        if not following or following == token:
            return token
        token = following


# -- `flowbatch run FILE --server URL` ------------------------------------------------------


def server_plan(plan: Plan, remote: Remote, *, poll_interval: float = 0.5) -> Plan:
    """`plan` with every queue moved onto the server: each job goes, attempt by attempt,
    through AWS Batch's API (the `aws_batch` executor) to the server's queue named like
    its own, so the run's progress, retries, store, JUnit and exit code stay the local
    run's. RemoteError when the server lacks a queue the pipeline uses. The executor's
    botocore finds the same key the CLI's does (`Remote`): where that is the server's
    own key file, the process's AWS_SHARED_CREDENTIALS_FILE and AWS_PROFILE point at it."""
    import dataclasses

    from flowbatch.lang.compile import compile_pipeline
    from flowbatch.lang.computes import UNBOUNDED_GPUS, UNBOUNDED_MEMORY
    from flowbatch.lang.model import ComputeEnv, Host

    client = remote.client("batch")
    used = sorted({spec.queue for spec in plan.pipeline.jobs.values()})
    have = set(queue_names(remote))
    if missing := [q for q in used if q not in have]:
        raise RemoteError(
            f"the server has no job queue {', '.join(missing)} (the pipeline's queues)",
            hint="create it there (aws batch create-job-queue ...), or name one the server has",
        )
    if remote.key_file is not None:
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(remote.key_file)
        os.environ["AWS_PROFILE"] = PROFILE
    computes: dict[str, ComputeEnv] = {}
    queues = {}
    for queue in plan.queues.values():
        name = f"server-{queue.name}"
        host = Host(name=name, vcpus=256, memory=UNBOUNDED_MEMORY, gpus=UNBOUNDED_GPUS)
        computes[name] = ComputeEnv(
            name=name,
            type="aws_batch",
            vcpus=host.vcpus,
            memory=host.memory,
            gpus=host.gpus,
            hosts=(host,),
            options={
                "job_queue": queue.name,
                "region": client.meta.region_name,
                "endpoint": remote.url,
                "poll_interval": poll_interval,
                "max_vcpus": host.vcpus,
            },
        )
        queues[queue.name] = dataclasses.replace(queue, compute=(name,))
    return compile_pipeline(dataclasses.replace(plan.pipeline, computes=computes, queues=queues))
