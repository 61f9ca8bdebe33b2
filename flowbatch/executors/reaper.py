"""The reaper: one small process per local executor that stops its jobs if the runner dies.

A runner killed with SIGKILL runs no cleanup, and its jobs would run on as orphans.
`PR_SET_PDEATHSIG` would need `preexec_fn` (subprocess then loses its fast vfork path)
and reaches only each job's leader, not the rest of its tree. Instead the local
executor starts this process once, in a session of its own (a Ctrl-C on the terminal
does not reach it), and tells it through a pipe, one line each, which job process
groups and cgroups exist:

    +g PID@TICKS     a job's process group (its leader, see flowbatch.executors.processes)
    -g PID@TICKS     that job has ended
    +c PATH          a cgroup to stop and remove at the end
    -c PATH          removed by the runner
    R PATH           the runner's directory of cgroups (told before it is made): at the
                     end every job cgroup in it is stopped as a registered one is, then
                     it is removed

A job in a cgroup of the runner's directory sends no line: the reaper finds its cgroup
there at the end, and a line would wake this process once for every job. Only a job
without a cgroup registers its process group.

Removals (`-g`, `-c`) go with the runner's next line (or when it closes the pipe).
The runner holds the only write end. When it closes, whether the runner ended or was
killed, the reaper reads end-of-file: what is still registered gets SIGTERM, then up to
the grace period (argv[1], seconds) to exit, then SIGKILL; the cgroups are removed. A
runner that ended cleanly has unregistered everything, so the reaper just exits.

This file runs as a script (`python -I -S reaper.py GRACE`) and imports only the
standard library, so it starts in a few milliseconds; `executors.cgroups` reuses its
functions for killing and removing a cgroup.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

# subprocess is for the runner's end only: the reaper itself starts without it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess

_POLL = 0.05  # seconds between checks that the stopped processes are gone


def cgroup_pids(path: str) -> list[int]:
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(line) for line in f.read().split()]
    except (OSError, ValueError):
        return []


def kill_cgroup(path: str, sig: int, deadline: float = 2.0, *, v2: bool = True) -> None:
    """Send `sig` to every process of cgroup `path`. For SIGKILL, until none is left (a
    process forking meanwhile adds one that the next pass reaches), for `deadline` s.
    `v2` False: a cgroup v1, which has no `cgroup.kill` to try."""
    if v2 and sig == signal.SIGKILL and _write_quietly(os.path.join(path, "cgroup.kill"), "1"):
        pass  # cgroup v2 (5.14+): the kernel kills the whole tree, forks included
    end = time.monotonic() + deadline
    while True:
        pids = cgroup_pids(path)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        if not pids or sig != signal.SIGKILL or time.monotonic() > end:
            return
        time.sleep(0.005)


def remove_cgroup(path: str, deadline: float = 2.0) -> bool:
    """Kill what is left in cgroup `path` and remove it; False if it would not go.
    A killed process leaves the cgroup only once it has exited, hence the retries."""
    end = time.monotonic() + deadline
    while True:
        kill_cgroup(path, signal.SIGKILL, deadline=max(0.0, end - time.monotonic()))
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() > end:
                return False
        time.sleep(0.005)


def group_alive(leader: str) -> bool:
    """Whether the process group of `leader` (PID@TICKS) may still have processes:
    False once its pid belongs to another process (a pid in use as a group id is never
    given out again, so that group is empty)."""
    pid_text, _, ticks_text = leader.partition("@")
    pid = int(pid_text)
    if ticks_text:
        now = _start_ticks(pid)
        if now is not None and now != int(ticks_text):
            return False
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rfind(b")") + 2 :].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _signal_group(leader: str, sig: int) -> None:
    if group_alive(leader):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(leader.partition("@")[0]), sig)


def _write_quietly(path: str, text: str) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        os.write(fd, text.encode())
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def stop(groups: list[str], cgroups: list[str], grace: float) -> None:
    """SIGTERM to everything, `grace` seconds to exit, SIGKILL to what is left."""
    for leader in groups:
        _signal_group(leader, signal.SIGTERM)
    for path in cgroups:
        kill_cgroup(path, signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end:
        if not any(group_alive(g) for g in groups) and not any(cgroup_pids(c) for c in cgroups):
            break
        time.sleep(_POLL)
    for leader in groups:
        _signal_group(leader, signal.SIGKILL)
    for path in cgroups:
        remove_cgroup(path)


class Reaper:
    """The runner's end: starts the reaper and tells it what to stop if the runner dies.

    A reaper that dies while the runner lives (killed by hand) is replaced with the next
    line the runner sends, or as the next job in a cgroup starts (`check`), and the new
    one is told everything still registered. Until then, the jobs are unguarded: the
    documented limit."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._registered: dict[tuple[str, str], None] = {}  # ("+g"/"+c"/"R", arg)
        # Removals wait for the next registration (or `close`) and go in its write: one
        # wake-up of the reaper a job instead of two. One not sent when the runner dies
        # costs nothing: the group's leader is gone (its PID@TICKS names no live
        # process) and the cgroup is removed, which the reaper finds.
        self._removed: list[str] = []
        self._fd: int | None = None
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        import subprocess

        # Its own session: a Ctrl-C on the terminal or a signal to the runner's group
        # must not take it down with the runner. Its only descriptor is the pipe.
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__), repr(float(self.grace))],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,
        )
        assert proc.stdin is not None
        self._fd = proc.stdin.fileno()
        return proc

    def send(self, op: str, arg: str) -> None:
        if self._fd is None:
            return
        if op in ("-g", "-c"):
            self._registered.pop(("+" + op[1:], arg), None)
            self._removed.append(f"{op} {arg}\n")
            return
        if op in ("+g", "+c", "R"):
            self._registered[(op, arg)] = None
        removed, self._removed = "".join(self._removed), []
        if self.proc.poll() is None and self._write(f"{removed}{op} {arg}\n"):
            return
        self._replace()

    def check(self) -> None:
        """Replace the reaper if it is gone, without a line: a job in a cgroup of the
        runner's directory sends none, and would otherwise start unguarded (one
        `waitpid`, no wake-up of the reaper)."""
        if self._fd is not None and self.proc.poll() is not None:
            self._removed = []  # what they remove is no longer in `_registered`
            self._replace()

    def _replace(self) -> None:
        # The reaper is gone (killed by hand): a new one takes over what it guarded.
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        self.proc.wait()
        try:
            self.proc = self._start()
        except OSError:  # cannot start another: the runner carries on unguarded
            self._fd = None
            return
        self._write("".join(f"{o} {a}\n" for o, a in self._registered))

    def _write(self, text: str) -> bool:
        data = text.encode("utf-8", "surrogateescape")
        assert self._fd is not None
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError:
            return False
        return True

    def close(self) -> None:
        """End of file for the reaper: it stops what is still registered and exits."""
        if self._fd is not None and self._removed:
            self._write("".join(self._removed))
        self._removed = []
        self._fd = None
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()


def main(argv: list[str]) -> int:
    grace = float(argv[1]) if len(argv) > 1 else 30.0
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)  # it outlives the runner, whatever ends that
    groups: dict[str, None] = {}
    cgroups: dict[str, None] = {}
    roots: dict[str, None] = {}
    pending = b""
    while chunk := os.read(0, 65536):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            op, _, arg = line.decode("utf-8", "surrogateescape").partition(" ")
            if op == "+g":
                groups[arg] = None
            elif op == "-g":
                groups.pop(arg, None)
            elif op == "+c":
                cgroups[arg] = None
            elif op == "-c":
                cgroups.pop(arg, None)
            elif op == "R":
                roots[arg] = None
    for root in roots:
        with contextlib.suppress(OSError):
            for entry in os.scandir(root):
                if entry.is_dir(follow_symlinks=False):
                    cgroups[entry.path] = None
    if groups or cgroups:
        stop(list(groups), list(cgroups), grace)
    for root in roots:
        with contextlib.suppress(OSError):
            os.rmdir(root)
    return 0


if __name__ == "__main__":
    # Straight out, without the interpreter's shutdown (~4 ms, its modules torn down one
    # by one): the runner waits for this exit at the end of every run, and nothing here
    # is left to flush (no output, every descriptor closed by the kernel).
    os._exit(main(sys.argv))
