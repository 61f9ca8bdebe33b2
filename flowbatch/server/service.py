"""The service: AWS Batch's operations over the catalog (`registry`), the store and the
one standing scheduler (`flowbatch.run.runner.standing_runner`).

Everything here runs on the server's one event loop, called by the HTTP app
(`Backend.call`) and by the registry's scheduling callbacks: one writer, no locks, as
in the runner. A SubmitJob is written to the store (its row and the request it came
from) before it is answered; the scheduler reports the job's states through the
store's usual buffered events, so a DescribeJobs flushes them first (it reads what it
wrote).

A restarted server (`start`) gives its unfinished jobs back to the scheduler: an array's
children that ended stay ended, and an attempt that was running when the server
stopped is re-adopted where its engine outlives the server (a SLURM job: the same
attempt goes on, watched again, and ends as if the server had never stopped). Any
other (a local process, which the reaper killed with the server; an attempt whose
engine no longer knows it) ends with `HOST_LOST`, after which the job's retry strategy
decides, as AWS does for a job whose instance went away.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from flowbatch.executors import logfiles
from flowbatch.lang.model import ComputeEnv, JobSpec, Queue
from flowbatch.run.runner import Adopted, Runner
from flowbatch.run.state import JobEvent
from flowbatch.server import jobs, listing, logs
from flowbatch.server.errors import ApiError, ClientException, Unsupported
from flowbatch.server.registry import Registry
from flowbatch.store.jobstore import Store, StoreError
from flowbatch.store.standing import Retained, Running, Submission

__all__ = ["HOST_LOST", "KEEP_SECONDS", "RUN_ID", "NamedSink", "Service"]

RUN_ID = "server"  # the standing run's id: one per state directory
# What AWS writes when the instance under a job goes away; a retry rule can match it.
HOST_LOST = "Host EC2 (instance flowbatch-server) terminated."
MAX_DESCRIBE = 100
QUEUE_DELETED = "Job queue deleted"  # the statusReason of a deleted queue's jobs
KEEP_SECONDS = 24 * 3600.0  # AWS keeps a job this long after it ends


class ResourceNotFound(ApiError):
    """CloudWatch Logs' answer for a log group or stream it does not have."""

    def __init__(self, message: str) -> None:
        super().__init__("ResourceNotFoundException", message, 400)


def _without_expired(request: dict[str, Any], kept: Mapping[str, object]) -> dict[str, Any]:
    """A kept job's request without the dependencies on jobs no longer kept (expired 24
    hours after they ended): they were met, or the job would have failed with them and
    ended; either way they decide nothing now, and a restart must not refuse the job."""
    deps = request.get("dependsOn")
    if not deps:
        return request
    left = [d for d in deps if "jobId" not in d or str(d["jobId"]).partition(":")[0] in kept]
    return {**request, "dependsOn": left} if len(left) != len(deps) else request


def _may_retry(spec: JobSpec, attempts: int) -> bool:
    """Whether a job whose attempt number `attempts` was lost gets another (AWS: the
    retry strategy decides, the host-lost reason matched like any other)."""
    return attempts < spec.retry.attempts and spec.retry.should_retry(None, HOST_LOST)


class NamedSink:
    """The store, as the scheduler's sink: the scheduler keys a server's jobs by their
    ids, the store names them as their submitter did (`jobName`)."""

    def __init__(self, store: Store, names: Mapping[str, str]) -> None:
        self._store = store
        self._names = names

    def emit(self, event: JobEvent) -> None:
        parent = event.job_id.partition(":")[0]
        self._store.emit(replace(event, name=self._names.get(parent, event.name)))

    def flush(self) -> None:
        self._store.flush()


class Service:
    """AWS Batch's API over one state directory. See the module docstring."""

    def __init__(
        self,
        store: Store,
        runner: Runner,
        names: dict[str, str],
        *,
        make_registry: Callable[[Service], Registry],
        workdir: Path,
        keep: float = KEEP_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`names` is the dict the store's `NamedSink` reads; `make_registry` makes the
        catalog with this service as its scheduling callbacks."""
        self.store = store
        self.runner = runner
        self.names = names
        self.workdir = workdir
        self.keep = keep
        self.clock = clock
        self.registry = make_registry(self)
        # Signs ListJobs' nextTokens: a new key each start, so a token outlives no restart.
        self.token_key = secrets.token_bytes(32)
        self._registry_ops = self.registry.operations()

    # -- start ---------------------------------------------------------------------------
    def start(
        self,
        computes: Mapping[str, ComputeEnv] | None = None,
        queues: Mapping[str, Queue] | None = None,
    ) -> int:
        """Load the catalog (with what `--config` declares), then give the scheduler the
        jobs the last server left unfinished; how many."""
        self.registry.load()
        if computes or queues:
            self.registry.declare(computes or {}, queues or {})
        for name, ce in self.registry.computes().items():
            self.runner.set_compute(ce, enabled=self.registry.compute_enabled(name))
        for queue in self.registry.queues().values():
            self.runner.set_queue(queue)
        left = self.store.open_standing_run(RUN_ID, created_at=self.clock())
        return self._resume(left)

    def _resume(self, kept: Sequence[Retained]) -> int:
        """Give the scheduler every job the store keeps: the ended ones for later jobs
        to depend on, the others to run (see the module docstring); how many of those."""
        specs: list[JobSpec] = []
        again: list[JobSpec] = []  # not ended: scheduled again
        begun: dict[tuple[str, int | None], int] = {}
        ended: dict[str, bytes] = {}
        finished: dict[str, tuple[bool, str]] = {}
        lost_jobs: list[str] = []  # single jobs whose lost attempt was their last
        lost_children: list[str] = []  # the same, of array children
        running: dict[tuple[str, int | None], Adopted] = {}  # attempts that go on
        sizes: dict[str, int | None] = {}  # the jobs rebuilt so far, for `dependsOn`
        for job in kept:
            request = _without_expired(json.loads(job.submission.request), sizes)
            spec = jobs.job_spec(
                request,
                self._definition(job.submission.definition),
                job_id=job.submission.job_id,
                queue=self._name_of_queue(request["jobQueue"]),
                workdir=str(self.workdir),
                lookup=lambda ref: sizes[ref] if ref in sizes else self._array_size(ref),
            )
            sizes[spec.name] = spec.array_size
            specs.append(spec)
            self.names[spec.name] = str(request["jobName"])
            if job.ended:
                finished[spec.name] = (job.status == "SUCCEEDED", job.reason)
            else:
                again.append(spec)
            if spec.array_size is None:
                adopted = self._adopted(job.live.get(None)) if job.running else None
                if adopted is not None:
                    running[(spec.name, None)] = adopted
                elif not job.ended:
                    begun[(spec.name, None)] = job.attempt
                    if job.running and not _may_retry(spec, job.attempt):
                        lost_jobs.append(spec.name)
                continue
            mask = bytearray(spec.array_size)
            for index, (status, attempts) in job.children.items():
                adopted = None if job.ended else self._adopted(job.live.get(index))
                if status == "SUCCEEDED":
                    mask[index] = 1
                elif status == "FAILED" or job.ended:
                    mask[index] = 2
                elif adopted is not None:
                    running[(spec.name, index)] = adopted
                elif status in ("STARTING", "RUNNING") and not _may_retry(spec, attempts):
                    mask[index] = 2
                    lost_children.append(f"{spec.name}:{index}")
                elif attempts:
                    begun[(spec.name, index)] = attempts
            ended[spec.name] = bytes(mask)
        if again:
            self.store.resubmit_standing(
                again,
                HOST_LOST,
                when=self.clock(),
                failed=lost_children,
                adopted=[name if i is None else f"{name}:{i}" for name, i in running],
            )
        if specs:
            self.runner.submit(
                specs,
                {s.name: s.name for s in specs},
                begun=begun,
                ended=ended,
                finished=finished,
                running=running,
            )
            for job_id in lost_jobs:
                self.runner.fail(job_id, HOST_LOST)
        return len(again)

    def _adopted(self, live: Running | None) -> Adopted | None:
        """The attempt that was RUNNING, to go on where its executor can watch it again
        (`Adoptable`: SLURM's); None when it is lost with the server (a local process)."""
        if live is None or not self.runner.adoptable(live.compute, live.host):
            return None
        return Adopted(
            attempt=live.attempt,
            compute=live.compute,
            host=live.host,
            log_stem=Path(live.log_path),
            external_id=live.external_id,
            lost_reason=HOST_LOST,
        )

    def expire(self) -> int:
        """Forget jobs that ended more than `keep` seconds ago: their rows, their logs,
        their place in the scheduler; how many (at most 1,000 a call)."""
        gone = self.store.expire_standing(RUN_ID, self.clock() - self.keep)
        for job_id in gone:
            if job_id in self.runner.by_id:
                self.runner.forget(job_id)
            self.names.pop(job_id, None)
        logfiles.remove(self.runner.log_root, set(gone))  # a job's name is its id here
        return len(gone)

    # -- the registry's scheduling callbacks -------------------------------------------------
    def compute_changed(self, ce: ComputeEnv | None, name: str, enabled: bool) -> None:
        if ce is not None:
            self.runner.set_compute(ce, enabled=enabled)

    def queue_changed(self, queue: Queue | None, name: str) -> None:
        if queue is not None:
            self.runner.set_queue(queue)
            return
        # Deleted (DISABLED first, as AWS requires): it takes no more work, and what it
        # still holds is terminated, as AWS terminates the jobs of a deleted queue.
        self.runner.set_queue(Queue(name=name, compute=(), state="disabled"))
        for job_id in self.runner.frontier.unfinished_in(name):
            self.runner.request(job_id, "terminate", QUEUE_DELETED)

    # -- the API ----------------------------------------------------------------------------
    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        own = _OWN.get(operation)
        if own is not None:
            return own(self, params)
        method = self._registry_ops.get(operation)
        if method is None:
            raise Unsupported(operation)
        return dict(method(params))

    def submit_job(self, p: dict[str, Any]) -> dict[str, Any]:
        queue = self.registry.queue(p["jobQueue"])
        definition = self.registry.definition(p["jobDefinition"])
        job_id = str(uuid.uuid4())
        spec = jobs.job_spec(
            p,
            definition,
            job_id=job_id,
            queue=queue["jobQueueName"],
            workdir=str(self.workdir),
            lookup=self._array_size,
        )
        now = self.clock()
        request = dict(p, jobQueue=queue["jobQueueArn"])
        sub = Submission(
            job_id,
            json.dumps(request, sort_keys=True),
            definition["jobDefinitionArn"],
            json.dumps(dict(spec.tags), sort_keys=True),
            now,
        )
        self.store.add_standing_jobs(RUN_ID, [spec], [p["jobName"]], [sub])
        self.names[job_id] = p["jobName"]
        self.runner.submit([spec], {job_id: job_id})
        return {
            "jobArn": self.registry.arns.arn("job", job_id),
            "jobName": p["jobName"],
            "jobId": job_id,
        }

    def describe_jobs(self, p: dict[str, Any]) -> dict[str, Any]:
        ids = p["jobs"]
        if len(ids) > MAX_DESCRIBE:
            raise ClientException(f"jobs: at most {MAX_DESCRIBE} job ids, got {len(ids)}")
        self._flush()
        out = []
        arns = self.registry.arns
        for job_id in ids:
            sub = self.store.submission(job_id)
            if sub is None:
                continue  # AWS leaves out the ids it does not know
            try:
                record = self.store.job(job_id)
            except StoreError:
                continue
            request = json.loads(sub.request)
            out.append(
                jobs.job_detail(
                    record,
                    job_arn=arns.arn("job", job_id),
                    arn_of_queue=str(request["jobQueue"]),
                    arn_of_definition=sub.definition,
                    request=request,
                    definition=self._definition(sub.definition),
                )
            )
        return {"jobs": out}

    def list_jobs(self, p: dict[str, Any]) -> dict[str, Any]:
        self._flush()
        queue = self._queue_name(p["jobQueue"]) if p.get("jobQueue") else None
        query = listing.list_query(p, queue=queue, run_id=RUN_ID, key=self.token_key)
        page, more = self.store.list_jobs(query)
        arns = self.registry.arns
        out: dict[str, Any] = {
            "jobSummaryList": [
                listing.job_summary(job, job_arn=arns.arn("job", job.record.job_id)) for job in page
            ]
        }
        if more and page:
            out["nextToken"] = listing.next_token(query, page[-1].cursor, key=self.token_key)
        return out

    def cancel_job(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._control(p, "cancel")

    def terminate_job(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._control(p, "terminate")

    def get_log_events(self, p: dict[str, Any]) -> dict[str, Any]:
        """CloudWatch Logs' GetLogEvents for an attempt's `logStreamName` (see
        `flowbatch.server.logs`)."""
        parsed = jobs.parse_log_stream(str(p.get("logStreamName") or ""))
        if p.get("logGroupName") != logs.LOG_GROUP or parsed is None:
            raise ResourceNotFound("The specified log stream does not exist.")
        _, job_id, number = parsed
        if not self._ours(job_id):
            raise ResourceNotFound("The specified log stream does not exist.")
        self._flush()
        try:
            record = self.store.job(job_id)
        except StoreError:
            raise ResourceNotFound("The specified log stream does not exist.") from None
        attempts = record.detail.attempts if record.detail is not None else ()
        if not 1 <= number <= len(attempts) or attempts[number - 1].log_path is None:
            raise ResourceNotFound("The specified log stream does not exist.")
        where = str(attempts[number - 1].log_path)
        return logs.get_log_events([logfiles.recorded_file(where, s) for s in logfiles.STREAMS], p)

    # -- helpers ----------------------------------------------------------------------------
    def _control(self, p: dict[str, Any], action: str) -> dict[str, Any]:
        job_id = str(p["jobId"])
        parent, colon, index = job_id.partition(":")
        if not self._ours(job_id):
            raise ClientException(f"Job {job_id} not found")
        if colon:  # a child: `ID:N` with N one of the array's indices
            size = (
                self.runner.frontier.spec(parent).array_size
                if parent in self.runner.frontier
                else None
            )
            if (
                size is None
                or not index.isdigit()
                or int(index) >= size
                or index != str(int(index))
            ):
                raise ClientException(f"Job {job_id} not found")
        if parent not in self.runner.frontier:
            return {}  # it ended (and was forgotten): nothing to cancel (AWS answers the same)
        self.runner.request(job_id, action, p["reason"])
        return {}

    def _ours(self, job_id: str) -> bool:
        """Whether a job id is one of the server's own (a local `flowbatch run` may share
        the state directory: its jobs are no caller's business)."""
        return self.store.submission(job_id) is not None

    def _flush(self) -> None:
        # On an error the scheduler's next flush says why; reading what is there is right.
        with contextlib.suppress(StoreError):
            self.store.flush()

    def _array_size(self, job_id: str) -> int | jobs.Missing | None:
        if job_id in self.runner.frontier:
            return self.runner.frontier.spec(job_id).array_size
        return jobs.MISSING

    def _queue_name(self, ref: str) -> str:
        return str(self.registry.queue(ref)["jobQueueName"])

    def _name_of_queue(self, ref: str) -> str:
        """The name of a queue a stored request names (it may be gone since)."""
        return self.registry.arns.name_of("job-queue", ref) or ref

    def _definition(self, arn: str) -> dict[str, Any]:
        """A definition by its ARN, ACTIVE or not (a restart rebuilds jobs submitted
        with a revision deregistered since, as AWS runs them)."""
        found = self.registry.describe_job_definitions({"jobDefinitions": [arn]})
        if not found["jobDefinitions"]:
            raise ClientException(f"JobDefinition {arn} not found")
        return dict(found["jobDefinitions"][0])

    # -- job tags (the registry's JobTags) ------------------------------------------------
    def get(self, job_id: str) -> Mapping[str, str] | None:
        return self.store.job_tags(job_id) if self._ours(job_id) else None

    def set(self, job_id: str, tags: Mapping[str, str]) -> None:
        old = self.store.job_tags(job_id) or {}
        self.store.set_job_tags(job_id, {**old, **tags})

    def remove(self, job_id: str, keys: Sequence[str]) -> None:
        old = self.store.job_tags(job_id) or {}
        self.store.set_job_tags(job_id, {k: v for k, v in old.items() if k not in keys})


_OWN: dict[str, Callable[[Service, dict[str, Any]], dict[str, Any]]] = {
    "SubmitJob": Service.submit_job,
    "DescribeJobs": Service.describe_jobs,
    "ListJobs": Service.list_jobs,
    "CancelJob": Service.cancel_job,
    "TerminateJob": Service.terminate_job,
    "GetLogEvents": Service.get_log_events,
}
