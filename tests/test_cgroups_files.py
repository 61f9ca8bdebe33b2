"""executors.cgroups against stand-in cgroup directories (plain files): what is written
for a limit and read back for the peak and OOM kills in cgroup v1 and v2, and the
wrapper that puts a job in its cgroup, whose path and argv stay inert data."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from flowbatch.executors.cgroups import JobCgroup


def _files(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


@pytest.mark.parametrize(
    ("version", "files", "written"),
    [
        (
            1,
            {
                "memory.limit_in_bytes": "",
                "memory.memsw.limit_in_bytes": "",
                "memory.max_usage_in_bytes": "123731968\n",
                "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
            },
            {"memory.limit_in_bytes": "67108864", "memory.memsw.limit_in_bytes": "67108864"},
        ),
        (
            2,
            {
                "memory.max": "",
                "memory.swap.max": "",
                "memory.peak": "123731968\n",
                "memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n",
            },
            {"memory.max": "67108864", "memory.swap.max": "0"},
        ),
    ],
)
def test_limit_peak_and_oom_kill_files(
    tmp_path: Path, version: int, files: dict[str, str], written: dict[str, str]
) -> None:
    cgroup = JobCgroup(_files(tmp_path / "job", files), version, memory=True)
    cgroup.limit(64)
    assert {name: (cgroup.path / name).read_text() for name in written} == written
    assert cgroup.peak() == 118  # MiB, rounded up
    assert cgroup.oom_killed()


@pytest.mark.parametrize("version", [1, 2])
def test_no_oom_kill_and_no_peak_file(tmp_path: Path, version: int) -> None:
    name = "memory.oom_control" if version == 1 else "memory.events"
    cgroup = JobCgroup(_files(tmp_path / "job", {name: "oom 0\noom_kill 0\n"}), version, True)
    assert not cgroup.oom_killed()
    assert cgroup.peak() is None  # e.g. a v2 kernel before 5.19 has no memory.peak


def _moved(cgroup: JobCgroup) -> int:
    """What the wrapper wrote to move itself in: on v1 `0` (itself alone) into
    `tasks`, on v2 its pid into `cgroup.procs`."""
    written = (cgroup.path / ("tasks" if cgroup.version == 1 else "cgroup.procs")).read_text()
    return int(written)


@pytest.mark.parametrize("version", [1, 2])
def test_the_wrapper_writes_its_pid_and_runs_argv_as_data(tmp_path: Path, version: int) -> None:
    hostile = "a'b\"c $(touch pwned) `touch pwned2`; touch pwned3"
    files = {"cgroup.procs": "", "tasks": ""}
    cgroup = JobCgroup(_files(tmp_path / hostile, files), version, memory=False)
    argv = cgroup.wrap(["printf", "%s|", hostile, "$(touch pwned4)"])
    assert hostile not in argv[2]  # the script is constant: values are arguments
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert done.stdout == f"{hostile}|$(touch pwned4)|"
    pid = _moved(cgroup)
    assert pid == 0 if version == 1 else pid > 0 and pid != os.getpid()
    assert not list(tmp_path.glob("pwned*"))


@pytest.mark.parametrize("version", [1, 2])
def test_the_shell_wrapper_runs_the_command_as_sh_c_would(tmp_path: Path, version: int) -> None:
    hostile = "a'b\"c $(touch pwned) `touch pwned2`; touch pwned3"
    files = {"cgroup.procs": "", "tasks": ""}
    cgroup = JobCgroup(_files(tmp_path / hostile, files), version, memory=False)
    # The command's own text is the job's: it runs once, as written, with $0 and $#
    # as under `sh -c`, and its exit status is the job's.
    command = 'printf "%s|%s|" "$0" "$#"; printf "%s\\n" "$x"; exit 3'
    argv = cgroup.wrap_shell(command)
    assert command not in argv[2] and hostile not in argv[2]
    env = {"PATH": os.environ["PATH"], "x": hostile}
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=env)
    plain = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, env=env)
    assert (
        (done.returncode, done.stdout)
        == (plain.returncode, plain.stdout)
        == (3, f"/bin/sh|0|{hostile}\n")
    )
    assert _moved(cgroup) == 0 if version == 1 else _moved(cgroup) > 0
    assert not list(tmp_path.glob("pwned*"))
