"""Helpers for tests that watch real processes: whether a pid lives, bounded waits for
a condition (blocking, for tests driving a subprocess; async, for anyio tests), and
`Spawner`, behind conftest's `spawn` fixture: every process a test starts is stopped in
teardown, with whatever it started, whatever happens in the test.

`from proc_helpers import alive, wait_for`: pytest puts tests/ on sys.path (conftest).
"""

from __future__ import annotations

import ast
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

from flowbatch.store.jobstore import Store

__all__ = [
    "Spawner",
    "alive",
    "descendants",
    "first_job_status",
    "kill_written_pids",
    "reaper_of",
    "run_to_end",
    "wait_for",
    "wait_until",
    "written_pid",
]


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie awaiting its reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(cond: Callable[[], object], timeout: float = 30.0) -> None:
    """Block until `cond()` is true; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


async def wait_until(cond: Callable[[], object], timeout: float = 30.0) -> None:
    """Wait (without blocking the event loop) until `cond()` is true; TimeoutError after
    `timeout` seconds."""
    with anyio.fail_after(timeout):
        while not cond():
            await anyio.sleep(0.01)


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, found through their parent pids (a job in a
    session of its own is still its runner's child)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def written_pid(path: Path) -> int | None:
    """The pid a job wrote to `path` (`echo $$ > path`), None until the line is complete."""
    text = path.read_text() if path.exists() else ""
    return int(text) if text.endswith("\n") else None


def kill_written_pids(directory: Path) -> None:
    """SIGKILL every live pid that a test's jobs wrote to *.pid files in `directory`: the
    processes that left their job's group are out of reach of every other cleanup."""
    for path in directory.glob("*.pid"):
        text = path.read_text().strip()
        if text.isdigit() and alive(int(text)):
            os.kill(int(text), signal.SIGKILL)


def first_job_status(state: Path) -> str | None:
    """The stored status of the first job of the run in the state directory `state`, None
    before the runner has made its store or recorded a job (a store is never made here)."""
    if not (state / "jobs.db").exists():
        return None
    with Store.open(state, create=False) as store:
        jobs = store.jobs()
    return str(jobs[0]["status"]) if jobs else None


def reaper_of(runner: int) -> int:
    """The pid of the reaper below the `flowbatch run` with pid `runner`."""
    for pid in descendants(runner):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"reaper.py" in f.read():
                return pid
    raise AssertionError("the runner has no reaper")


class Spawner:
    """Starts processes (each in a session of its own) and stops every one of them,
    and everything they started, in `stop_all`: SIGTERM first (a `flowbatch run` then
    stops its jobs and records them), SIGKILL to whatever is left after `grace`."""

    def __init__(self, grace: float = 15.0) -> None:
        self.grace = grace
        self.procs: list[subprocess.Popen[Any]] = []

    def __call__(self, argv: Sequence[str], **options: Any) -> subprocess.Popen[Any]:
        options.setdefault("start_new_session", True)
        proc = subprocess.Popen(list(argv), **options)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                continue
            below = descendants(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.grace)
            for pid in [proc.pid, *below, *descendants(proc.pid)]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=10)  # reap it and close its pipes


def run_to_end(
    argv: Sequence[str], *, timeout: float = 120.0, **options: Any
) -> subprocess.CompletedProcess[str]:
    """`subprocess.run(argv, capture_output=True, text=True)`, except that a process
    that overruns `timeout` is stopped with everything it started (subprocess.run
    kills only the process itself: a `flowbatch run`'s jobs would live on), then
    AssertionError."""
    spawner = Spawner(grace=5.0)
    try:
        proc = spawner(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{list(argv)} did not end within {timeout} s") from None
        return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
    finally:
        spawner.stop_all()


def run_python(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -c code` in a process of its own, importing flowbatch from this checkout
    (not FLOWBATCH_SERVER's server): for what only a fresh interpreter shows (the
    modules a command imports, what happens at its exit)."""
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root}
    env.pop("FLOWBATCH_SERVER", None)
    return run_to_end([sys.executable, "-c", code], cwd=cwd, env=env)


def imported_by(args: Sequence[str], modules: Sequence[str], cwd: Path) -> tuple[list[str], str]:
    """Which of `modules` the command `flowbatch ARGS` imports, run in `cwd` in a fresh
    interpreter that must exit 0; and what it wrote to stderr."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['flowbatch', *{list(args)!r}]\n"
        "try:\n"
        "    runpy.run_module('flowbatch', run_name='__main__')\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0, done.code\n"
        f"print(sorted(set({list(modules)!r}) & set(sys.modules)))\n"
    )
    out = run_python(code, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return ast.literal_eval(out.stdout.strip()), out.stderr
