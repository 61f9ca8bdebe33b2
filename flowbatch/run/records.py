"""What a run left behind, as typed records: a run, its jobs, their attempts.

The store reads its rows into these (`flowbatch.store.views`); the outputs and the CLI
take them. The JSON the CLI prints is one rendering of them, in AWS Batch's shapes:
`describe_json` (an entry of DescribeJobs' `jobs`, a JobDetail), `summary_json` (a
ListJobs summary) and `run_json` (an entry of `flowbatch runs --json`).

Times are epoch milliseconds, as AWS shows them. A record is frozen: a reader that
must show a value otherwise (a log directory that moved) makes a new one with
`dataclasses.replace`.

The ARNs AWS would show use the region `local` and the account `000000000000` (the
placeholder account of AWS's own local tools): `arn:aws:batch:local:000000000000:job/ID`.
Every job is its own job definition, revision 1, named after the job.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from flowbatch.run.state import DEPENDENCY_FAILED, JobState

ARN_PREFIX: Final = "arn:aws:batch:local:000000000000"


def job_arn(job_id: str) -> str:
    return f"{ARN_PREFIX}:job/{job_id}"


def job_definition_arn(name: str, revision: int = 1) -> str:
    return f"{ARN_PREFIX}:job-definition/{name}:{revision}"


class RunStatus(enum.Enum):
    """A run's status. A run that ended is SUCCEEDED, FAILED or INTERRUPTED (`ENDED`);
    one that has not reads RUNNING while its runner is alive, UNKNOWN when its runner
    is on another machine, and INCOMPLETE once its runner is gone. `step_summary` also
    reads a run that stopped short of all its jobs as INCOMPLETE."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    INTERRUPTED = "INTERRUPTED"
    UNKNOWN = "UNKNOWN"
    INCOMPLETE = "INCOMPLETE"


ENDED: Final = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.INTERRUPTED})


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptRecord:
    """One attempt of a job (AWS's AttemptDetail, and the peak memory AWS lacks)."""

    started_at: int | None
    stopped_at: int | None
    exit_code: int | None
    reason: str | None  # AWS container.reason
    status_reason: str | None
    log_path: str | None  # its logs' stem (an older store's: their directory), see logfiles
    compute: str | None
    host: str | None
    peak_memory: int | None  # MiB, where measured
    # The id its compute environment gave it: `pid@starttime`, a SLURM job id, an AWS
    # Batch job id.
    external_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobDetail:
    """What DescribeJobs shows of a job beyond its summary."""

    is_cancelled: bool
    is_terminated: bool
    compute: str | None  # the compute environment of its latest attempt
    attempts: tuple[AttemptRecord, ...]
    depends_on: tuple[Mapping[str, Any], ...]  # AWS's dependsOn entries
    parameters: Mapping[str, str]
    tags: Mapping[str, str]
    retry_attempts: int
    command: list[str] | None  # as run (or to run), an argument list
    image: str | None
    vcpus: float
    memory: int
    gpus: int
    environment: Mapping[str, str]
    reason: str | None  # the latest attempt's container.reason
    log_path: str | None  # the latest attempt's `log_path`
    timeout: float | None  # seconds
    summary_updated_at: int | None  # an array parent's: its children's last change


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRecord:
    """A job, an array parent or an array child. `detail` is there when the job was
    described (`Store.job`), None in a listing (`Store.job_records`). `attempts`
    counts the attempts started; `exit_code` is the latest attempt's."""

    job_id: str
    name: str
    run_id: str
    status: JobState
    status_reason: str | None
    created_at: int | None
    started_at: int | None
    stopped_at: int | None
    queue: str | None
    attempts: int
    exit_code: int | None
    array_size: int | None = None  # an array parent's
    array_index: int | None = None  # an array child's
    status_summary: Mapping[JobState, int] | None = None  # an array parent's children
    detail: JobDetail | None = None

    @property
    def label(self) -> str:
        """`name`, or `name[index]` for an array child."""
        return self.name if self.array_index is None else f"{self.name}[{self.array_index}]"

    @property
    def duration(self) -> float | None:
        """Seconds from the job's start to its stop, or None if it has not both."""
        if self.started_at is None or self.stopped_at is None:
            return None
        return max(self.stopped_at - self.started_at, 0) / 1000

    @property
    def never_ran(self) -> bool:
        """A job that failed because something it waits for failed (AWS's reason text)."""
        return self.status is JobState.FAILED and (self.status_reason or "").startswith(
            DEPENDENCY_FAILED
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """One run: its pipeline, params, status and its top-level jobs counted by state."""

    run_id: str
    pipeline: str
    params: Mapping[str, Any]
    created_at: int | None
    ended_at: int | None
    status: RunStatus
    status_reason: str | None
    counts: Mapping[JobState, int]


# -- the JSON renderings -------------------------------------------------------------------


def _summary_json(summary: Mapping[JobState, int]) -> dict[str, int]:
    return {state.value: summary.get(state, 0) for state in JobState}


def summary_json(job: JobRecord) -> dict[str, Any]:
    """`job` as a ListJobs summary (`flowbatch jobs --json`)."""
    out: dict[str, Any] = {
        "jobId": job.job_id,
        "jobName": job.name,
        "runId": job.run_id,
        "jobQueue": job.queue,
        "status": job.status.value,
        "statusReason": job.status_reason,
        "createdAt": job.created_at,
        "startedAt": job.started_at,
        "stoppedAt": job.stopped_at,
        "attempts": job.attempts,
        "container": {"exitCode": job.exit_code},
    }
    if job.array_size is not None:
        out["arrayProperties"] = {
            "size": job.array_size,
            "statusSummary": _summary_json(job.status_summary or {}),
        }
    elif job.array_index is not None:
        out["arrayProperties"] = {"index": job.array_index}
    return out


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _whole(seconds: float) -> int | float:
    # AWS takes whole seconds; a finer flowbatch timeout is shown as it is, not rounded.
    return int(seconds) if float(seconds).is_integer() else seconds


def attempt_json(a: AttemptRecord) -> dict[str, Any]:
    """One attempt as AWS's AttemptDetail."""
    return {
        "container": {
            "exitCode": a.exit_code,
            "reason": a.reason,
            "logStreamName": a.log_path,
            "peakMemory": a.peak_memory,  # MiB; beyond AWS, which has no such field
        },
        "startedAt": a.started_at,
        "stoppedAt": a.stopped_at,
        "statusReason": a.status_reason,
        "computeEnvironment": a.compute,
        "host": a.host,
        "externalId": a.external_id,
    }


def describe_json(job: JobRecord) -> dict[str, Any]:
    """A described `job` (one with `detail`) as an entry of DescribeJobs' `jobs`."""
    d = job.detail
    if d is None:
        raise ValueError(f"job {job.job_id} was listed, not described: it has no detail")
    resources = [
        {"type": "VCPU", "value": _number(d.vcpus)},
        {"type": "MEMORY", "value": str(d.memory)},
    ]
    if d.gpus:
        resources.append({"type": "GPU", "value": str(d.gpus)})
    container: dict[str, Any] = {
        "command": d.command,
        "image": d.image,
        "memory": d.memory,
        "resourceRequirements": resources,
        "environment": [{"name": k, "value": v} for k, v in sorted(d.environment.items())],
        "exitCode": job.exit_code,
        "reason": d.reason,
        "logStreamName": d.log_path,
    }
    if float(d.vcpus).is_integer():
        # AWS's field is an integer; a fractional share is in resourceRequirements only.
        container["vcpus"] = int(d.vcpus)
    out: dict[str, Any] = {
        "jobArn": job_arn(job.job_id),
        "jobId": job.job_id,
        "jobName": job.name,
        "jobDefinition": job_definition_arn(job.name),
        "isCancelled": d.is_cancelled,
        "isTerminated": d.is_terminated,
        "runId": job.run_id,
        "status": job.status.value,
        "statusReason": job.status_reason,
        "createdAt": job.created_at,
        "startedAt": job.started_at,
        "stoppedAt": job.stopped_at,
        "jobQueue": job.queue,
        "computeEnvironment": d.compute,
        "attempts": [attempt_json(a) for a in d.attempts],
        "dependsOn": [dict(dep) for dep in d.depends_on],
        "parameters": dict(d.parameters),
        "tags": dict(d.tags),
        "retryStrategy": {"attempts": d.retry_attempts},
        "container": container,
    }
    if d.timeout is not None:
        out["timeout"] = {"attemptDurationSeconds": _whole(d.timeout)}
    if job.array_size is not None:
        out["arrayProperties"] = {
            "size": job.array_size,
            "statusSummary": _summary_json(job.status_summary or {}),
            "statusSummaryLastUpdatedAt": d.summary_updated_at,
        }
    elif job.array_index is not None:
        out["arrayProperties"] = {"index": job.array_index}
    return out


def run_json(run: RunRecord) -> dict[str, Any]:
    """`run` as an entry of `flowbatch runs --json`."""
    return {
        "runId": run.run_id,
        "pipeline": run.pipeline,
        "params": dict(run.params),
        "createdAt": run.created_at,
        "endedAt": run.ended_at,
        "status": run.status.value,
        "statusReason": run.status_reason,
        "counts": {s.value: n for s, n in sorted(run.counts.items(), key=lambda i: i[0].value)},
    }
