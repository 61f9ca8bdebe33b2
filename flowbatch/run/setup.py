"""What a run is set up with before it starts: its options (`RunOptions`: its run id,
its job ids, its state directory, what it may use and reuse, how often it looks up),
the capacity of its compute environments (`--max-vcpus`, one host for a host-less one,
`--compute OLD=NEW` checked), and what each attempt is set up with (its environment and
log directory).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import random
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from flowbatch.errors import FlowbatchError
from flowbatch.executors import logfiles
from flowbatch.lang.compile import Plan
from flowbatch.lang.diagnostics import did_you_mean
from flowbatch.lang.model import ComputeEnv, Host, JobSpec
from flowbatch.run.hosts import DEFAULT_TIMEOUT
from flowbatch.run.records import RunStatus
from flowbatch.run.state import JobEvent

Control = Callable[[], Iterable[tuple[str, str, str]]]  # (job id, action, reason) requests
Fingerprint = Callable[[str, int | None], str]  # e.g. fingerprint.Fingerprints(plan).of


class EventSink(Protocol):
    """Where a run reports its state changes (the store, the progress display). A sink
    whose `flush` raises stops the run (`RunResult.error`)."""

    def emit(self, event: JobEvent) -> None: ...  # cheap: buffer, don't block

    def flush(self) -> None: ...  # at least every 0.2 s while events flow, and at the end


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """Everything `run_plan` is told about one run that is a value, not a collaborator.

    `compute_overrides` maps a compute environment to the one to use instead
    (`--compute local=cluster`); `max_vcpus` caps local environments; `handle_signals`
    turns SIGINT/SIGTERM/SIGHUP into a clean interruption (jobs terminated, sinks
    flushed, status INTERRUPTED); `reuse` (jobs: None, arrays: a mask, 1 = reused)
    succeed at once with `reuse_reason` (`run --resume`, see `flowbatch.run.resume`);
    when only lost hosts could take the work left, the run gives up on them after
    `host_timeout` seconds (None: never; see `flowbatch.run.hosts`), asking every
    `host_check_interval` seconds whether they are back. Sinks are flushed and
    `control` is polled every `flush_interval` seconds (EventSink's contract: 0.2).
    """

    run_id: str
    job_ids: Mapping[str, str]
    state_dir: Path
    compute_overrides: Mapping[str, str] = field(default_factory=dict)
    max_vcpus: int | None = None
    handle_signals: bool = False
    reuse: Mapping[str, bytes | None] = field(default_factory=dict)
    reuse_reason: str = ""
    host_timeout: float | None = DEFAULT_TIMEOUT
    flush_interval: float = 0.2
    host_check_interval: float = 3.0


def new_run_id(now: float | None = None) -> str:
    """`YYYYMMDD-HHMMSS-xxxx`: UTC time and 4 random hex digits."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(2)}"


def new_job_ids(plan: Plan) -> dict[str, str]:
    """A fresh job id (a uuid4 string, as AWS) for every job of the plan."""
    return {name: str(uuid.uuid4()) for name in plan.jobs()}


def limit_vcpus(computes: Mapping[str, ComputeEnv], max_vcpus: int) -> dict[str, ComputeEnv]:
    """`--max-vcpus N`: local compute environments capped at N vCPUs."""
    out: dict[str, ComputeEnv] = {}
    for name, ce in computes.items():
        if ce.type == "local" and ce.vcpus > max_vcpus:
            hosts = tuple(dataclasses.replace(h, vcpus=min(h.vcpus, max_vcpus)) for h in ce.hosts)
            ce = dataclasses.replace(ce, vcpus=max_vcpus, hosts=hosts)
        out[name] = ce
    return out


def with_host(ce: ComputeEnv) -> ComputeEnv:
    """`ce`, with one host of its whole capacity if it lists none (local, slurm)."""
    if ce.hosts:
        return ce
    host = Host(name=ce.name, vcpus=ce.vcpus, memory=ce.memory, gpus=ce.gpus)
    return dataclasses.replace(ce, hosts=(host,))


def attempt_env(
    host_env: Mapping[str, str],
    spec: JobSpec,
    job_id: str,
    index: int | None,
    attempt: int,
    compute: str,
    run_id: str,
) -> dict[str, str]:
    """What an attempt's job sees wherever it runs (AWS Batch's container environment):
    the job's `env`, the variables of the runner's environment (`host_env`) it names in
    `env_from_host`, and the variables AWS Batch sets (AWS_BATCH_JOB_ID, ..._ATTEMPT,
    ..._ARRAY_INDEX, ...). Nothing else of `host_env`: a local job without an image
    inherits the rest from its process (`Attempt.process_env`), a container or another
    machine never gets it. Names in `env_from_host` are in `host_env` (see
    `missing_host_env`)."""
    env = {name: host_env[name] for name in spec.env_from_host if name in host_env}
    env.update(spec.env)
    env["AWS_BATCH_JOB_ID"] = job_id
    env["AWS_BATCH_JOB_ATTEMPT"] = str(attempt)
    if index is not None:
        env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(index)
    env["AWS_BATCH_JQ_NAME"] = spec.queue
    env["AWS_BATCH_CE_NAME"] = compute
    env["FLOWBATCH_RUN_ID"] = run_id
    return env


class SetupError(FlowbatchError, ValueError):
    """A run that cannot start as asked, found before anything runs. A ValueError too,
    as `run_plan` documented before these errors had a family of their own."""


class MissingHostEnv(SetupError):
    """`env_from_host` variables this environment lacks: each name -> the jobs that
    ask for it."""

    def __init__(self, missing: Mapping[str, tuple[str, ...]]) -> None:
        super().__init__(missing)
        self.missing = dict(sorted(missing.items()))

    @property
    def message(self) -> str:
        what = "; ".join(
            f"`{name}` (env_from_host of {', '.join(f'`{j}`' for j in jobs)})"
            for name, jobs in self.missing.items()
        )
        return f"not set in this environment: {what}; export it before `flowbatch run`"


class UnknownCompute(SetupError):
    """`--compute OLD=NEW` where `name` (OLD or NEW) is not one of `known`."""

    def __init__(self, old: str, new: str, name: str, known: Iterable[str]) -> None:
        super().__init__(old, new, name)
        self.old, self.new, self.name = old, new, name
        self.known = tuple(sorted(known))

    @property
    def message(self) -> str:
        hint = did_you_mean(self.name, self.known, "compute environment")
        return f"--compute {self.old}={self.new}: no compute environment `{self.name}`; {hint}"


def missing_host_env(plan: Plan, host_env: Mapping[str, str]) -> None:
    """Raise MissingHostEnv naming the `env_from_host` variables that `host_env` lacks.

    Checked once, when the run starts (as Snakemake checks `envvars:`), for every job
    of the plan: finding out when the job is reached, hours into a run, would waste
    the run."""
    missing: dict[str, list[str]] = {}
    for spec in plan.pipeline.jobs.values():
        for name in spec.env_from_host:
            if name not in host_env:
                missing.setdefault(name, []).append(spec.name)
    if missing:
        raise MissingHostEnv({name: tuple(jobs) for name, jobs in missing.items()})


def placement_inputs(
    plan: Plan, overrides: Mapping[str, str], max_vcpus: int | None
) -> tuple[dict[str, ComputeEnv], dict[str, tuple[str, ...]]]:
    """The compute environments a run places jobs on (capped by `--max-vcpus`, each with
    its hosts), and each queue's environments after `--compute OLD=NEW` overrides.
    Raises UnknownCompute for an override naming an unknown environment."""
    computes: Mapping[str, ComputeEnv] = plan.computes
    if max_vcpus is not None:
        computes = limit_vcpus(computes, max_vcpus)
    if errors := override_errors(computes, overrides):
        raise errors[0]
    queues = {q.name: tuple(overrides.get(c, c) for c in q.compute) for q in plan.queues.values()}
    return {n: with_host(ce) for n, ce in computes.items()}, queues


def attempt_log_stem(log_root: Path, name: str, index: int | None, attempt: int) -> Path:
    """The stem of an attempt's log files (`executors.logfiles`), in the run's log
    directory `log_root`, which is made if missing, private (0700: what a job prints may
    be secret; the executors make the logs 0600). Nothing is made for the attempt itself:
    a directory costs about as much as a short job. Raises OSError."""
    # Tried on every attempt rather than remembered: a mkdir that finds the directory
    # there makes nothing and costs microseconds, and a log directory removed under a
    # long-lived runner (flowbatch server) comes back.
    where = os.fspath(log_root)
    _private_dirs(where)
    if not os.path.isdir(where):  # a file in its place
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), where)
    return logfiles.stem(log_root, name, index, attempt)


def _private_dirs(path: str) -> None:
    """`path` and its missing parents made, each 0700 whatever the umask: logs hold
    what jobs print, secrets included (os.makedirs gives its mode to the last one
    only). Made straight away, parents only when missing: one mkdir, no look first."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:  # made by another process meanwhile, or there already
        pass
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if not parent or parent == path:
            raise
        _private_dirs(parent)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)


def override_errors(
    computes: Mapping[str, ComputeEnv], overrides: Mapping[str, str]
) -> list[UnknownCompute]:
    """What is wrong with `--compute OLD=NEW` overrides: each name must be a compute
    environment of the plan (`computes`). Empty when they are all right."""
    errors: list[UnknownCompute] = []
    for old, new in overrides.items():
        for name in (old, new):
            if name not in computes:
                errors.append(UnknownCompute(old, new, name, computes))
    return errors


def backoff(base: float | None, attempt: int, rng: random.Random) -> float:
    """Seconds before the attempt after `attempt`: `base`, doubled for each attempt
    after the first, with +-20% jitter so that retries of many children spread out."""
    if not base:
        return 0.0
    return float(base * 2 ** (attempt - 1) * rng.uniform(0.8, 1.2))


@dataclass(slots=True)
class RunResult:
    """How a run ended: SUCCEEDED, FAILED or INTERRUPTED (`records.ENDED`)."""

    status: RunStatus
    failed: list[str] = field(default_factory=list)  # jobs (parents) that failed
    stalled: list[str] = field(default_factory=list)  # left RUNNABLE (disabled queue)
    signal: str | None = None
    error: str | None = None  # why the run stopped early (a sink could not record)

    @property
    def exit_code(self) -> int:
        return {RunStatus.SUCCEEDED: 0, RunStatus.FAILED: 1}.get(self.status, 130)


class Started:
    """The `task_status` the runner hands to an executor: `started(external_id)` calls
    `on_started(external_id)`, which makes the attempt RUNNING."""

    __slots__ = ("_on_started",)

    def __init__(self, on_started: Callable[[object], None]) -> None:
        self._on_started = on_started

    def started(self, value: object = None) -> None:
        self._on_started(value)
