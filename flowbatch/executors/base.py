"""The executor seam: how the runner hands one attempt of one job to a compute environment.

An executor runs one attempt and returns how it ended. It never retries, never decides
what runs next, and never touches the store: the runner does all of that. Like httpx's
`handle_request`, this is the only seam between deciding and doing; `executors/fake.py`
ships a scripted executor for tests.

Cancellation is structured: the runner cancels the task that awaits `run()`, and the
executor's `finally` block, shielded and with a deadline, stops what it started
(SIGTERM to the process group, a grace period, SIGKILL; or scancel; or closing the
remote process) before it returns or re-raises.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from anyio.abc import TaskStatus

from flowbatch.lang.model import ComputeEnv

# AWS Batch's status reasons, so that `evaluate_on_exit` rules written for AWS match here.
REASON_ESSENTIAL_EXITED = "Essential container in task exited"
REASON_TIMEOUT = "Job attempt duration exceeded timeout"
# A host that went away. AWS reports a Spot reclaim and a lost instance with this one
# text; the two names say which event an executor means (a lost host also sets
# `ExecResult.host_lost`, so the scheduler stops placing jobs on it).
REASON_HOST_LOST = "Host EC2 (instance {instance}) terminated."
REASON_SPOT = REASON_HOST_LOST
REASON_CANCELLED = "Job cancelled"  # CancelJob's default reason (the CLI adds "by user")
REASON_TERMINATED = "Job terminated"  # TerminateJob's

# How long a job gets between SIGTERM and SIGKILL when it is stopped (timeout, Spot,
# terminate, an interrupted run): AWS ECS's default stopTimeout, 30 s. `flowbatch run
# --stop-grace` changes it; a second Ctrl-C cuts it short (`Hurriable`).
GRACE_SECONDS = 30.0


# podman and docker read an env-file with Go's bufio.Scanner, which refuses a line of
# 64 KiB or more ("token too long") and so the whole container.
ENV_FILE_LINE_MAX = 65535


def env_file_can_carry(name: str, value: str) -> bool:
    """Whether a container runtime's env-file (one `NAME=value` a line) can carry `value`.
    One that cannot (a line break; a final CR would be dropped; a line too long for the
    runtime's parser; bytes that are not UTF-8, for which docker refuses the file and
    prints the line) reaches the container by name instead: `-e NAME`, the value in the
    runtime's own environment."""
    if "\n" in value or "\r" in value:
        return False
    try:
        size = len(value.encode())
    except UnicodeEncodeError:  # os.environ's surrogate escapes of bytes not UTF-8
        return False
    return len(name) + 1 + size <= ENV_FILE_LINE_MAX


def env_bytes(text: str) -> bytes:
    """`text` (an env-file, an env script) as the bytes to send: a value that came from
    the runner's environment keeps the bytes it had there, UTF-8 or not (os.environ
    holds the others as surrogate escapes)."""
    return text.encode(errors="surrogateescape")


# What a service manager hands the runner (systemd's Type=notify, socket activation):
# podman passes these, and the socket or descriptors they name, into every container.
_SERVICE_MANAGER_VARS = frozenset(("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """Everything an executor needs to run one attempt of one job or array child."""

    run_id: str
    job_id: str  # the store's id; for a child "{parent_id}:{index}"
    name: str
    index: int | None
    attempt: int  # from 1
    command: str | tuple[str, ...]  # rendered: a str runs under /bin/sh -c
    # What the job sees wherever it runs, as on AWS Batch: the job's `env`, the host
    # variables it names in `env_from_host`, AWS_BATCH_* and FLOWBATCH_RUN_ID. This,
    # and only this, crosses into a container or onto another machine.
    env: Mapping[str, str]
    workdir: Path
    vcpus: float
    memory: int  # MiB
    gpus: int
    timeout: float | None  # seconds
    image: str | None
    # The stem of this attempt's log files (`executors.logfiles`): its stdout goes to
    # `<log_stem>.stdout`, its stderr to `<log_stem>.stderr`. An adopted attempt of an
    # older store may have a directory here instead (`logfiles.recorded_file` reads both).
    log_stem: Path
    compute: ComputeEnv
    host: str | None = None  # for multi-host environments, the host the scheduler chose
    # What a service that keeps its own records (AWS Batch) labels the attempt with:
    # the pipeline file and the job's `tags`.
    pipeline: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    # The runner's own environment: what a process flowbatch starts on this machine
    # starts from (see `process_env`). Never sent to a container or another machine.
    host_env: Mapping[str, str] = field(default_factory=dict)

    def process_env(self) -> dict[str, str]:
        """The environment of the local process that runs this attempt.

        A job without an image inherits the runner's environment under its own, as a
        make or Snakemake rule does. A container's runtime gets the runner's alone (it
        needs the user's PATH, HOME, XDG_RUNTIME_DIR, ...; the job's variables would
        change how it runs, a job's TMPDIR or HOME for one): the container itself gets
        `env` through an env-file (see `executors.container`), but for the rare value
        an env-file cannot carry, which the runtime passes on by name."""
        if self.image is None:
            return {**self.host_env, **self.env}
        by_name = {k: v for k, v in self.env.items() if not env_file_can_carry(k, v)}
        runtime = {k: v for k, v in self.host_env.items() if k not in _SERVICE_MANAGER_VARS}
        return {**runtime, **by_name}


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecResult:
    """How an attempt ended.

    `exit_code` is None when the process never ran or was lost. `status_reason` is
    AWS's job-level statusReason; `reason` is AWS's container.reason (for example
    "OutOfMemoryError: Container killed due to memory usage"). `retryable` is False for
    outcomes AWS never retries: a timeout or a cancel/terminate.

    An attempt succeeded only if its process exited 0 by itself (`ok`): one that was
    stopped (timeout, Spot interruption, lost host) failed with its reason even when
    the process exited 0 on SIGTERM, as on AWS.
    """

    exit_code: int | None
    status_reason: str = REASON_ESSENTIAL_EXITED
    reason: str = ""
    retryable: bool = True
    host: str | None = None
    # The host (or the connection to it) was lost: the scheduler stops placing jobs on
    # it until `Executor.check_host` says it is back. The attempt itself is retryable.
    host_lost: bool = False
    peak_memory: int | None = None  # MiB, where the executor can measure it
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.status_reason == REASON_ESSENTIAL_EXITED


class Executor(Protocol):
    """Runs attempts on one compute environment."""

    async def run(self, attempt: Attempt, *, task_status: TaskStatus[str]) -> ExecResult:
        """Run one attempt to its end.

        Calls `task_status.started(external_id)` (a pid, a SLURM job id, a container id)
        as soon as the attempt is accepted, which is when the job becomes RUNNING. Raises
        only for cancellation; every other failure is an ExecResult.
        """
        ...

    async def check_host(self, host: str) -> bool:
        """Whether a host that was lost is reachable again (always True for local)."""
        ...

    async def aclose(self) -> None:
        """Release connections and helpers. Running attempts have already ended."""
        ...


def private_dir(path: Path) -> None:
    """`path` and any missing parent, the new ones made 0700 (mkdir's `parents`
    would make them with the umask's mode)."""
    missing: list[Path] = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for p in reversed(missing):
        try:
            p.mkdir(mode=0o700)
        except FileExistsError:
            if not p.is_dir():
                raise
        else:
            p.chmod(0o700)  # mkdir's mode passes through the umask, which may be odd


def private_file(path: Path) -> int:
    """`path` opened for writing, truncated and 0600 (also when it existed already);
    a symlink is refused, so the file written is the one named."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


@runtime_checkable
class Hurriable(Protocol):
    """An executor that can cut grace periods short (optional; the local one can)."""

    def hurry(self) -> None:
        """Kill what is being stopped now, without waiting out the grace period, and
        give attempts stopped from now on no grace period either (a second Ctrl-C)."""
        ...


@runtime_checkable
class Adoptable(Protocol):
    """An executor whose attempts outlive the runner that started them, and which can
    go on watching one (optional; SLURM's can: a SLURM job does not die with flowbatch
    server, while the local executor's reaper kills local jobs with their runner)."""

    async def adopt(self, attempt: Attempt, external_id: str) -> ExecResult | None:
        """Wait for the end of an attempt an earlier runner started, whose `run` reported
        `external_id`, as `run` waits for its own (the same timeout, the same stop when
        cancelled). `attempt` is that attempt as it was made (its number, its log_stem).
        None when the engine no longer knows it, or it was stopped while nobody watched
        it (a stop at the last runner's exit cannot be told from another): the caller
        settles it as lost."""
        ...
