"""The floor of a Python runner: what spawning and waiting alone cost, with no bookkeeping.

`python bench/floor.py N COMMAND [--chain] [--after-all] [--cgroups]`: runs N jobs of
COMMAND on 2 slots from one asyncio loop, as flowbatch's local executor runs them
(a shell builtin through `/bin/sh -c`, any other program exec'd; a new session each;
a pidfd to wait on) and nothing else: no parsing, no store, no logs, no progress, no
reaper. `--chain`: each job after the one before; `--after-all`: one more job after
all N; `--cgroups`: each job in a cgroup v1 memory cgroup of its own, made, entered by
the spawning thread and removed as flowbatch does it (`executors.cgroups`).

bench_make.py runs it beside make and flowbatch (`--floor`): no runner written in
Python on asyncio can be cheaper per job than this, so its ratio to make is the floor
of any target set for flowbatch's.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

SLOTS = 2
BUILTINS = {"true", "false", ":"}


def _argv(command: str) -> tuple[list[str], str | None]:
    words = shlex.split(command)
    if words[0] in BUILTINS:
        return ["/bin/sh", "-c", command], None
    return words, shutil.which(words[0])


class Cgroups:
    """A directory of per-job v1 memory cgroups below this process's own."""

    def __init__(self) -> None:
        own = next(
            line.split(":", 2)[2].strip()
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.split(":")[1] == "memory"
        )
        self.home = Path("/sys/fs/cgroup/memory") / own.lstrip("/")
        self.root = self.home / f"floor-{os.getpid()}"
        self.root.mkdir()
        self._home_tasks = os.open(self.home / "tasks", os.O_WRONLY | os.O_CLOEXEC)

    def enter(self, n: int) -> str:
        path = f"{self.root}/j{n}"
        os.mkdir(path)
        fd = os.open(f"{path}/tasks", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
        return path

    def leave(self) -> None:
        os.write(self._home_tasks, b"0")

    def close(self) -> None:
        os.close(self._home_tasks)
        self.root.rmdir()


async def main(n: int, command: str, chain: bool, after_all: bool, cgroups: bool) -> None:
    argv, executable = _argv(command)
    groups = Cgroups() if cgroups else None
    # asyncio's semaphore wakes its waiters in order: with one slot, a chain.
    slots = asyncio.Semaphore(1 if chain else SLOTS)
    loop = asyncio.get_running_loop()

    async def job(i: int) -> None:
        async with slots:
            path = None
            try:
                if groups is not None:
                    path = groups.enter(i)
                proc = subprocess.Popen(
                    argv,
                    executable=executable,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            finally:
                if groups is not None:
                    groups.leave()
            pidfd = os.pidfd_open(proc.pid)
            ended = loop.create_future()
            loop.add_reader(pidfd, ended.set_result, None)
            try:
                await ended
            finally:
                loop.remove_reader(pidfd)
                os.close(pidfd)
            proc.wait()
            if path is not None:
                os.rmdir(path)
            if proc.returncode != 0:
                raise SystemExit(f"job {i} exited {proc.returncode}")

    try:
        await asyncio.gather(*(job(i) for i in range(n)))
        if after_all:
            await job(n)
    finally:
        if groups is not None:
            groups.close()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    chain, after_all, cgroups = (f in flags for f in ("--chain", "--after-all", "--cgroups"))
    asyncio.run(main(int(args[0]), args[1], chain, after_all, cgroups))
