"""CLI commands: `cancel` and `terminate` (AWS CancelJob / TerminateJob, from another
terminal, through the store's request table), and what stops the attempts a lost runner
left running (`terminate` of its jobs; `run --resume` refuses while one may still run).

Both commands wait for the run to act and say what happened: the request is
acknowledged by the runner's flush that records its effects (`Store.request_state`).
An attempt a lost runner left is stopped by what it is: a local process group only
while it is still the recorded process (pid and start time: a reused pid is never
signalled), a SLURM job by `scancel`; an SSH job cannot be reached from here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from flowbatch.cli.common import STORED_TEXT, open_existing_store, resolve_job_id, state_dir_option
from flowbatch.cli.remote import server_option
from flowbatch.cli.reporting import CommandError, fail
from flowbatch.errors import FlowbatchError
from flowbatch.executors.base import GRACE_SECONDS, REASON_CANCELLED, REASON_TERMINATED
from flowbatch.outputs.jobview import visible
from flowbatch.run.state import JobState

if TYPE_CHECKING:
    from flowbatch.run.records import JobRecord
    from flowbatch.store.jobstore import Store
    from flowbatch.store.lost import Stray

_POLL_SECONDS = 0.1

_JOB_ID_HELP = """JOB_ID is an id, a unique start of one, or NAME (NAME:INDEX for an array child)
    of a job of the latest run."""

_HELP = {
    "cancel": f"""Cancel JOB_ID if it has not started (AWS CancelJob).

    A job still SUBMITTED, PENDING or RUNNABLE in a running `flowbatch run` (from
    another terminal) fails with --reason, and so do the jobs that depend on it. A job
    that has started is not touched: use `flowbatch terminate`. Waits for the run to act
    (at most --wait) and says what happened.

    {_JOB_ID_HELP} With --server: CancelJob on the server's job JOB_ID. Exit 0 once
    cancelled; 1 when the job had already started or
    finished, or the run did not act in time; 2 for an unknown job.""",
    "terminate": f"""Terminate JOB_ID, killing it if it runs (AWS TerminateJob).

    A job of a running `flowbatch run` (from another terminal) that has not started
    fails as with `cancel`; one that runs gets SIGTERM, then SIGKILL after the grace
    period, and fails with --reason without being retried. Terminating an array job
    terminates its children. A job left running by a runner that died (kill -9) is
    stopped too: its process group if it is still the same process, or its SLURM job.
    Waits until the job has stopped (at most --wait).

    {_JOB_ID_HELP} With --server: TerminateJob on the server's job JOB_ID. Exit 0 once
    terminated; 1 when the job had already finished, could
    not be stopped, or the run did not act in time; 2 for an unknown job.""",
}


def _control(action: str) -> click.Command:
    @click.command(action, help=_HELP[action])
    @click.argument("job_id")
    @click.option("--reason", type=STORED_TEXT, default=None, help="The status reason to record.")
    @state_dir_option
    @click.option(
        "--wait",
        "wait_seconds",
        type=click.FloatRange(min=0),
        default=60.0,
        show_default=True,
        help="How long to wait for the run to act on the request.",
    )
    @server_option
    @click.pass_context
    def command(
        ctx: click.Context,
        job_id: str,
        reason: str | None,
        state_dir: Path | None,
        wait_seconds: float,
        server: str | None,
    ) -> None:
        if server:
            from flowbatch.cli import remote

            remote.control_command(
                remote.Remote(server, state_dir), action, job_id, reason, wait_seconds
            )
            return
        store = open_existing_store(state_dir)
        try:
            job_id = resolve_job_id(store, job_id)
            default = REASON_CANCELLED if action == "cancel" else REASON_TERMINATED
            code, message = _act(
                store, job_id, action, reason or f"{default} by user", wait_seconds
            )
        finally:
            store.close()
        if code != 0:
            fail(CommandError(message, code))
        click.echo(visible(message, keep="\n"), err=True)  # _act's values are visible already

    return command


def _act(store: Store, job_id: str, action: str, reason: str, wait: float) -> tuple[int, str]:
    """Ask the run to cancel or terminate `job_id`, wait for it to act, and say what
    happened: (exit code, message)."""
    job = store.job(job_id)
    status = job.status
    if status in (JobState.SUCCEEDED, JobState.FAILED):
        if action == "terminate" and store.stray_attempts(job.job_id):
            return _stop_strays(store, job.job_id)
        return 1, f"job {job_id} already {status.value}" + _why(job)
    if action == "cancel" and status in (JobState.STARTING, JobState.RUNNING):
        return 1, _started(job_id, status)
    from flowbatch.store.jobstore import RUNNER_LOST

    seq = store.request(job_id, action, reason)  # type: ignore[arg-type]
    deadline = time.monotonic() + wait
    while True:
        store.settle_lost_runs()  # a runner found dead cannot act: its jobs fail now
        applied = store.request_state(seq) == "applied"
        job = store.job(job_id)
        status = job.status
        lost = status is JobState.FAILED and (job.status_reason or "").startswith(RUNNER_LOST)
        if lost:
            if action == "terminate" and store.stray_attempts(job.job_id):
                return _stop_strays(store, job.job_id)
            return 1, f"job {job_id} FAILED" + _why(job)
        children = _children(job)
        if applied and children is not None:
            waiting, running = children
            if action == "cancel" and waiting == 0:
                note = f"; {running} had already started: " if running else ""
                return 0, f"job {job_id}: its children not started are cancelled" + (
                    note + f"use `flowbatch terminate {job_id}`" if running else ""
                )
            if action == "terminate" and waiting == running == 0:
                return 0, f"job {job_id} terminated"
        elif status is JobState.FAILED:
            if job.status_reason == reason:
                return 0, f"job {job_id} {'cancelled' if action == 'cancel' else 'terminated'}"
            return 1, f"job {job_id} FAILED" + _why(job)
        elif status is JobState.SUCCEEDED:
            return 1, f"job {job_id} SUCCEEDED before the {action} reached it"
        elif applied and action == "cancel" and status in (JobState.STARTING, JobState.RUNNING):
            return 1, _started(job_id, status)
        if time.monotonic() >= deadline:
            state = store.request_state(seq)
            return 1, (
                f"job {job_id} is still {status.value} after {wait:g} s: the run "
                + ("has not taken the request yet" if state == "open" else "is still acting on it")
                + " (it stays queued)"
            )
        time.sleep(_POLL_SECONDS)


def _children(job: JobRecord) -> tuple[int, int] | None:
    """An array job's children not yet started and started but not done; None for a
    job that is no array."""
    if job.array_size is None:
        return None
    summary = job.status_summary or {}
    waiting = sum(
        summary.get(s, 0) for s in (JobState.SUBMITTED, JobState.PENDING, JobState.RUNNABLE)
    )
    return waiting, summary.get(JobState.STARTING, 0) + summary.get(JobState.RUNNING, 0)


def _started(job_id: str, status: JobState) -> str:
    return (
        f"job {job_id} had already started ({status.value}): cancel only stops jobs that have "
        f"not; use `flowbatch terminate {job_id}`"
    )


def _why(job: JobRecord) -> str:
    reason = job.status_reason
    return f": {reason}" if reason else ""


def _stop_strays(store: Store, job_id: str) -> tuple[int, str]:
    """Stop what a lost runner left running of `job_id`: a local process group that is
    still the recorded process (never a pid reused since), a SLURM job by its id. What
    cannot be reached from here is named, with exit 1."""
    from flowbatch.store.jobstore import RUNNER_LOST

    stopped, unreachable = [], []
    strays = store.stray_attempts(job_id)
    seen = _Leftovers.look() if strays else _Leftovers([], {})
    for stray in strays:
        outcome = _stop_stray(stray, seen)
        if outcome is None:
            unreachable.append(f"{stray.job_id} attempt {stray.attempt} ({_where(stray)})")
            continue
        store.stopped(stray, f"{RUNNER_LOST}; {outcome}")
        stopped.append(f"{stray.job_id} attempt {stray.attempt}: {outcome}")
    # Each line is made visible on its own: the newlines between them are ours, and
    # `visible` on the whole text would write them out as `\n`.
    head = f"job {job_id}: its runner was lost"
    if unreachable:
        below = [*stopped, "cannot be stopped from here (stop them where they run):", *unreachable]
        raise CommandError(head, 1, notes=tuple(f"  {visible(line)}" for line in below))
    return 0, "\n  ".join(visible(line) for line in [head, *stopped])


def _stop_stray(stray: Stray, seen: _Leftovers) -> str | None:
    """Stop one attempt a lost runner left; what was done, or None if nothing can be."""
    from flowbatch.executors.processes import Process
    from flowbatch.executors.reaper import kill_cgroup

    if stray.kind == "local" and stray.here:
        if not stray.same_boot:
            return "gone (the machine restarted)"
        # A container outlives its runtime client killed with the runner (conmon or
        # dockerd keep it): the runtime removes it, once its client had its chance.
        container = seen.container(stray)
        proc = Process.parse(stray.external_id or "")
        # The attempt's cgroup holds the processes that left its group (setsid), and
        # outlives a leader that has exited; only a reaper killed with its runner
        # leaves one behind.
        cgroups = _attempt_cgroups(stray, seen.dirs)
        if proc is None or proc.ticks is None:
            # A bare pid (recorded before start times were): it may be another
            # process's by now, and is never signalled.
            return None if proc is not None and proc.alive() else "gone"
        if not proc.alive() and not _any_procs(cgroups):
            _remove_cgroups(cgroups)
            return "gone" if container is None else _remove_container(*container)
        proc.signal_group(signal.SIGTERM)
        for path in cgroups:
            kill_cgroup(str(path), signal.SIGTERM, deadline=0.0)
        deadline = time.monotonic() + GRACE_SECONDS
        while (proc.alive() or _any_procs(cgroups)) and time.monotonic() < deadline:
            time.sleep(_POLL_SECONDS)
        killed = proc.alive() or _any_procs(cgroups)
        if proc.alive():
            proc.signal_group(signal.SIGKILL)
        _remove_cgroups(cgroups)
        what = f"process group {proc.pid}" + (" and its cgroup" if cgroups else "")
        if container is not None:
            what += f" ({_remove_container(*container)})"
        return f"{what} killed" if killed else f"{what} terminated"
    if stray.kind == "slurm" and stray.external_id and stray.external_id.isdigit():
        try:
            done = subprocess.run(
                ["scancel", stray.external_id], capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return f"SLURM job {stray.external_id} cancelled" if done.returncode == 0 else None
    return None


def refuse_strays(ctx: click.Context, store: Store, previous_run: str) -> None:
    """`run --resume` never starts a job again beside an attempt of it that a lost runner
    left and that may still run: exit 2 naming them and how to stop them."""
    from flowbatch.run.records import RunStatus
    from flowbatch.store.jobstore import RUNNER_LOST

    run = store.run_of(previous_run)
    if run is not None and run.status is RunStatus.RUNNING:
        # Its runner lives: its jobs may be running now. (A runner on another machine
        # cannot be judged from here, and one whose machine died would then block every
        # resume for good: that run is not held against it.)
        click.echo(
            f"error: run {previous_run} is still running"
            + (f" ({visible(run.status_reason)})" if run.status_reason else "")
            + "; resuming it now would run its jobs a second time beside them",
            err=True,
        )
        click.echo(
            "hint: wait for it to end, or stop it (Ctrl-C where it runs, or `kill` its "
            "`flowbatch run`), then resume",
            err=True,
        )
        ctx.exit(2)
    alive = []
    strays = store.stray_attempts(run_id=previous_run)
    seen = _Leftovers.look() if strays else _Leftovers([], {})
    for stray in strays:
        if _stray_alive(stray, seen):
            alive.append(stray)
        else:
            store.stopped(stray, f"{RUNNER_LOST}; the process was found gone")
    if alive:
        raise StrayAttempts(previous_run, tuple(alive), str(store.path.parent))


class StrayAttempts(FlowbatchError):
    """`run --resume` refused: attempts of `run` that its lost runner left may still run
    (`strays`); `state_dir` is where `flowbatch terminate` finds them."""

    _SHOWN = 20

    def __init__(self, run: str, strays: tuple[Stray, ...], state_dir: str) -> None:
        super().__init__(run, strays, state_dir)
        self.run, self.strays, self.state_dir = run, strays, state_dir

    @property
    def message(self) -> str:
        return (
            f"run {self.run} lost its runner while these jobs ran, and they may "
            "still be running; running them again now would run them twice:"
        )

    @property
    def notes(self) -> tuple[str, ...]:
        shown = [f"  {s.job_id} (attempt {s.attempt}, {_where(s)})" for s in self.strays]
        more = len(self.strays) - self._SHOWN
        return (
            *shown[: self._SHOWN],
            *([f"  ... and {more} more"] if more > 0 else []),
            f"hint: `flowbatch terminate JOB_ID --state-dir {self.state_dir}` stops one "
            "(an array job's id stops its children), then resume again",
        )


def _where(stray: Stray) -> str:
    kind = stray.kind or "unknown compute environment"
    ext = stray.external_id or "no id recorded"
    return f"{kind} `{stray.compute}`, {ext}"


def _stray_alive(stray: Stray, seen: _Leftovers) -> bool:
    """Whether an attempt left by a lost runner may still run. A local process of this
    machine and boot recorded as `pid@starttime` is known gone once it is not that
    process (a bare pid is alive if any process has it); a SLURM job once `squeue` no
    longer knows it or shows it done. Anything else may still run."""
    from flowbatch.executors.processes import Process

    if stray.kind == "slurm" and stray.external_id and stray.external_id.isdigit():
        return _slurm_alive(stray.external_id)
    if stray.kind != "local" or not stray.here:
        return True
    if not stray.same_boot:
        return False
    proc = Process.parse(stray.external_id or "")
    if seen.container(stray) is not None:
        return True
    return proc is None or proc.alive() or _any_procs(_attempt_cgroups(stray, seen.dirs))


def _attempt_cgroups(stray: Stray, dirs: list[Path]) -> list[Path]:
    from flowbatch.executors.cgroups import attempt_label, find_attempt

    return find_attempt(attempt_label(stray.job_id, stray.attempt), dirs)


def _remove_container(runtime: str, name: str) -> str:
    from flowbatch.executors.container import remove_argv

    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(remove_argv(runtime, name), capture_output=True, timeout=60)
    return f"container {name} removed"


@dataclasses.dataclass
class _Leftovers:
    """What lost runners may have left on this machine beside their jobs' process groups,
    looked up once per command (an array job may leave thousands of attempts): their
    cgroup directories, and the containers running under flowbatch's names, which
    outlive a killed runtime client (conmon, dockerd keep them)."""

    dirs: list[Path]
    containers: dict[str, str]  # name: runtime

    @classmethod
    def look(cls) -> _Leftovers:
        from flowbatch.executors.cgroups import runner_dirs

        containers: dict[str, str] = {}
        for runtime in ("podman", "docker"):
            if shutil.which(runtime) is None:
                continue
            try:
                found = subprocess.run(
                    [runtime, "ps", "--filter", "name=^fb-", "--format", "{{.Names}}"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
            except (OSError, subprocess.TimeoutExpired):
                continue
            if found.returncode == 0:
                containers.update((name, runtime) for name in found.stdout.split())
        return cls(runner_dirs(), containers)

    def container(self, stray: Stray) -> tuple[str, str] | None:
        """(runtime, name) of the attempt's container if it is running."""
        from flowbatch.executors.container import name_of

        name = name_of(stray.run_id, stray.job_id, stray.attempt)
        runtime = self.containers.get(name)
        return None if runtime is None else (runtime, name)


def _any_procs(cgroups: list[Path]) -> bool:
    from flowbatch.executors.reaper import cgroup_pids

    return any(cgroup_pids(str(path)) for path in cgroups)


def _remove_cgroups(cgroups: list[Path]) -> None:
    """Kill what is left in them and remove them, and their runner's directory once it
    is empty (its runner and reaper are gone: nobody else would)."""
    from flowbatch.executors.reaper import remove_cgroup

    for path in cgroups:
        remove_cgroup(str(path))
        with contextlib.suppress(OSError):
            path.parent.rmdir()


_SLURM_ACTIVE = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED")


def _slurm_alive(job_id: str) -> bool:
    try:
        found = subprocess.run(
            ["squeue", "-h", "-o", "%T", "-j", job_id], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return True  # cannot tell
    if found.returncode != 0:
        return "invalid job id" not in found.stderr.lower()  # forgotten by SLURM: done
    return any(state.strip() in _SLURM_ACTIVE for state in found.stdout.splitlines())


COMMANDS: list[click.Command] = [_control("cancel"), _control("terminate")]
