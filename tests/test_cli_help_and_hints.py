"""What the command line tells a user: help for every command, how to see why a run
failed, and the logs of a job that `run --resume` reused (several runs ago)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowbatch.cli import app


def flowbatch(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowbatch", *args],
        cwd=cwd, env=os.environ, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("command", ["cancel", "terminate"])
def test_cancel_and_terminate_have_help(command: str) -> None:
    listed = CliRunner().invoke(app, ["--help"]).stdout
    line = next(x for x in listed.splitlines() if x.strip().startswith(command))
    assert line.split(None, 1)[1].startswith(command.capitalize() + " JOB_ID")
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert f"(AWS {command.capitalize()}Job)" in result.stdout
    assert "NAME:INDEX" in result.stdout and "--state-dir" in result.stdout


@pytest.mark.slow
def test_a_failed_run_says_how_to_see_the_logs_of_what_failed(tmp_path: Path) -> None:
    (tmp_path / "p.flow").write_text(
        'job bad {\n  command = "echo went wrong >&2; exit 3"\n}\n'
        'job next {\n  command = "true"\n  after = [bad]\n}\n'
        'job many {\n  command = "test {{ array.index }} != 1 || { echo child >&2; exit 4; }"\n'
        "  array = 3\n}\n"
    )
    done = flowbatch(tmp_path, "run", "p.flow")
    assert done.returncode == 1
    hints = [x.split()[2] for x in done.stderr.splitlines() if x.startswith("  flowbatch logs ")]
    assert len(hints) == 2  # bad and many[1]; `next` never ran, it has no logs
    outputs = [flowbatch(tmp_path, "logs", job_id, "--stderr").stdout for job_id in hints]
    assert sorted(outputs) == ["child\n", "went wrong\n"]
    listed = next(x for x in done.stderr.splitlines() if x.startswith("every failed job: "))
    shown = flowbatch(tmp_path, *listed.split("flowbatch ", 1)[1].split())
    assert shown.returncode == 0 and "next" in shown.stdout


@pytest.mark.slow
def test_logs_of_a_job_reused_twice_show_the_attempt_that_ran(tmp_path: Path) -> None:
    (tmp_path / "p.flow").write_text(
        'job make {\n  command = "echo made in $FLOWBATCH_RUN_ID"\n}\n'
        'job each {\n  command = "echo child {{ array.index }} in $FLOWBATCH_RUN_ID"\n'
        "  array = 2\n}\n"
    )
    assert flowbatch(tmp_path, "run", "p.flow").returncode == 0
    first = flowbatch(tmp_path, "runs", "--json").stdout.split('"runId": "')[1].split('"')[0]
    for _ in range(2):  # the second resume reuses from a run that was itself a reuse
        assert flowbatch(tmp_path, "run", "p.flow", "--resume").returncode == 0
    made = flowbatch(tmp_path, "logs", "make")
    assert made.returncode == 0, made.stderr
    assert made.stdout == f"made in {first}\n"
    assert f"of run {first}, which made it" in made.stderr
    child = flowbatch(tmp_path, "logs", "each:1")
    assert (child.returncode, child.stdout) == (0, f"child 1 in {first}\n")


def test_version_from_an_installed_flowbatch_or_a_source_tree() -> None:
    from click.testing import CliRunner

    from flowbatch.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("flowbatch, version ")
