"""The `aws_batch` compute environment: each attempt is one AWS Batch job, submitted to
an existing job queue through AWS's own API (botocore; credentials from its standard
chain, never from the pipeline).

**Each attempt is an AWS job; arrays are AWS arrays where they can be.** flowbatch's
runner places each attempt of each job or array child itself, and decides retries,
dependencies and cancellation; an executor runs one attempt. So the runner holds the
edges (no `dependsOn`: a job is submitted once what it waits for has succeeded) and
the retries (retryStrategy of 1 attempt), which is what lets a pipeline mix AWS jobs
with local, SSH and SLURM ones, keeps flowbatch's root-cause reasons and `backoff`,
and makes `--resume` and per-child retries work as on every other environment.
Children of one array and attempt that the runner places in one scheduling tick
(until the loop has been quiet for `COALESCE_SECONDS`, as the SLURM executor
coalesces its sbatch calls) are submitted together: each run of consecutive indices
whose rendered command and environment are the same (AWS gives every child of an
array the same overrides) becomes ONE SubmitJob with `arrayProperties`, its children
AWS's `ID:N`; a child that differs (a command with `{{ array.index }}`), or a retry,
is a plain job. AWS sets AWS_BATCH_JOB_ARRAY_INDEX and AWS_BATCH_JOB_ATTEMPT for its
own arrays and retries only: flowbatch passes its values (FLOWBATCH_JOB_ATTEMPT,
FLOWBATCH_JOB_ARRAY_INDEX, or FLOWBATCH_ARRAY_OFFSET for an AWS array that starts at
a later child) and a small `/bin/sh` prelude exports them under AWS's names before
the command runs (values travel in the environment, never in shell text).

**Definitions** are registered once per content: a job's image, vCPUs, memory, GPUs,
timeout and tags make a job definition named after the job, tagged
`flowbatch:pipeline` and `flowbatch:digest` (a hash of that content). An ACTIVE
revision with the same digest is reused; a change registers a new revision.

**Polling**, as the SLURM executor's: no background task; whichever waiting `run()`
holds the poller role asks DescribeJobs for every job in flight, 100 ids a call, one
round per `poll_interval`, spaced further when many calls make a round (at most
`DESCRIBE_RATE` calls a second), and wakes the attempts whose job ended.

**Cancelling** the task that awaits `run()` (terminate, Ctrl-C) stops the AWS job in a
shielded finally: CancelJob while it has not reached STARTING, TerminateJob after
(and after a CancelJob that came too late), as AWS defines them.

**Logs**: when an attempt ends, its CloudWatch Logs stream (`/aws/batch/job`, the
job's `logStreamName`) is copied into the attempt's `stdout` (AWS keeps one stream
for both; `stderr` stays empty), so that `flowbatch logs` reads it like any other.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import random
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from flowbatch.executors import logfiles
from flowbatch.executors.base import (
    REASON_ESSENTIAL_EXITED,
    REASON_TIMEOUT,
    Attempt,
    ExecResult,
    private_dir,
    private_file,
)
from flowbatch.lang.model import ComputeEnv

COALESCE_SECONDS = 0.02  # a scheduling tick: how long the loop must be quiet
DEFAULT_POLL_INTERVAL = 10.0  # seconds; AWS's own console refreshes about this often
DESCRIBE_CHUNK = 100  # ids per DescribeJobs call: AWS's limit
DESCRIBE_RATE = 5.0  # DescribeJobs calls per second at most, whatever is in flight
GONE_ROUNDS = 3  # rounds a job may be missing from DescribeJobs before it counts as lost
CANCEL_DEADLINE = 30.0  # how long a shielded CancelJob/TerminateJob may take
LOG_GROUP = "/aws/batch/job"
THROTTLED = frozenset(
    ("TooManyRequestsException", "ThrottlingException", "Throttling", "RequestLimitExceeded")
)
MAX_TRIES = 8  # of a throttled call, with backoff doubling from BACKOFF_BASE
BACKOFF_BASE = 0.5
BACKOFF_MAX = 20.0
# Calls that change nothing, retried after a lost connection or a server error too;
# SubmitJob is not (AWS has no idempotency token for it: a retry could run a job twice).
_READ_ONLY = frozenset(("DescribeJobs", "DescribeJobDefinitions", "GetLogEvents"))
_NOT_STARTED = frozenset(("SUBMITTED", "PENDING", "RUNNABLE"))
_TERMINAL = frozenset(("SUCCEEDED", "FAILED"))
# Exports AWS's names for what AWS sets only for its own arrays and retries; the
# values come from the environment, the command follows as arguments ("$@").
PRELUDE = (
    # A child of an AWS array: its flowbatch index is AWS's plus where the run starts.
    'if [ -n "${FLOWBATCH_ARRAY_OFFSET+x}" ]; then '
    "FLOWBATCH_JOB_ARRAY_INDEX=$((AWS_BATCH_JOB_ARRAY_INDEX + FLOWBATCH_ARRAY_OFFSET)); "
    'FLOWBATCH_JOB_ID="$FLOWBATCH_JOB_ID:$FLOWBATCH_JOB_ARRAY_INDEX"; '
    "export FLOWBATCH_JOB_ARRAY_INDEX FLOWBATCH_JOB_ID; fi; "
    'AWS_BATCH_JOB_ATTEMPT="$FLOWBATCH_JOB_ATTEMPT"; export AWS_BATCH_JOB_ATTEMPT; '
    'if [ -n "${FLOWBATCH_JOB_ARRAY_INDEX+x}" ]; then '
    'AWS_BATCH_JOB_ARRAY_INDEX="$FLOWBATCH_JOB_ARRAY_INDEX"; export AWS_BATCH_JOB_ARRAY_INDEX; '
    'fi; exec "$@"'
)
_TAG_TEXT = re.compile(r"[^\w .:/=+\-@]")

Client = Any  # a botocore client: its methods are made from AWS's service model


class AwsError(Exception):
    """A call AWS refused (after retries), with AWS's error code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


@dataclass
class _Group:
    """Children of one array job and attempt number that arrived in one tick."""

    attempts: list[Attempt] = field(default_factory=list)
    done: anyio.Event = field(default_factory=anyio.Event)
    ids: dict[int, str] = field(default_factory=dict)  # flowbatch index -> AWS job id
    errors: dict[int, AwsError] = field(default_factory=dict)
    sealed: bool = False  # being submitted: no more joiners


@dataclass
class _Watch:
    aws_id: str
    attempt: Attempt
    wake: anyio.Event = field(default_factory=anyio.Event)
    status: str = "SUBMITTED"
    detail: Mapping[str, Any] | None = None  # the JobDetail once the job ended
    missing: int = 0  # rounds in a row that DescribeJobs did not know it


def default_clients(ce: ComputeEnv) -> tuple[Client, Client]:
    """Batch and CloudWatch Logs clients for `ce`: its `profile`, `region`, `endpoint`;
    credentials from botocore's standard chain. Retries are flowbatch's (`_call`)."""
    import botocore.config
    import botocore.session

    options = ce.options
    session = botocore.session.get_session()
    if options.get("profile"):
        session.set_config_variable("profile", str(options["profile"]))
    config = botocore.config.Config(
        retries={"mode": "standard", "max_attempts": 1},
        user_agent_extra="flowbatch",
    )
    kwargs: dict[str, Any] = {"region_name": str(options["region"]), "config": config}
    if options.get("endpoint"):
        kwargs["endpoint_url"] = str(options["endpoint"])
    return session.create_client("batch", **kwargs), session.create_client("logs", **kwargs)


class AwsBatchExecutor:
    """Runs attempts as AWS Batch jobs on `ce.options["job_queue"]`."""

    def __init__(
        self,
        ce: ComputeEnv,
        *,
        clients: Callable[[ComputeEnv], tuple[Client, Client]] = default_clients,
        sleep: Callable[[float], Any] = anyio.sleep,
        describe_rate: float = DESCRIBE_RATE,
    ) -> None:
        self.ce = ce
        self.queue = str(ce.options["job_queue"])
        interval = ce.options.get("poll_interval", DEFAULT_POLL_INTERVAL)
        self.poll_interval = (
            float(interval) if isinstance(interval, int | float) else DEFAULT_POLL_INTERVAL
        )
        self.calls: collections.Counter[str] = collections.Counter()
        self._make_clients = clients
        self._clients: tuple[Client, Client] | None = None
        self._clients_lock = threading.Lock()
        self._sleep = sleep  # between tries of a throttled call
        self.describe_rate = describe_rate
        self._rng = random.Random()
        self._definitions: dict[str, str] = {}  # digest -> definition ARN
        self._registering: dict[str, anyio.Lock] = {}
        self._watches: dict[str, _Watch] = {}
        self._polling = False
        self._last_poll = float("-inf")
        self._groups: dict[tuple[str, int, str], _Group] = {}
        self._arrivals = 0

    # -- calling AWS ----------------------------------------------------------------

    def _client(self, service: str) -> Client:
        with self._clients_lock:
            if self._clients is None:
                self._clients = self._make_clients(self.ce)
        return self._clients[0] if service == "batch" else self._clients[1]

    def _invoke(self, service: str, method: str, params: Mapping[str, Any]) -> Any:
        return getattr(self._client(service), method)(**params)

    async def _call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """One AWS call in a worker thread; throttling (and, for calls that change
        nothing, a lost connection or a 5xx) retried with jittered exponential
        backoff. Raises AwsError with AWS's code for anything else."""
        import botocore.exceptions

        method = re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()
        for tries in range(1, MAX_TRIES + 1):
            self.calls[operation] += 1
            try:
                result: dict[str, Any] = await anyio.to_thread.run_sync(
                    self._invoke, service, method, params
                )
                return result
            except botocore.exceptions.ClientError as exc:
                error = exc.response.get("Error", {})
                code = str(error.get("Code", "ClientError"))
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
                retry = code in THROTTLED or (operation in _READ_ONLY and status >= 500)
                if not retry or tries == MAX_TRIES:
                    raise AwsError(code, str(error.get("Message", ""))) from None
            except (
                botocore.exceptions.EndpointConnectionError,
                botocore.exceptions.ConnectionClosedError,
                botocore.exceptions.ReadTimeoutError,
            ) as exc:
                if operation not in _READ_ONLY or tries == MAX_TRIES:
                    raise AwsError(type(exc).__name__, str(exc)) from None
            except botocore.exceptions.BotoCoreError as exc:  # no credentials, bad config
                raise AwsError(type(exc).__name__, str(exc)) from None
            delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (tries - 1))
            await self._sleep(delay * self._rng.uniform(0.5, 1.0))
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the Executor protocol -------------------------------------------------------

    async def run(self, attempt: Attempt, *, task_status: TaskStatus[str]) -> ExecResult:
        """Submit the attempt, report its AWS job id, and wait for its end. Raises only
        for cancellation, after stopping the AWS job."""
        watch: _Watch | None = None
        # Empty while the job runs on AWS (`flowbatch logs` shows nothing yet, rather
        # than "no log"), filled from CloudWatch Logs when it ends.
        await anyio.to_thread.run_sync(_empty_logs, attempt.log_stem)
        try:
            try:
                definition = await self._definition(attempt)
                # A cancel that arrives while SubmitJob is under way waits for its
                # answer (anyio lets the worker thread finish) and reaches this task at
                # its next checkpoint, once the job is watched: it is stopped, not lost.
                if attempt.index is None:
                    request = submission(attempt, self.queue, definition)
                    aws_id = str((await self._call("batch", "SubmitJob", **request))["jobId"])
                else:
                    aws_id = await self._submit_child(attempt, definition)
            except AwsError as exc:
                return ExecResult(
                    exit_code=None,
                    status_reason=f"AWS Batch refused the job: {exc}",
                    retryable=exc.code in THROTTLED,
                    host=self.ce.name,
                )
            watch = _Watch(aws_id=aws_id, attempt=attempt)
            self._watches[watch.aws_id] = watch
            if self._last_poll == float("-inf"):
                # The first round one interval after the first submission: a job just
                # submitted has not ended, and its siblings are still being submitted.
                self._last_poll = anyio.current_time()
            task_status.started(watch.aws_id)
            detail = await self._wait(watch)
            self._watches.pop(watch.aws_id, None)
            await self._copy_logs(attempt, detail)
            return result_of(detail, host=self.ce.name)
        finally:
            if watch is not None and self._watches.pop(watch.aws_id, None) is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_DEADLINE):
                    await self._stop(watch)

    async def check_host(self, host: str) -> bool:
        return True  # AWS replaces lost instances itself

    async def aclose(self) -> None:
        self._watches.clear()

    # -- array children --------------------------------------------------------------

    async def _submit_child(self, attempt: Attempt, definition: str) -> str:
        """The AWS job id of an array child: its siblings of the same attempt that
        arrive in the same scheduling tick are submitted with it, as one AWS array job
        where they can be (`_submit_group`). Raises AwsError."""
        key = (attempt.job_id.rsplit(":", 1)[0], attempt.attempt, definition)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(attempts=[attempt])
            await self._lead(key, group, attempt)
        else:
            group.attempts.append(attempt)
            self._arrivals += 1
            try:
                await group.done.wait()
            except BaseException:
                if not group.sealed:
                    group.attempts.remove(attempt)
                else:  # being submitted: make sure this child does not run
                    with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_DEADLINE):
                        await group.done.wait()
                        if attempt.index in group.ids:
                            await self._stop(_Watch(group.ids[attempt.index], attempt))
                raise
        assert attempt.index is not None
        if attempt.index in group.errors:
            raise group.errors[attempt.index]
        return group.ids[attempt.index]

    async def _lead(self, key: tuple[str, int, str], group: _Group, attempt: Attempt) -> None:
        """Collect siblings until the loop has been quiet for a tick, then submit all."""
        try:
            while True:
                seen = self._arrivals
                await anyio.sleep(COALESCE_SECONDS)
                if self._arrivals == seen:
                    break
        except BaseException:
            # Cancelled while collecting: the siblings are submitted anyway, without it.
            group.attempts.remove(attempt)
            group.sealed = True
            if self._groups.get(key) is group:
                del self._groups[key]
            with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_DEADLINE):
                await self._submit_group(group, key[2])
            raise
        group.sealed = True
        if self._groups.get(key) is group:
            del self._groups[key]
        with anyio.CancelScope(shield=True):
            await self._submit_group(group, key[2])

    async def _submit_group(self, group: _Group, definition: str) -> None:
        """One AWS array job (`arrayProperties`) per run of consecutive children that
        share their command and environment; a child alone is a plain job."""
        try:
            for run in array_runs(group.attempts):
                try:
                    request = submission(run[0], self.queue, definition, size=len(run))
                    answer = await self._call("batch", "SubmitJob", **request)
                except AwsError as exc:
                    group.errors.update((a.index or 0, exc) for a in run)
                    continue
                aws_id = str(answer["jobId"])
                first = run[0].index or 0
                for a in run:
                    index = a.index or 0
                    group.ids[index] = aws_id if len(run) == 1 else f"{aws_id}:{index - first}"
        finally:
            group.done.set()

    # -- definitions -----------------------------------------------------------------

    async def _definition(self, attempt: Attempt) -> str:
        """The ARN of an ACTIVE definition with this attempt's content: the one
        registered before (found by its digest tag), or a new revision."""
        body = definition_body(attempt)
        digest = body["tags"]["flowbatch:digest"]
        if digest in self._definitions:
            return self._definitions[digest]
        lock = self._registering.setdefault(digest, anyio.Lock())
        async with lock:  # 10,000 children of one array: one registration
            if digest in self._definitions:
                return self._definitions[digest]
            arn = await self._find_definition(body["jobDefinitionName"], digest)
            if arn is None:
                registered = await self._call("batch", "RegisterJobDefinition", **body)
                arn = str(registered["jobDefinitionArn"])
            self._definitions[digest] = arn
            return arn

    async def _find_definition(self, name: str, digest: str) -> str | None:
        params: dict[str, Any] = {"jobDefinitionName": name, "status": "ACTIVE"}
        while True:
            page = await self._call("batch", "DescribeJobDefinitions", **params)
            for found in page.get("jobDefinitions", []):
                if (found.get("tags") or {}).get("flowbatch:digest") == digest:
                    return str(found["jobDefinitionArn"])
            if not page.get("nextToken"):
                return None
            params["nextToken"] = page["nextToken"]

    # -- waiting ---------------------------------------------------------------------

    async def _wait(self, watch: _Watch) -> Mapping[str, Any]:
        while watch.detail is None:
            if not self._polling:
                self._polling = True
                try:
                    await self._poll_until(watch)
                finally:
                    self._polling = False
                    self._hand_on()
            else:
                await watch.wake.wait()
                watch.wake = anyio.Event()
        return watch.detail

    def _hand_on(self) -> None:
        """Wake one waiter so that it takes the poller role."""
        for w in self._watches.values():
            if w.detail is None:
                w.wake.set()
                return

    def interval(self, in_flight: int) -> float:
        """Seconds between rounds: `poll_interval`, or longer when a round takes many
        DescribeJobs calls (one per 100 jobs), to stay at DESCRIBE_RATE calls a second."""
        calls = math.ceil(in_flight / DESCRIBE_CHUNK)
        return max(self.poll_interval, calls / self.describe_rate)

    async def _poll_until(self, watch: _Watch) -> None:
        while watch.detail is None:
            in_flight = sum(1 for w in self._watches.values() if w.detail is None)
            wait = self._last_poll + self.interval(in_flight) - anyio.current_time()
            await anyio.sleep(max(0.0, wait))
            await self._poll()

    async def _poll(self) -> None:
        """One round: DescribeJobs for every job in flight; wake the ones that ended."""
        watching = [w for w in self._watches.values() if w.detail is None]
        self._last_poll = anyio.current_time()
        for i in range(0, len(watching), DESCRIBE_CHUNK):
            chunk = watching[i : i + DESCRIBE_CHUNK]
            try:
                answer = await self._call("batch", "DescribeJobs", jobs=[w.aws_id for w in chunk])
            except AwsError:
                return  # AWS unreachable or refusing: the next round asks again
            by_id = {str(j["jobId"]): j for j in answer.get("jobs", [])}
            for w in chunk:
                job = by_id.get(w.aws_id)
                if job is None:
                    w.missing += 1
                    if w.missing >= GONE_ROUNDS:  # deleted, or another account's
                        w.detail = {"jobId": w.aws_id, "status": "FAILED", "gone": True}
                        w.wake.set()
                    continue
                w.missing = 0
                w.status = str(job.get("status", w.status))
                if w.status in _TERMINAL:
                    w.detail = job
                    w.wake.set()

    # -- stopping --------------------------------------------------------------------

    async def _stop(self, watch: _Watch) -> None:
        """CancelJob a job that has not started, TerminateJob one that has (or that
        started while it was being cancelled)."""
        reason = f"Stopped by flowbatch (run {watch.attempt.run_id})"
        try:
            if watch.status in _NOT_STARTED:
                await self._call("batch", "CancelJob", jobId=watch.aws_id, reason=reason)
                answer = await self._call("batch", "DescribeJobs", jobs=[watch.aws_id])
                jobs = answer.get("jobs", [])
                status = str(jobs[0].get("status", "")) if jobs else ""
                if status in _NOT_STARTED or status in _TERMINAL:
                    return
            await self._call("batch", "TerminateJob", jobId=watch.aws_id, reason=reason)
        except AwsError:
            pass  # nothing more can be done from here; `flowbatch terminate` says so

    # -- logs ------------------------------------------------------------------------

    async def _copy_logs(self, attempt: Attempt, detail: Mapping[str, Any]) -> None:
        """The attempt's CloudWatch Logs stream into its local `stdout` (empty when
        AWS kept none, as for a job that never started)."""
        stream = (detail.get("container") or {}).get("logStreamName")
        if not stream:
            return
        params: dict[str, Any] = {
            "logGroupName": LOG_GROUP,
            "logStreamName": str(stream),
            "startFromHead": True,
        }
        path = logfiles.beside(attempt.log_stem, "stdout")
        while True:
            try:
                page = await self._call("logs", "GetLogEvents", **params)
            except AwsError:
                return  # no stream (nothing was printed) or no access to the logs
            lines = "".join(f"{e.get('message', '')}\n" for e in page.get("events", []))
            if lines:
                await anyio.to_thread.run_sync(_append, path, lines)
            token = page.get("nextForwardToken")
            if not page.get("events") or not token or token == params.get("nextToken"):
                return
            params["nextToken"] = token


# -- the requests, as data -----------------------------------------------------------------


def definition_body(attempt: Attempt) -> dict[str, Any]:
    """RegisterJobDefinition's request for the attempt's job, tagged with a digest of
    everything else in it."""
    resources = [
        {"type": "VCPU", "value": str(int(attempt.vcpus))},
        {"type": "MEMORY", "value": str(attempt.memory)},
    ]
    if attempt.gpus:
        resources.append({"type": "GPU", "value": str(attempt.gpus)})
    tags = {k: v for k, v in attempt.tags.items() if not k.startswith("flowbatch:")}
    tags["flowbatch:pipeline"] = tag_text(attempt.pipeline)
    body: dict[str, Any] = {
        "jobDefinitionName": attempt.name,
        "type": "container",
        "platformCapabilities": ["EC2"],
        "containerProperties": {"image": attempt.image or "", "resourceRequirements": resources},
        # One attempt per AWS job: flowbatch's runner retries (see the module's doc).
        "retryStrategy": {"attempts": 1},
        "propagateTags": True,
        "tags": tags,
    }
    if attempt.timeout is not None:
        body["timeout"] = {"attemptDurationSeconds": max(60, math.ceil(attempt.timeout))}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    body["tags"] = {**tags, "flowbatch:digest": digest}
    return body


def submission(
    attempt: Attempt, queue: str, definition_arn: str, *, size: int = 1
) -> dict[str, Any]:
    """SubmitJob's request for one attempt: the rendered command and the attempt's
    environment as overrides of its definition. With `size` > 1, an AWS array job of
    `attempt` and the `size - 1` children after it, which share its command and
    environment (see `array_runs`)."""
    env = shared_env(attempt)
    if size > 1:
        env["FLOWBATCH_JOB_ID"] = attempt.job_id.rsplit(":", 1)[0]
        env["FLOWBATCH_ARRAY_OFFSET"] = str(attempt.index)
    else:
        env["FLOWBATCH_JOB_ID"] = attempt.job_id
        if attempt.index is not None:
            env["FLOWBATCH_JOB_ARRAY_INDEX"] = str(attempt.index)
    argv = (
        ["/bin/sh", "-c", attempt.command]
        if isinstance(attempt.command, str)
        else list(attempt.command)
    )
    tags = {k: v for k, v in attempt.tags.items() if not k.startswith("flowbatch:")}
    tags["flowbatch:pipeline"] = tag_text(attempt.pipeline)
    tags["flowbatch:run"] = attempt.run_id
    request: dict[str, Any] = {
        "jobName": attempt.name,
        "jobQueue": queue,
        "jobDefinition": definition_arn,
        "containerOverrides": {
            "command": ["/bin/sh", "-c", PRELUDE, "sh", *argv],
            "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
        },
        "tags": tags,
    }
    if size > 1:
        request["arrayProperties"] = {"size": size}
    return request


def shared_env(attempt: Attempt) -> dict[str, str]:
    """The attempt's environment but what AWS sets itself (AWS_BATCH_*), with its
    attempt number as FLOWBATCH_JOB_ATTEMPT (the prelude exports it under AWS's name)."""
    env = {k: v for k, v in attempt.env.items() if not k.startswith("AWS_BATCH")}
    env["FLOWBATCH_JOB_ATTEMPT"] = str(attempt.attempt)
    return env


def array_runs(attempts: list[Attempt]) -> list[list[Attempt]]:
    """`attempts` (children of one array, one attempt number) as runs of consecutive
    indices with the same rendered command and environment: what one AWS array job
    can hold, since AWS gives all its children the same overrides."""
    by_content: dict[tuple[object, ...], list[Attempt]] = {}
    for a in sorted(attempts, key=lambda a: a.index or 0):
        content = (a.command, tuple(sorted(shared_env(a).items())))
        by_content.setdefault(content, []).append(a)
    runs: list[list[Attempt]] = []
    for same in by_content.values():
        run = [same[0]]
        for a in same[1:]:
            if (a.index or 0) == (run[-1].index or 0) + 1:
                run.append(a)
            else:
                runs.append(run)
                run = [a]
        runs.append(run)
    return sorted(runs, key=lambda r: r[0].index or 0)


def tag_text(text: str) -> str:
    """`text` as an AWS tag value can hold it (at most 256 of its characters)."""
    return _TAG_TEXT.sub("_", os.path.basename(text))[:256] or "-"


def result_of(job: Mapping[str, Any], *, host: str | None = None) -> ExecResult:
    """How an AWS job that ended (a JobDetail) ended, as an ExecResult."""
    container = job.get("container") or {}
    attempts = job.get("attempts") or []
    last = (attempts[-1].get("container") or {}) if attempts else {}
    exit_code = container.get("exitCode", last.get("exitCode"))
    reason = str(container.get("reason") or last.get("reason") or "")
    extra = {"aws_job_id": str(job.get("jobId", ""))}
    if job.get("gone"):
        return ExecResult(
            exit_code=None,
            status_reason=f"AWS Batch no longer knows job {extra['aws_job_id']}",
            retryable=False,  # it may still run: a retry could run it twice
            host=host,
            extra=extra,
        )
    if container.get("logStreamName"):
        extra["log_stream"] = str(container["logStreamName"])
    if job.get("status") == "SUCCEEDED":
        return ExecResult(
            exit_code=0 if exit_code is None else int(exit_code), host=host, extra=extra
        )
    status_reason = str(job.get("statusReason") or "")
    if not status_reason:
        status_reason = REASON_ESSENTIAL_EXITED if exit_code is not None else "Job failed"
    if exit_code == 0 and status_reason == REASON_ESSENTIAL_EXITED:
        status_reason = "Job failed"  # FAILED is never a success, whatever the exit code
    return ExecResult(
        exit_code=None if exit_code is None else int(exit_code),
        status_reason=status_reason,
        reason=reason,
        # AWS never retries a job that timed out; flowbatch's runner follows it.
        retryable=not status_reason.startswith(REASON_TIMEOUT),
        host=host,
        extra=extra,
    )


def _empty_logs(stem: Path) -> None:
    private_dir(stem.parent)
    for name in logfiles.STREAMS:
        os.close(private_file(logfiles.beside(stem, name)))


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8", errors="replace") as f:
        f.write(text)
