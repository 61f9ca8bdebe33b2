"""The local executor: each attempt is a process (group) on this machine.

An attempt starts in a new session (`start_new_session=True`) so that its whole process
tree can be signalled as one group. Its stdout and stderr are files: the child gets
their descriptors and flowbatch never reads the output, so a job printing a gigabyte
costs flowbatch nothing. The end of the process is awaited through a pidfd (one
descriptor, no helper thread, no SIGCHLD handler).

Stopping (timeout, Spot interruption, cancellation): SIGTERM to the group, up to
`grace` seconds for the leader to exit (`hurry()` cuts it short), then SIGKILL to the
group, so a child that ignores SIGTERM dies too. When the leader exits by itself, what
is left of its group is killed as well, as when an AWS container's main process ends.

Where the machine allows (see `executors.cgroups`), an attempt without an image also
runs in a cgroup of its own: its `memory` is a hard limit (the OOM killer's kill is
reported as AWS reports it), its peak memory is the cgroup's, and stopping it reaches
every process of its tree, including those that left the process group with `setsid`.

A reaper process (`executors.reaper`), started with the first attempt, stops every
job still registered with it when the runner dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import random
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Literal

import anyio
from anyio.abc import TaskStatus

from flowbatch.executors import logfiles
from flowbatch.executors.base import (
    GRACE_SECONDS,
    REASON_SPOT,
    REASON_TIMEOUT,
    Attempt,
    ExecResult,
)
from flowbatch.executors.cgroups import Cgroups, JobCgroup, attempt_label
from flowbatch.executors.processes import Process, boot_ns
from flowbatch.executors.reaper import Reaper
from flowbatch.lang.model import ComputeEnv
from flowbatch.lang.shell_words import plain_words

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
SPOT_WINDOW = 2.0  # seconds: a Spot interruption strikes at a uniform point in this window
_EMPTY_DEADLINE = 5.0  # seconds for a killed cgroup's processes to be gone


class LocalExecutor:
    """Runs attempts as local processes. `grace` is the time between SIGTERM and SIGKILL."""

    def __init__(
        self,
        ce: ComputeEnv,
        *,
        grace: float = GRACE_SECONDS,
        rng: random.Random | None = None,
        cgroups: Cgroups | Literal["auto"] | None = "auto",
    ) -> None:
        """`cgroups`: where jobs' cgroups are made (None: no cgroups; by default found
        with the first attempt, see `executors.cgroups`)."""
        self.ce = ce
        self.grace = grace
        self._rng = rng or random.Random()
        self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self._graces: set[anyio.CancelScope] = set()  # grace periods being waited out
        self._cgroups = cgroups
        self._reaper: Reaper | None = None
        self._root_told = False
        self._pwds: dict[tuple[str | None, Path], str] = {}  # see _as_shell_would
        self._shell_names: set[str] = set()  # variable names a shell passes on

    @property
    def cgroups(self) -> Cgroups | None:
        """The cgroups of this executor's jobs, None where the machine allows none."""
        if self._cgroups == "auto":
            self._root_told = True  # before it exists, see Cgroups.create
            self._cgroups = Cgroups.create(announce=lambda path: self._reaper_send("R", str(path)))
        if self._cgroups is not None and not self._root_told:
            self._root_told = True  # the reaper removes it if the runner cannot
            self._reaper_send("R", str(self._cgroups.root))
        return self._cgroups

    def _reaper_send(self, op: str, arg: str) -> None:
        if self._reaper is None:
            self._reaper = Reaper(self.grace)
        self._reaper.send(op, arg)

    async def run(self, attempt: Attempt, *, task_status: TaskStatus[str]) -> ExecResult:
        container: tuple[str, str] | None = None
        try:
            argv, container = self._argv(attempt)
        except Exception as exc:  # ContainerError: no runtime, bad runtime name
            return ExecResult(
                exit_code=None, status_reason=f"CannotStartContainerError: {exc}", retryable=False
            )
        if container is not None and not os.path.isdir(attempt.workdir):
            # The runtime starts elsewhere (see Popen below), so it is not the one to find
            # out: the job's directory is checked here, as `cwd=` checks it otherwise.
            code = errno.ENOTDIR if os.path.exists(attempt.workdir) else errno.ENOENT
            return ExecResult(
                exit_code=None,
                status_reason=f"CannotStartContainerError: {os.strerror(code)}: {attempt.workdir}",
            )
        cgroup = self._job_cgroup(attempt) if container is None else None
        try:
            return await self._spawn(attempt, argv, container, cgroup, task_status)
        finally:
            # Usually empty already (what the leader left was killed as it exited): one
            # rmdir, no look inside and no cancel scope. If it will not go, the reaper
            # tries at the end.
            if cgroup is not None and not _removed(cgroup):
                with anyio.CancelScope(shield=True):
                    await _remove(cgroup)

    def _job_cgroup(self, attempt: Attempt) -> JobCgroup | None:
        cgroups = self.cgroups
        if cgroups is None:
            return None
        # Made in the directory the reaper was told of (`R`): it needs no line of its own.
        cgroup = cgroups.job(attempt_label(attempt.job_id, attempt.attempt))
        if cgroup is None:
            return None
        return cgroup

    async def _spawn(
        self,
        attempt: Attempt,
        argv: list[str],
        container: tuple[str, str] | None,
        cgroup: JobCgroup | None,
        task_status: TaskStatus[str],
    ) -> ExecResult:
        if self._reaper is None:  # before the job exists: no moment where nothing guards it
            self._reaper = Reaper(self.grace)
        env = attempt.process_env()
        # A command string of plain words runs without a shell where the program is
        # found (`lang.shell_words`): one exec a job instead of two, as make does.
        # Anything else, a program not found included, goes to the shell, whose
        # message and exit status (127, 126) it then is.
        executable: str | None = None
        if container is None and isinstance(attempt.command, str):
            words = plain_words(attempt.command)
            if words is not None:
                executable = _find_program(words[0], env.get("PATH"), attempt.workdir)
                if executable is not None:
                    argv = words
        # A program exec'd directly is spawned from inside its cgroup where the runner
        # can (v1, see `cgroups`): behind the wrapper it would cost a shell's exec more.
        # A command for the shell costs no more behind it (the same shell evaluates
        # it), and there the hand-off to the spawning thread would be the cost.
        step_in: tuple[Cgroups, JobCgroup] | None = None
        if (
            cgroup is not None
            and (executable is not None or isinstance(attempt.command, tuple))
            and isinstance(self._cgroups, Cgroups)
            and self._cgroups.steps_in
        ):
            step_in = (self._cgroups, cgroup)
        if cgroup is not None and step_in is None:
            if cgroup.memory:
                with contextlib.suppress(OSError):  # it runs unlimited rather than not at all
                    cgroup.limit(attempt.memory)
            if isinstance(attempt.command, tuple) and _missing(argv[0], attempt):
                # Behind the wrapper a missing program would be the shell's 127: it is
                # reported as when Popen itself cannot find it.
                return ExecResult(
                    exit_code=None,
                    status_reason="CannotStartContainerError: "
                    f"{os.strerror(errno.ENOENT)}: {argv[0]}",
                )
            if isinstance(attempt.command, str) and executable is None:
                argv = cgroup.wrap_shell(attempt.command)
            else:
                # The wrapper's shell `exec`s the words: it looks the program up and
                # sets PWD itself, as `sh -c` would.
                argv = cgroup.wrap(argv)
                executable = None
        elif executable is not None:
            env = self._as_shell_would(env, attempt.workdir)
        try:
            out = os.open(logfiles.beside(attempt.log_stem, "stdout"), _OPEN_FLAGS, 0o600)
        except OSError as exc:  # a full or read-only disk: no retry will do better
            return _log_failure(exc)
        try:
            try:
                err = os.open(logfiles.beside(attempt.log_stem, "stderr"), _OPEN_FLAGS, 0o600)
            except OSError as exc:
                return _log_failure(exc)
            stdin = self._devnull
            before = boot_ns()
            try:
                if container is not None:  # the container's env-file: see container.py
                    stdin = _env_pipe(attempt)
                if step_in is None:
                    proc = self._popen(argv, executable, stdin, out, err, attempt, container, env)
                else:
                    spawn = functools.partial(
                        self._popen, argv, executable, stdin, out, err, attempt, None, env
                    )
                    proc = step_in[0].spawn_inside(step_in[1], spawn)
            except OSError as exc:
                return ExecResult(
                    exit_code=None,
                    status_reason=f"CannotStartContainerError: {exc.strerror}: "
                    f"{exc.filename or argv[0]}",
                )
            finally:
                os.close(err)
                if stdin != self._devnull:
                    os.close(stdin)
        finally:
            os.close(out)
        over_limit = False
        if step_in is not None and step_in[1].memory:
            over_limit = not _limit_started(step_in[1], attempt.memory)
        pidfd = os.pidfd_open(proc.pid)
        leader = str(Process.spawned(proc.pid, before))
        # A job in a cgroup needs no line: the reaper scans the runner's cgroup directory.
        guard = cgroup is None
        if guard:
            self._reaper_send("+g", leader)
        elif self._reaper is not None:
            self._reaper.check()
        try:
            task_status.started(leader)
            return await self._wait(proc, pidfd, attempt, container, cgroup, over_limit)
        finally:
            os.close(pidfd)
            if guard:
                self._reaper_send("-g", leader)

    def _popen(
        self,
        argv: list[str],
        executable: str | None,
        stdin: int,
        out: int,
        err: int,
        attempt: Attempt,
        container: tuple[str, str] | None,
        env: dict[str, str],
    ) -> subprocess.Popen[bytes]:
        while True:
            try:
                return subprocess.Popen(
                    argv,
                    executable=executable,
                    stdin=stdin,
                    stdout=out,
                    stderr=err,
                    # A container's runtime gets a directory of the attempt's own: conmon
                    # before 2.1.13 drops an `oom` file where it runs (conmon#504), which
                    # must not land among the user's files. The container itself is
                    # told its working directory by `-w`.
                    cwd=(
                        logfiles.own_dir(attempt.log_stem, "conmon")
                        if container is not None
                        else attempt.workdir
                    ),
                    env=env,
                    start_new_session=True,
                )
            except OSError:
                if executable is None or not isinstance(attempt.command, str):
                    raise
                # Found but not runnable as a program (a script without `#!`, a file
                # system mounted noexec): the shell knows what to make of it.
                argv, executable = ["/bin/sh", "-c", attempt.command], None
                env = attempt.process_env()

    def _as_shell_would(self, env: dict[str, str], workdir: Path) -> dict[str, str]:
        """`env`, changed in place, as `/bin/sh` passes it on to a program it runs:
        without the variables whose names the shell cannot hold (dash drops them), and
        with PWD naming the working directory (the one inherited where it names the
        same directory, else the physical path)."""
        key = (env.get("PWD"), workdir)
        pwd = self._pwds.get(key)
        if pwd is None:
            pwd = self._pwds[key] = _shell_pwd(key[0], workdir)
        # Nearly every name is one seen before: one set difference in C, not two
        # string checks per variable (80 and more of them) per job.
        for name in env.keys() - self._shell_names:
            if name.isidentifier() and name.isascii():
                self._shell_names.add(name)
            else:
                del env[name]
        env["PWD"] = pwd
        return env

    async def _wait(
        self,
        proc: subprocess.Popen[bytes],
        pidfd: int,
        attempt: Attempt,
        container: tuple[str, str] | None,
        cgroup: JobCgroup | None,
        over_limit: bool,
    ) -> ExecResult:
        """`over_limit`: the job was past its memory limit before the limit could be
        set, and was killed for it (see `_limit_started`)."""
        limit = attempt.timeout
        spot_at: float | None = None
        ce = attempt.compute
        if ce.spot and ce.interruption_rate > 0 and self._rng.random() < ce.interruption_rate:
            spot_at = self._rng.uniform(0, SPOT_WINDOW)
        deadline = min(t for t in (limit, spot_at, float("inf")) if t is not None)
        ended = False
        try:
            if deadline == float("inf"):  # most jobs: no cancel scope of their own
                await anyio.wait_readable(pidfd)
                ended = True
            else:
                with anyio.move_on_after(deadline):
                    await anyio.wait_readable(pidfd)
                    ended = True
            if ended:
                # Leftovers of the job's group; those of its cgroup go with it (see `run`).
                _kill_group(proc.pid, signal.SIGKILL)
                code, peak = _reap(proc, cgroup)
                reason = _container_reason(container, code)
                # Killed for being past its limit (137), not one that ended by itself.
                over_limit = over_limit and code == 128 + signal.SIGKILL
                if over_limit or (cgroup is not None and cgroup.oom_killed()):
                    from flowbatch.executors.container import REASON_OOM

                    reason = REASON_OOM
                return ExecResult(
                    exit_code=code, reason=reason, host=attempt.host, peak_memory=peak
                )
            await self._stop(proc, pidfd, container, cgroup)
            code, peak = _reap(proc, cgroup)
            if spot_at is not None and (limit is None or spot_at < limit):
                instance = f"i-{self._rng.getrandbits(68):017x}"
                return ExecResult(
                    exit_code=code,
                    status_reason=REASON_SPOT.format(instance=instance),
                    host=attempt.host,
                    peak_memory=peak,
                )
            return ExecResult(
                exit_code=code,
                status_reason=REASON_TIMEOUT,
                reason=f"Timeout of {_seconds(limit)} reached",
                retryable=False,
                host=attempt.host,
                peak_memory=peak,
            )
        finally:
            if proc.returncode is None:  # cancelled: cancel/terminate or the run interrupted
                with anyio.CancelScope(shield=True):
                    await self._stop(proc, pidfd, container, cgroup)
                    proc.wait()

    async def _stop(
        self,
        proc: subprocess.Popen[bytes],
        pidfd: int,
        container: tuple[str, str] | None,
        cgroup: JobCgroup | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            _kill_group(proc.pid, signal.SIGTERM, cgroup)
            with anyio.move_on_after(self.grace) as grace:
                self._graces.add(grace)
                try:
                    await anyio.wait_readable(pidfd)
                finally:
                    self._graces.discard(grace)
            # The group id lives as long as the (unreaped) leader, so this reaches
            # children that ignored SIGTERM even when the leader has exited.
            _kill_group(proc.pid, signal.SIGKILL, cgroup)
            await anyio.wait_readable(pidfd)
            if container is not None:
                from flowbatch.executors.container import remove_container

                await remove_container(*container)

    def _argv(self, attempt: Attempt) -> tuple[list[str], tuple[str, str] | None]:
        if attempt.image is None:
            if isinstance(attempt.command, str):
                return ["/bin/sh", "-c", attempt.command], None
            return list(attempt.command), None
        from flowbatch.executors.container import choose_runtime, container_argv, container_name

        runtime = choose_runtime(attempt.compute)
        name = container_name(attempt)
        return container_argv(attempt, runtime=runtime, name=name), (runtime, name)

    def hurry(self) -> None:
        """Cut every grace period short: jobs being stopped get SIGKILL now."""
        self.grace = 0.0
        for grace in list(self._graces):
            grace.cancel()

    async def check_host(self, host: str) -> bool:
        return True

    async def aclose(self) -> None:
        if self._devnull >= 0:
            os.close(self._devnull)
            self._devnull = -1
        if isinstance(self._cgroups, Cgroups):
            self._cgroups.remove()
        if self._reaper is not None:
            reaper, self._reaper = self._reaper, None
            reaper.close()  # nothing is registered any more: it exits at once
            with anyio.CancelScope(shield=True), anyio.move_on_after(_EMPTY_DEADLINE):
                await _exited(reaper.proc)
            if reaper.proc.poll() is None:  # every attempt has ended: it guards nothing
                reaper.proc.kill()
                reaper.proc.wait()


async def _exited(proc: subprocess.Popen[bytes]) -> None:
    """Wait, without polling, until `proc` has exited (not reaped: `poll()` does that)."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:  # reaped already
        return
    try:
        await anyio.wait_readable(pidfd)
    finally:
        os.close(pidfd)


def _kill_group(pgid: int, sig: int, cgroup: JobCgroup | None = None) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    if cgroup is not None:  # the processes that left the group (setsid) too
        cgroup.signal(sig)


def _find_program(program: str, path: str | None, workdir: Path) -> str | None:
    """The file `/bin/sh` would run for the command word `program`, named as the shell
    names it to exec (a script sees that name as `$0`): each directory of PATH in turn,
    a name with a slash as it is. None where the shell would find none, or where PATH
    is unset or has an empty entry (the shell's own defaults): the caller then leaves
    the search, and its outcome, to the shell."""
    if "/" in program:
        candidates = [program]
    elif path is None:
        return None
    else:
        dirs = path.split(":")
        if "" in dirs:
            return None
        candidates = [f"{d}/{program}" for d in dirs]
    for candidate in candidates:
        full = os.path.join(workdir, candidate)  # an absolute candidate stays as it is
        if os.path.isfile(full) and os.access(full, os.X_OK):
            return candidate
    return None


def _shell_pwd(inherited: str | None, workdir: Path) -> str:
    """PWD as dash sets it in `workdir`: the inherited value where it is absolute and
    names that directory, else the physical path."""
    if inherited is not None and inherited.startswith("/"):
        try:
            if os.path.samefile(inherited, workdir):
                return inherited
        except OSError:
            pass
    return os.path.realpath(workdir)


def _missing(program: str, attempt: Attempt) -> bool:
    if "/" in program:
        return not os.access(attempt.workdir / program, os.X_OK)
    return shutil.which(program, path=attempt.env.get("PATH", os.defpath)) is None


def _limit_started(cgroup: JobCgroup, mib: int) -> bool:
    """Set the memory limit of a job that has started (see `cgroups` for why not
    before); False where it already uses more, and was killed as the OOM killer would
    have. Any other refusal leaves it running unlimited rather than not at all."""
    try:
        cgroup.limit(mib)
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            return True
        cgroup.signal(signal.SIGKILL)
        return False
    return True


def _removed(cgroup: JobCgroup) -> bool:
    """Remove an attempt's cgroup if it is empty; whether it is gone."""
    try:
        os.rmdir(cgroup.path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


async def _remove(cgroup: JobCgroup) -> bool:
    """Kill what is left of an attempt's cgroup and remove it, without blocking the loop
    while killed processes exit; False if it is still there after the deadline."""
    end = time.monotonic() + _EMPTY_DEADLINE
    while not _removed(cgroup):
        if time.monotonic() > end:
            return False
        cgroup.signal(signal.SIGKILL)
        await anyio.sleep(0.002)
    return True


def _reap(proc: subprocess.Popen[bytes], cgroup: JobCgroup | None) -> tuple[int, int | None]:
    """The exit code of a process that has ended, and its peak memory in MiB if known.

    With a memory cgroup the peak is the cgroup's, every process of the job included.
    Without one:

    `os.wait4` reaps it and returns its resource usage. Its ru_maxrss is the largest
    resident set of the process and of the descendants it waited for, but Linux also
    folds in the memory the child had before its exec, which is this process's own
    (fork and vfork alike). A figure no larger than flowbatch's own peak therefore says
    nothing about the job and is reported as unknown; a larger one is the job's.
    Popen is told the return code so that it does not try to reap the process again."""
    measured = cgroup.peak() if cgroup is not None and cgroup.memory else None
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:  # reaped already (by Popen, in a cancelled attempt)
        return _exit_code(proc.wait()), measured
    proc.returncode = os.waitstatus_to_exitcode(status)
    if measured is not None:
        return _exit_code(proc.returncode), measured
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = usage.ru_maxrss if usage.ru_maxrss > own else None
    return _exit_code(proc.returncode), None if peak is None else -(-peak // 1024)


def _exit_code(returncode: int) -> int:
    """A shell's view of the status: 128 + N for death by signal N (137 = SIGKILL)."""
    return 128 - returncode if returncode < 0 else returncode


def _container_reason(container: tuple[str, str] | None, code: int) -> str:
    """AWS's container.reason for an attempt that ran in a container (for example the
    OOM killer's 137), so `on_reason = "OutOfMemoryError*"` rules match as on AWS."""
    if container is None:
        return ""
    from flowbatch.executors.container import exit_reason

    return exit_reason(code)


def _env_pipe(attempt: Attempt) -> int:
    from flowbatch.executors.container import ContainerError, env_pipe

    try:
        return env_pipe(attempt.env)
    except ContainerError as exc:
        raise OSError(errno.E2BIG, str(exc)) from exc


def _log_failure(exc: OSError) -> ExecResult:
    reason = f"cannot open the attempt's log: {exc.strerror or exc}: {exc.filename}"
    return ExecResult(exit_code=None, status_reason=reason, retryable=False)


def _seconds(limit: float | None) -> str:
    return f"{limit:g}s" if limit is not None else "?"
