"""The SSH executor: runs attempts on the hosts of an `ssh` compute environment.

Each host gets a small pool of asyncssh connections, opened lazily and reused: every
attempt is one channel. A connection carries at most `max_sessions - 1` attempts
(OpenSSH's `MaxSessions` defaults to 10), keeping one session free for the `kill`
that stops a job; past that a second connection is opened. A per-host lock makes
concurrent first calls share one connection.

On the host an attempt runs as

    cd WORKDIR && exec setsid -w /bin/sh -c WRAPPER sh /bin/sh -c CMD

The wrapper is the leader of a fresh session, so its pid is the process group of
everything the job starts; it prints that pid as the first stdout line (consumed here,
never logged) and waits for the job, so a job killed by SIGTERM exits 143 as it would
locally.

The job's environment never goes on that command line, which any user of the host can
read (`ps`): the wrapper reads shell text from the channel's stdin and `eval`s it, text
that flowbatch writes with every value shell-quoted (`env_script`): `export NAME=value`
lines, or for a container the env-file its runtime reads from stdin, as a
here-document (see `executors.container`). The job then reads an empty stdin, as it
would from /dev/null locally. It gets the host's login environment plus `attempt.env`:
no SendEnv, agent, X11 or TTY (which echoes stdin) whatever ~/.ssh/config says.

Timeout and terminate run a small script over a new channel that sends
`kill -TERM -PGID`, waits up to `grace` seconds for the group to empty and then KILLs it.

A connection that drops mid-job fails the attempt with `host_lost=True` and AWS's
spot status reason (`Host EC2 (instance NAME) terminated.`), so `on_status_reason =
"Host EC2*"` retries it; `check_host` reconnects. Host keys are checked against the
environment's `known_hosts` file, never trusted silently.

asyncssh needs the asyncio backend of anyio.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import asyncssh
from anyio.abc import TaskStatus

from flowbatch.errors import FlowbatchError
from flowbatch.executors import logfiles
from flowbatch.executors.base import (
    GRACE_SECONDS,
    REASON_HOST_LOST,
    REASON_TIMEOUT,
    Attempt,
    ExecResult,
    env_file_can_carry,
    private_dir,
    private_file,
)
from flowbatch.executors.container import (
    ContainerError,
    container_argv,
    container_name,
    env_file_text,
    exit_reason,
    remove_argv,
)
from flowbatch.lang.model import ComputeEnv, Host

CHUNK = 64 * 1024  # bytes read from a channel at a time; output never sits whole in memory
CONNECT_TIMEOUT = 10.0
KEEPALIVE_INTERVAL = 10.0  # so a silent network failure is noticed in about 30 s
KEEPALIVE_COUNT_MAX = 3
KILL_WAIT = 5.0  # how long to wait for the channel to close once the group is killed
# Cleanup after cancel: the kill script's channel, the wait for the channel to close and
# a container removal, on top of the grace period.
CLEANUP_MARGIN = CONNECT_TIMEOUT + 2 * KILL_WAIT
DEFAULT_MAX_SESSIONS = 10  # OpenSSH's MaxSessions default

# `trap :` (not `trap ''`) so the wrapper outlives a TERM to the group and reports the
# job's 143, while the job itself still gets the default action (caught traps reset on exec).
# "$?" is quoted: the job's env (an IFS of digits, say) is exported in this shell.
_WRAPPER = 'trap : TERM INT HUP; printf "%s\\n" "$$"; eval "$(cat)" || exit 125; "$@"; exit "$?"'
# conmon before 2.1.13 drops an `oom` file in the directory it runs in (conmon#504):
# a container's runtime runs in a scratch directory, removed once it ends, so that the
# file never lands among the user's files. The container's own directory is set by -w.
_SCRATCH_WRAPPER = (
    'trap : TERM INT HUP; printf "%s\\n" "$$"; '
    'fb_scratch=$(mktemp -d) && cd "$fb_scratch" || exit 125; '
    'eval "$(cat)" || exit 125; '
    '"$@"; fb_rc=$?; cd / && rm -rf "$fb_scratch"; exit "$fb_rc"'
)
# Ends the env-file here-document; it has no `=`, so no line of the env-file can be it.
_ENV_END = "FLOWBATCH_ENV_END"


class SshError(FlowbatchError):
    """A host could not be used. `host_lost` says whether it is unreachable (worth
    retrying once it is back) rather than misconfigured (a wrong host key, a refused
    key, a missing known_hosts file), which no retry fixes."""

    def __init__(self, message: str, *, host_lost: bool) -> None:
        super().__init__(message)
        self.host_lost = host_lost


@dataclass(eq=False)
class _Link:
    """One connection to a host and how many attempts it is carrying."""

    conn: asyncssh.SSHClientConnection
    jobs: int = 0


def remote_command(attempt: Attempt, argv: list[str]) -> str:
    """The shell line that runs `argv` in the attempt's workdir under the pid wrapper
    (a container's runtime in a scratch directory of its own, see _SCRATCH_WRAPPER)."""
    wrapper = _WRAPPER if attempt.image is None else _SCRATCH_WRAPPER
    wrapped = ["setsid", "-w", "/bin/sh", "-c", wrapper, "sh", *argv]
    return f"cd -- {shlex.quote(str(attempt.workdir))} && exec {shlex.join(wrapped)}"


def job_argv(attempt: Attempt) -> list[str]:
    """What to run on the host: the command, or the container. Raises ContainerError
    for an image that cannot be run as configured."""
    if attempt.image is not None:
        return container_argv(
            attempt, runtime=_runtime(attempt.compute), name=container_name(attempt)
        )
    if isinstance(attempt.command, str):
        return ["/bin/sh", "-c", attempt.command]
    return list(attempt.command)


def env_script(attempt: Attempt) -> bytes:
    """The bytes (a value's as os.environ held them) the wrapper evals from stdin: `export`
    lines; for a container, its env-file as a here-document on the runtime's stdin and
    `export`s of what only the runtime's environment can carry. Raises ContainerError
    for a container environment too large to hand over."""
    exports = attempt.env
    lines: list[str] = []
    if attempt.image is not None:
        exports = {k: v for k, v in attempt.env.items() if not env_file_can_carry(k, v)}
        lines += [f"exec <<'{_ENV_END}'", env_file_text(attempt.env) + _ENV_END]
    lines = [f"export {k}={shlex.quote(v)}" for k, v in sorted(exports.items())] + lines
    return "\n".join([*lines, ":", ""]).encode(errors="surrogateescape")


def _runtime(compute: ComputeEnv) -> str:
    # The runtime lives on the remote host, so the local PATH says nothing about it.
    return str(compute.options.get("runtime", "podman"))


def _exit_code(process: asyncssh.SSHClientProcess[bytes]) -> int | None:
    if process.exit_status is not None and process.exit_status >= 0:
        return int(process.exit_status)
    if process.exit_signal is not None:
        name = str(process.exit_signal[0])
        try:
            return 128 + int(signal.Signals[f"SIG{name}"])
        except KeyError:
            return None
    return None


async def _pump(reader: asyncssh.SSHReader[bytes], sink: BinaryIO) -> None:
    """Copy a channel stream into a log file chunk by chunk until EOF or a lost link."""
    while True:
        try:
            chunk = await reader.read(CHUNK)
        except (asyncssh.Error, OSError):
            return  # the connection dropped; the caller reports the host as lost
        if not chunk:
            return
        sink.write(chunk)
        sink.flush()


class SshExecutor:
    """Runs attempts over SSH on `ce.hosts`; see the module docstring."""

    def __init__(self, ce: ComputeEnv, *, grace: float = GRACE_SECONDS) -> None:
        """Raises SshError when the environment lists no hosts or no `known_hosts`."""
        if not ce.hosts:
            raise SshError(f"compute environment `{ce.name}` lists no ssh hosts", host_lost=False)
        known_hosts = ce.options.get("known_hosts")
        if not known_hosts:
            raise SshError(
                f"compute environment `{ce.name}` needs `known_hosts`: "
                "ssh host keys are never trusted without it",
                host_lost=False,
            )
        identity = ce.options.get("identity")
        self._ce = ce
        self._grace = grace
        # analyze makes relative paths relative to the pipeline file; `~` is the user's.
        self._known_hosts = Path(str(known_hosts)).expanduser()
        self._identity = Path(str(identity)).expanduser() if identity else None
        self._hosts: dict[str, Host] = {h.name: h for h in ce.hosts}
        max_sessions = int(str(ce.options.get("max_sessions", DEFAULT_MAX_SESSIONS)))
        self._per_link = max(1, max_sessions - 1)
        self._links: dict[str, list[_Link]] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self.connections_opened = 0  # for tests and benchmarks

    # -- connections -------------------------------------------------------------

    def _where(self, host: Host) -> str:
        return f"`{host.name}` ({host.address or host.name}:{host.port or 22})"

    async def _open(self, host: Host) -> asyncssh.SSHClientConnection:
        """A new authenticated connection; raises SshError saying what went wrong."""
        try:
            known = asyncssh.read_known_hosts(str(self._known_hosts))
        except (OSError, ValueError) as e:
            raise SshError(
                f"cannot read known_hosts `{self._known_hosts}` for host {self._where(host)}: {e}",
                host_lost=False,
            ) from e
        options: dict[str, Any] = {
            "port": host.port or 22,
            "known_hosts": known,
            "connect_timeout": CONNECT_TIMEOUT,
            "keepalive_interval": KEEPALIVE_INTERVAL,
            "keepalive_count_max": KEEPALIVE_COUNT_MAX,
        }
        options.update(
            send_env=None, agent_forwarding=False, x11_forwarding=False, request_pty=False
        )
        if host.user:
            options["username"] = host.user
        if self._identity is not None:
            options["client_keys"] = [str(self._identity)]
            options["agent_path"] = None
        try:
            conn = await asyncssh.connect(host.address or host.name, **options)
        except asyncssh.HostKeyNotVerifiable as e:
            raise SshError(
                f"host key of {self._where(host)} is not the one in known_hosts "
                f"`{self._known_hosts}` (refusing to connect): {e}",
                host_lost=False,
            ) from e
        except asyncssh.PermissionDenied as e:
            raise SshError(
                f"host {self._where(host)} refused the key for user `{host.user}`: {e}",
                host_lost=False,
            ) from e
        except (asyncssh.Error, OSError, TimeoutError) as e:
            raise SshError(f"cannot reach host {self._where(host)}: {e}", host_lost=True) from e
        self.connections_opened += 1
        return conn

    def _lock(self, name: str) -> anyio.Lock:
        return self._locks.setdefault(name, anyio.Lock())

    async def _acquire(self, host: Host) -> _Link:
        """A live connection with room for one more attempt (opened if none has room)."""
        async with self._lock(host.name):
            links = [ln for ln in self._links.get(host.name, []) if not ln.conn.is_closed()]
            self._links[host.name] = links
            for link in links:
                if link.jobs < self._per_link:
                    link.jobs += 1
                    return link
            link = _Link(await self._open(host), jobs=1)
            links.append(link)
            return link

    def _drop(self, host: Host, link: _Link) -> None:
        links = self._links.get(host.name, [])
        if link in links:
            links.remove(link)
        link.conn.abort()

    async def check_host(self, host: str) -> bool:
        """Whether `host` accepts a connection again (bounded by the connect timeout);
        the new connection is kept for the next attempts."""
        spec = self._hosts.get(host)
        if spec is None:
            return False
        try:
            async with self._lock(host):
                conn = await self._open(spec)
                # Idle connections may be half-dead ones the host's loss left behind;
                # the fresh one replaces them, so repeated checks never pile up links.
                links = self._links.setdefault(host, [])
                for idle in [ln for ln in links if ln.jobs == 0]:
                    links.remove(idle)
                    idle.conn.close()
                links.append(_Link(conn))
        except SshError:
            return False
        return True

    async def aclose(self) -> None:
        for links in self._links.values():
            for link in links:
                link.conn.close()
        for links in self._links.values():
            for link in links:
                with anyio.move_on_after(CONNECT_TIMEOUT, shield=True):
                    await link.conn.wait_closed()
        self._links.clear()

    # -- attempts -----------------------------------------------------------------

    def _host_for(self, attempt: Attempt) -> Host | None:
        if attempt.host is None:
            return self._ce.hosts[0]
        return self._hosts.get(attempt.host)

    def _lost(self, host: Host) -> ExecResult:
        return ExecResult(
            exit_code=None,
            status_reason=REASON_HOST_LOST.format(instance=host.name),
            host=host.name,
            host_lost=True,
        )

    async def run(self, attempt: Attempt, *, task_status: TaskStatus[str]) -> ExecResult:
        """Run one attempt on `attempt.host` (the first host when None).

        Calls `task_status.started("HOST:PID")` once the remote process runs; when the
        attempt fails before that (host unreachable, misconfigured, unknown host), it
        calls `started("HOST:")` first, so the runner's `tg.start` always returns.
        Raises only for cancellation, after stopping the remote process group.
        """
        host = self._host_for(attempt)
        if host is None:
            task_status.started(f"{attempt.host}:")
            return ExecResult(
                exit_code=None,
                status_reason=f"unknown ssh host `{attempt.host}` in `{self._ce.name}`",
                retryable=False,
            )
        try:
            link = await self._acquire(host)
        except SshError as e:
            task_status.started(f"{host.name}:")
            if e.host_lost:
                return self._lost(host)
            return ExecResult(exit_code=None, status_reason=str(e), retryable=False, host=host.name)
        try:
            return await _RemoteAttempt(self, host, link, attempt).run(task_status)
        finally:
            link.jobs -= 1

    async def _kill_group(self, link: _Link, pgid: int) -> None:
        """TERM a remote process group, give it the grace period, then KILL what is left.

        One remote script does it all, so the grace period is measured on the host and
        a job whose stray children hold no channel open is still waited for and killed.
        Best effort and bounded: a dead link means the host is gone, and the process
        group with it as far as anyone here can tell.
        """
        with anyio.move_on_after(self._grace + CONNECT_TIMEOUT):
            with contextlib.suppress(asyncssh.Error, OSError):
                await link.conn.run(kill_script(pgid, self._grace), check=False)


def kill_script(pgid: int, grace: float) -> str:
    """Shell that TERMs group `pgid`, polls it every 0.1 s for `grace` s, then KILLs it."""
    ticks = max(1, math.ceil(grace * 10))
    return (
        f"kill -TERM -- -{pgid} 2>/dev/null || exit 0; i=0; "
        f"while kill -0 -- -{pgid} 2>/dev/null && [ $i -lt {ticks} ]; "
        f"do sleep 0.1; i=$((i+1)); done; "
        f"kill -KILL -- -{pgid} 2>/dev/null; exit 0"
    )


@dataclass(eq=False)
class _RemoteAttempt:
    """One attempt on one connection: start it, copy its output, wait, stop it."""

    executor: SshExecutor
    host: Host
    link: _Link
    attempt: Attempt
    process: asyncssh.SSHClientProcess[bytes] | None = None
    pgid: int | None = None

    async def run(self, task_status: TaskStatus[str]) -> ExecResult:
        try:
            command = remote_command(self.attempt, job_argv(self.attempt))
            env = env_script(self.attempt)
        except ContainerError as e:
            task_status.started(f"{self.host.name}:")
            return self._failed(str(e))
        started = False
        try:
            stem = self.attempt.log_stem
            private_dir(stem.parent)
            with (
                os.fdopen(private_file(logfiles.beside(stem, "stdout")), "wb") as out,
                os.fdopen(private_file(logfiles.beside(stem, "stderr")), "wb") as err,
            ):
                try:
                    self.process = await self.link.conn.create_process(command, encoding=None)
                    self.process.stdin.write(env)
                    self.process.stdin.write_eof()
                except (asyncssh.Error, OSError) as e:
                    task_status.started(f"{self.host.name}:")
                    return self._not_opened(e)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_pump, self.process.stderr, err)
                    self.pgid = await self._read_pgid()
                    pid = "" if self.pgid is None else str(self.pgid)
                    task_status.started(f"{self.host.name}:{pid}")
                    started = True
                    tg.start_soon(_pump, self.process.stdout, out)
                    timed_out = await self._wait(self.attempt.timeout)
                return self._result(timed_out)
        except anyio.get_cancelled_exc_class():
            with anyio.move_on_after(self.executor._grace + CLEANUP_MARGIN, shield=True):
                await self._stop()
            raise
        except OSError as e:  # the local log files
            if not started:
                task_status.started(f"{self.host.name}:")
            with anyio.move_on_after(self.executor._grace + CLEANUP_MARGIN, shield=True):
                await self._stop()
            return self._failed(f"cannot write the logs of this attempt: {e}")

    def _failed(self, reason: str) -> ExecResult:
        return ExecResult(
            exit_code=None, status_reason=reason, retryable=False, host=self.host.name
        )

    def _not_opened(self, error: Exception) -> ExecResult:
        if self.link.conn.is_closed() or not isinstance(error, asyncssh.ChannelOpenError):
            self.executor._drop(self.host, self.link)
            return self.executor._lost(self.host)
        # The connection is fine but the server refused one more session (its
        # MaxSessions is below ours): worth another try, not a lost host.
        return ExecResult(
            exit_code=None,
            status_reason=f"host `{self.host.name}` refused a new ssh session: {error} "
            "(set `max_sessions` to the server's MaxSessions)",
            host=self.host.name,
        )

    async def _read_pgid(self) -> int | None:
        """The wrapper's first stdout line; None when the command never got that far
        (for example the workdir does not exist on the host)."""
        assert self.process is not None
        try:
            line = await self.process.stdout.readline()
        except (asyncssh.Error, OSError):
            return None
        try:
            return int(line.strip())
        except ValueError:
            return None

    async def _wait(self, timeout: float | None) -> bool:
        """Wait for the channel to close; on timeout stop the job. True if it timed out."""
        assert self.process is not None
        with anyio.move_on_after(timeout) as scope:
            await self.process.wait_closed()
        if not scope.cancelled_caught:
            return False
        await self._stop()
        return True

    async def _stop(self) -> None:
        """TERM the remote process group, wait the grace period, then KILL."""
        process = self.process
        if process is None:
            return
        if self.pgid is None or self.link.conn.is_closed():
            process.close()
            return
        await self.executor._kill_group(self.link, self.pgid)
        with anyio.move_on_after(KILL_WAIT):
            await process.wait_closed()
        if self.attempt.image is not None:
            remove = remove_argv(_runtime(self.attempt.compute), container_name(self.attempt))
            with anyio.move_on_after(KILL_WAIT + CONNECT_TIMEOUT):
                with contextlib.suppress(asyncssh.Error, OSError):
                    await self.link.conn.run(shlex.join(remove), check=False)
        process.close()

    def _result(self, timed_out: bool) -> ExecResult:
        assert self.process is not None
        code = _exit_code(self.process)
        if timed_out:
            return ExecResult(
                exit_code=code, status_reason=REASON_TIMEOUT, retryable=False, host=self.host.name
            )
        if code is None:
            # No exit status and no signal: the channel closed because the link died.
            self.executor._drop(self.host, self.link)
            return self.executor._lost(self.host)
        # A container's 137 is its memory limit (AWS's container.reason), as in local.py.
        reason = exit_reason(code) if self.attempt.image is not None else ""
        return ExecResult(exit_code=code, reason=reason, host=self.host.name)
