"""A cgroup per local job: the whole tree of the job, its memory limit and its peak.

A process group does not hold a job's tree: a grandchild that calls `setsid` leaves it,
and signals to the group no longer reach it. A cgroup does: every process forked inside
it stays inside, whatever it does with sessions, and memory is limited and measured for
the cgroup as a whole. So where the machine lets flowbatch create cgroups (root, or a
delegated subtree), each local attempt without an image runs in its own:

    <the runner's own cgroup>/flowbatch-<pid>-<hex>/<attempt>

The runner's own cgroup is the parent (not the hierarchy's root), so a limit put on
the runner (a CI job, a systemd unit) still holds for its jobs. cgroup v1's memory
hierarchy is used where it is writable (limits, peak and OOM kills; it lists every
process, so it is also what is killed), else cgroup v2: there the memory controller
can only be enabled below a cgroup that holds no processes, which the runner's own
cgroup does unless it is the root, so on v2 a job's cgroup may hold the tree (and
`cgroup.kill` it) without enforcing memory. Where neither is writable there is no
cgroup at all: only the process group is signalled and memory is not enforced.

A job's processes must be inside before the job's command runs: a forked child that
started before being moved would stay outside. Python 3.11 cannot spawn straight into
a cgroup (no clone3 CLONE_INTO_CGROUP), and `preexec_fn` would cost subprocess its fast
vfork path. On cgroup v1 a single thread can change cgroup, and a child starts in the
cgroup of the thread that forks it, so a thread of the runner's own steps into the
job's cgroup for the spawn and back out (`Cgroups.spawn_inside`, `_Stepper`): two
writes instead of a shell's exec, which halves what a job's processes cost when the
command is a program. v2 moves whole processes only, so there the command runs behind
a tiny shell wrapper that writes its own pid into `cgroup.procs` and then runs the
command (`wrap`, `wrap_shell`); the file name and the command are arguments, never
part of the script.

The thread inside is in the job's cgroup for the kernel's OOM killer too, which would
judge it by the runner's whole memory: so a job's memory limit is set only once the
thread is out again (see `executors.local`), and no limit is in place while it is in.

No maintained library on PyPI covers v1 and v2 with what is needed here (cgroupspy and
libcgroup bindings are unmaintained or v1 only), hence this module.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

from flowbatch.executors.reaper import kill_cgroup, remove_cgroup

T = TypeVar("T")

# The wrappers: `$1` is the cgroup's procs file; then the job's argv (exec'd), or the
# job's command string, which the same shell then runs as `sh -c` would, without a second
# exec (about 0.7 ms a job here): `eval "shift 2;" "$2"` parses the command text once,
# exactly as written, after dropping the wrapper's arguments, so `$#` is 0 and `$0` is
# /bin/sh as under `sh -c`. The one visible difference: the shell's error messages say
# "eval: " after the line number.
_EXEC = 'echo $$ >"$1" || exit 125; shift 2; exec "$@"'
_EVAL = 'echo $$ >"$1" || exit 125; eval "shift 2;" "$2"'
# On cgroup v1 the wrapper moves itself alone (`0`: the writing thread, into `tasks`;
# the shell has no other thread): moving a whole process takes the kernel's
# threadgroup lock for writing, which waits out an RCU grace period when no move came
# shortly before (8 to 25 ms here, every job of a run of long jobs); one thread of the
# writer itself needs no such lock (kernels since about 6.0; before, the same cost).
_EXEC_V1 = 'echo 0 >"$1" || exit 125; shift 2; exec "$@"'
_EVAL_V1 = 'echo 0 >"$1" || exit 125; eval "shift 2;" "$2"'


@dataclass(frozen=True, slots=True)
class JobCgroup:
    """One attempt's cgroup."""

    path: Path
    version: int  # 1 or 2
    memory: bool  # whether the memory controller is on (limit, peak, OOM)

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` run inside this cgroup from its first instruction."""
        if self.version == 1:
            return ["/bin/sh", "-c", _EXEC_V1, "/bin/sh", self.tasks, "--", *argv]
        return ["/bin/sh", "-c", _EXEC, "/bin/sh", _procs(self.path), "--", *argv]

    def wrap_shell(self, command: str) -> list[str]:
        """`/bin/sh -c command` run inside this cgroup from its first instruction."""
        if self.version == 1:
            return ["/bin/sh", "-c", _EVAL_V1, "/bin/sh", self.tasks, command]
        return ["/bin/sh", "-c", _EVAL, "/bin/sh", _procs(self.path), command]

    @property
    def tasks(self) -> str:
        """v1: the file that moves a single thread in."""
        return os.path.join(self.path, "tasks")

    def limit(self, mib: int) -> None:
        """Make `mib` a hard limit: the kernel's OOM killer acts beyond it, without swap."""
        size = str(mib * 1024 * 1024)
        if self.version == 1:
            _write(os.path.join(self.path, "memory.limit_in_bytes"), size)
            # memsw counts memory plus swap; equal to the limit, no swap is left. Absent
            # where swap accounting is off, and then no swap is used past the limit anyway.
            with contextlib.suppress(OSError):
                _write(os.path.join(self.path, "memory.memsw.limit_in_bytes"), size)
        else:
            _write(os.path.join(self.path, "memory.max"), size)
            with contextlib.suppress(OSError):
                _write(os.path.join(self.path, "memory.swap.max"), "0")

    def peak(self) -> int | None:
        """The largest memory use of the cgroup in MiB (None where the kernel does not say)."""
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        try:
            value = int(_read(os.path.join(self.path, name)))
        except (OSError, ValueError):
            return None
        return -(-value // (1024 * 1024))

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process of the cgroup."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            text = _read(os.path.join(self.path, name))
        except OSError:
            return False
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return value.strip() not in ("", "0")
        return False

    def signal(self, sig: int) -> None:
        """Send `sig` to every process of the cgroup, once: this never waits (the caller
        waits, without blocking its event loop, for the cgroup to empty)."""
        kill_cgroup(str(self.path), sig, deadline=0.0, v2=self.version == 2)

    def remove(self) -> None:
        """Kill what is left and remove the cgroup (quietly: the reaper tries again)."""
        remove_cgroup(str(self.path))


class Cgroups:
    """Where a runner makes its jobs' cgroups: one directory per executor."""

    def __init__(self, root: Path, version: int, memory: bool, home: Path | None = None) -> None:
        """`home`: on v1, the runner's own cgroup (the parent of `root`), where the
        thread that spawns jobs inside their cgroups returns after each (see
        `spawn_inside`); None: no stepping in, jobs are wrapped."""
        self.root = root
        self.version = version
        self.memory = memory
        self._stepper: _Stepper | None = None
        if version == 1 and home is not None:
            self._stepper = _Stepper.start(os.path.join(home, "tasks"), os.path.join(root, "tasks"))

    @property
    def steps_in(self) -> bool:
        """Whether jobs are spawned from inside their cgroups (`spawn_inside`), not
        wrapped: on v1, where the runner may move a thread of its into a job's cgroup
        and back, until that once fails."""
        return self._stepper is not None and self._stepper.usable

    def spawn_inside(self, job: JobCgroup, spawn: Callable[[], T]) -> T:
        """`spawn()` called in a thread of the runner inside `job` (only where
        `steps_in`): a process it forks starts there. OSError where the kernel will not
        let the thread in, as the wrapper's shell would fail in the same place."""
        assert self._stepper is not None
        return self._stepper.call(job.tasks, spawn)

    @classmethod
    def create(
        cls,
        versions: tuple[int, ...] = (1, 2),
        announce: Callable[[Path], None] | None = None,
    ) -> Cgroups | None:
        """A directory of this runner's own in a writable cgroup hierarchy, or None where
        the machine gives flowbatch none (not root, no delegation, no cgroupfs) or the
        environment says FLOWBATCH_CGROUPS=off. `announce` is told each path before it
        is made: a runner killed right after the mkdir must not leave it behind."""
        if os.environ.get("FLOWBATCH_CGROUPS", "").strip().lower() in ("off", "0", "no"):
            return None
        name = f"flowbatch-{os.getpid()}-{secrets.token_hex(4)}"
        mounts = _mounts()
        own = _own_cgroups()
        v1 = mounts.get("memory") if 1 in versions else None
        if v1 is not None and "memory" in own:
            made = _make(_inside(v1, own["memory"]), name, announce)
            if made is not None:
                with contextlib.suppress(OSError):  # v1 defaults it to 1 on newer kernels
                    _write(made / "memory.use_hierarchy", "1")
                return cls(made, 1, memory=True, home=made.parent)
        v2 = mounts.get("") if 2 in versions else None
        if v2 is not None and "" in own:
            parent = _inside(v2, own[""])
            if parent is None:
                return None
            # Succeeds only where the parent holds no process (or is the root cgroup).
            memory = _enable_memory(parent)
            made = _make(parent, name, announce)
            if made is None:
                return None
            if memory:
                memory = _enable_memory(made)
            return cls(made, 2, memory=memory)
        return None

    def job(self, label: str) -> JobCgroup | None:
        """A new cgroup for one attempt (None if it cannot be made: the job then runs in
        its process group only)."""
        path = self.root / label
        try:
            path.mkdir()
        except FileExistsError:
            remove_cgroup(str(path))  # a leftover of the same label: start afresh
            try:
                path.mkdir()
            except OSError:
                return None
        except OSError:
            return None
        return JobCgroup(path, self.version, self.memory)

    def remove(self) -> None:
        if self._stepper is not None:
            self._stepper.stop()
        with contextlib.suppress(OSError):
            self.root.rmdir()


class _Stepper:
    """The thread that spawns jobs from inside their cgroups (v1), one at a time.

    Not the runner's main thread: v1 charges the memory a process faults to the cgroup
    of its leader, so with the main thread inside a job's cgroup every page any runner
    thread touched meanwhile (reading `inputs`, say) would be the job's, against its
    limit and in its peak. With another thread inside, only the kernel's own
    allocations for the spawn are.

    A thread that cannot get out again must not stay inside: the job's cgroup is killed
    with the job, and the runner with it. It ends (a thread that has exited is in no
    cgroup), and the runner wraps its jobs from then on (`usable`)."""

    def __init__(self, home_tasks: str) -> None:
        self.usable = True
        self._home_tasks = home_tasks
        self._requests: queue.SimpleQueue[tuple[str, Callable[[], object]] | None]
        self._requests = queue.SimpleQueue()
        self._replies: queue.SimpleQueue[tuple[bool, object]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="flowbatch-spawn", daemon=True)

    @classmethod
    def start(cls, home_tasks: str, probe_tasks: str) -> _Stepper:
        """A stepper whose thread has gone into `probe_tasks`'s cgroup and back: where
        the runner may make cgroups but not move into its own (`cgcreate -a` without
        `-t`), it is not `usable` and the thread is gone."""
        stepper = cls(home_tasks)
        stepper._thread.start()
        try:
            stepper.call(probe_tasks, lambda: None)
        except OSError:
            stepper.usable = False
        if not stepper.usable:
            stepper.stop()
        return stepper

    def call(self, tasks: str, spawn: Callable[[], T]) -> T:
        if not self.usable:
            raise OSError(errno.ESRCH, "the runner's spawning thread has ended")
        self._requests.put((tasks, spawn))
        try:
            ok, value = self._replies.get()
        except BaseException:  # interrupted: its reply would answer the next call
            self.usable = False
            raise
        if not self.usable:  # it stayed inside: gone before the job's cgroup is killed
            self._ended()
        if not ok:
            raise cast(BaseException, value)
        return cast(T, value)

    def _ended(self) -> None:
        """Wait until the thread has exited, in the kernel too (where it leaves its
        cgroup): a short wait, on a path taken once if ever."""
        self._thread.join()
        task = f"/proc/self/task/{self._thread.native_id}"
        deadline = time.monotonic() + 5.0
        while os.path.exists(task) and time.monotonic() < deadline:
            time.sleep(0.001)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._requests.put(None)
            self._thread.join()

    def _serve(self) -> None:
        while (request := self._requests.get()) is not None:
            tasks, spawn = request
            try:
                _write(tasks, "0")  # 0: the writing thread alone
            except OSError as exc:
                self._replies.put((False, exc))
                continue
            reply: tuple[bool, object]
            try:
                reply = (True, spawn())
            except BaseException as exc:  # the caller's to raise, in its own thread
                reply = (False, exc)
            try:
                _write(self._home_tasks, "0")
            except OSError:
                self.usable = False  # before the reply: the caller waits for the end
                self._replies.put(reply)
                return
            self._replies.put(reply)


def _make(parent: Path | None, name: str, announce: Callable[[Path], None] | None) -> Path | None:
    if parent is None:
        return None
    path = parent / name
    if announce is not None:
        announce(path)
    try:
        path.mkdir()
    except OSError:
        return None
    if not os.access(path / "cgroup.procs", os.W_OK):  # a read-only or foreign tree
        with contextlib.suppress(OSError):
            path.rmdir()
        return None
    return path


def _enable_memory(path: Path) -> bool:
    control = path / "cgroup.subtree_control"
    try:
        if "memory" in _read(control).split():
            return True
        _write(control, "+memory")
    except OSError:
        return False
    return True


def _inside(mount: tuple[str, str], own: str) -> Path | None:
    """The directory of cgroup `own` in a hierarchy mounted at `mount` (root, mountpoint)."""
    root, point = mount
    if root != "/" and own != root and not own.startswith(root.rstrip("/") + "/"):
        return None  # our cgroup is outside what the mount shows (another namespace)
    rel = own[len(root) :] if root != "/" else own
    path = Path(point) / rel.lstrip("/")
    return path if path.is_dir() else None


def _mounts() -> dict[str, tuple[str, str]]:
    """cgroup mounts by controller ("" for v2): (the hierarchy's root shown, mountpoint)."""
    found: dict[str, tuple[str, str]] = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        root, point = _unescape(fields[3]), _unescape(fields[4])
        if tail[0] == "cgroup2":
            found.setdefault("", (root, point))
        elif tail[0] == "cgroup" and "memory" in tail[2].split(","):
            found.setdefault("memory", (root, point))
    return found


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path by controller ("" for v2)."""
    own: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return own
    for line in lines:
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if controllers == "":
            own[""] = path
        for controller in controllers.split(","):
            if controller == "memory":
                own["memory"] = path
    return own


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def _procs(cgroup: Path) -> str:
    return os.path.join(cgroup, "cgroup.procs")  # a job's: a Path costs more to join


def _read(path: str | Path) -> str:
    # Not open(): its buffered text layer costs more than the read, twice a job.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536).decode()
    finally:
        os.close(fd)


def _write(path: str | Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def attempt_label(job_id: str, attempt: int) -> str:
    """The name of an attempt's cgroup: the job's id and attempt number, so that what a
    lost runner left can be found again from the store alone (`find_attempt`), even
    when its reaper died with it."""
    return f"{job_id.replace('/', '_')}-a{attempt}"


def runner_dirs() -> list[Path]:
    """The directories runners of this machine made for their jobs' cgroups (their own,
    `flowbatch-<pid>-<hex>`): below this process's own cgroup first, where a runner
    started from the same session puts them, then a few levels below each hierarchy's
    mountpoint."""
    found: dict[Path, None] = {}
    own = _own_cgroups()
    for key, mount in _mounts().items():
        bases = [_inside(mount, own[key]) if key in own else None, Path(mount[1])]
        for base in bases:
            if base is None:
                continue
            for depth in range(4):
                for path in base.glob("*/" * depth + "flowbatch-*"):
                    found.setdefault(path, None)
    return list(found)


def find_attempt(label: str, dirs: list[Path]) -> list[Path]:
    """The cgroups named `label` in `dirs` (see `runner_dirs`)."""
    return [d / label for d in dirs if (d / label).is_dir()]


def describe_missing() -> str:
    """What a run without cgroups gives up, said once per run."""
    return (
        "memory limits are not enforced and peak memory is not measured for local jobs, "
        "and a job's processes that leave its process group (setsid) are not stopped "
        "with it: flowbatch cannot create cgroups here (it needs root or a delegated cgroup)"
    )


__all__ = [
    "Cgroups",
    "JobCgroup",
    "attempt_label",
    "describe_missing",
    "find_attempt",
    "runner_dirs",
]
