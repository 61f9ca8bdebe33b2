"""A reader that goes away (`flowbatch run p.flow | head -2`, `2>&1 | head -1`,
`flowbatch jobs | head -1`): output nobody reads is dropped; a run goes on to the end
with the pipeline's own exit status, and no command prints a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from proc_helpers import Spawner

from flowbatch.store.jobstore import Store

pytestmark = pytest.mark.slow

# Enough events after the first line that the run writes long after its reader left.
PIPELINE = """
job a {
  command = "sleep 0.3; echo a {{ array.index }}"
  array   = 6
}
job b {
  command = "exit {{ params.code }}"
  after   = [a]
}
job c {
  command = "true"
  after   = [a]
}
param code = 0
"""


def closed_pipe() -> int:
    """The write end of a pipe whose reader has already gone: every write is EPIPE."""
    read, write = os.pipe()
    os.close(read)
    return write


def stored_statuses(state: Path) -> dict[str, str]:
    with Store.open(state, create=False) as store:
        run = store.latest_run()
        assert run is not None
        return {j["jobName"]: j["status"] for j in store.jobs(run_id=run)}


@pytest.mark.parametrize(("code", "exit_code"), [("0", 0), ("3", 1)])
def test_a_run_whose_reader_reads_one_line_and_leaves_runs_to_the_end(
    tmp_path: Path, spawn: Spawner, code: str, exit_code: int
) -> None:
    (tmp_path / "p.flow").write_text(PIPELINE)
    proc = spawn(
        [sys.executable, "-m", "flowbatch", "run", "p.flow", "-p", f"code={code}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,  # 2>&1 | head -1
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(b"run ")
    proc.stdout.close()  # what head does after its line
    assert proc.wait(timeout=120) == exit_code
    expected = {"a": "SUCCEEDED", "b": "SUCCEEDED" if code == "0" else "FAILED", "c": "SUCCEEDED"}
    assert stored_statuses(tmp_path / ".flowbatch") == expected


def test_a_run_with_both_streams_closed_from_the_start_runs_to_the_end(
    tmp_path: Path, spawn: Spawner
) -> None:
    (tmp_path / "p.flow").write_text(PIPELINE)
    write = closed_pipe()
    try:
        proc = spawn(
            [sys.executable, "-m", "flowbatch", "run", "p.flow", "--junit", "j.xml"],
            cwd=tmp_path, stdout=write, stderr=write,
        )  # fmt: skip
    finally:
        os.close(write)
    assert proc.wait(timeout=120) == 0
    assert set(stored_statuses(tmp_path / ".flowbatch").values()) == {"SUCCEEDED"}
    assert (tmp_path / "j.xml").is_file()  # what comes after the run still happens


@pytest.mark.parametrize("command", [["jobs"], ["runs"], ["jobs", "--json"], ["logs", "LAST"]])
def test_a_reading_command_whose_reader_left_exits_1_without_a_traceback(
    tmp_path: Path, spawn: Spawner, command: list[str]
) -> None:
    (tmp_path / "p.flow").write_text('job big {\n  command = "seq 1 200000"\n}\n')
    done = subprocess.run(
        [sys.executable, "-m", "flowbatch", "run", "p.flow"], cwd=tmp_path, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    if command[0] == "logs":
        with Store.open(tmp_path / ".flowbatch", create=False) as store:
            command = ["logs", str(store.jobs()[0]["jobId"])]
    write = closed_pipe()
    try:
        proc = spawn(
            [sys.executable, "-m", "flowbatch", *command],
            cwd=tmp_path, stdout=write, stderr=subprocess.PIPE,
        )  # fmt: skip
    finally:
        os.close(write)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err == b""  # no traceback, no "Exception ignored"


@pytest.mark.parametrize("closed", [1, 2])
@pytest.mark.parametrize("github", ["", "true"])
@pytest.mark.parametrize("command", [["run", "p.flow"], ["logs", "LAST"], ["jobs"]])
def test_a_command_started_with_stdout_or_stderr_closed_runs_without_a_traceback(
    tmp_path: Path,
    spawn: Spawner,
    command: list[str],
    github: str,
    closed: int,
) -> None:
    """`flowbatch run p.flow >&-` or `2>&-`: Python then has no sys.stdout (or
    sys.stderr) at all (None), and the next file opened would take that number."""
    (tmp_path / "p.flow").write_text('job a {\n  command = "echo a"\n}\n')
    if command[0] != "run":
        done = subprocess.run(
            [sys.executable, "-m", "flowbatch", "run", "p.flow"], cwd=tmp_path, capture_output=True
        )
        assert done.returncode == 0, done.stderr
    if command[0] == "logs":
        command = ["logs", "a"]
    proc = spawn(
        [sys.executable, "-m", "flowbatch", *command],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "GITHUB_ACTIONS": github}, preexec_fn=lambda: os.close(closed),
    )  # fmt: skip
    out, err = proc.communicate(timeout=60)
    assert b"Traceback" not in out + err and b"Exception ignored" not in out + err
    assert proc.returncode == 0
    if command[0] == "run":
        assert stored_statuses(tmp_path / ".flowbatch") == {"a": "SUCCEEDED"}
