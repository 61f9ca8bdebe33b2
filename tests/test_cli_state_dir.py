"""Where the state directory is: one rule for every command (`--state-dir`, else
$FLOWBATCH_STATE_DIR, else ./.flowbatch of the directory the command runs from), as the
README's own sequence uses it: `flowbatch run pipelines/x.flow`, then `flowbatch jobs`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PIPELINE = """
job make {
  command = "echo made > made.txt"
  workdir = "out"
}
job use {
  command = "cat out/made.txt"
  after   = [make]
}
"""


def flowbatch(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowbatch", *args],
        cwd=cwd, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A directory with its pipeline in `pipelines/`, as the repository is laid out."""
    (tmp_path / "repo" / "pipelines" / "out").mkdir(parents=True)
    (tmp_path / "repo" / "pipelines" / "x.flow").write_text(PIPELINE)
    return tmp_path / "repo"


def test_run_then_jobs_from_the_same_directory_see_the_same_run(repo: Path) -> None:
    done = flowbatch(repo, "run", "pipelines/x.flow")
    assert done.returncode == 0, done.stderr
    # The state is where the command ran; the pipeline's workdir is still the file's.
    assert (repo / ".flowbatch" / "jobs.db").is_file()
    assert not (repo / "pipelines" / ".flowbatch").exists()
    assert (repo / "pipelines" / "out" / "made.txt").read_text() == "made\n"
    listed = flowbatch(repo, "jobs", "--json")
    assert listed.returncode == 0, listed.stderr
    jobs = json.loads(listed.stdout)["jobSummaryList"]
    assert {j["jobName"]: j["status"] for j in jobs} == {"make": "SUCCEEDED", "use": "SUCCEEDED"}
    for command in (["runs"], ["logs", f"{jobs[-1]['jobId']}"], ["describe", jobs[0]["jobId"]]):
        assert flowbatch(repo, *command).returncode == 0, command
    assert "RUNNING" not in flowbatch(repo, "runs").stdout
    plan = flowbatch(repo, "plan", "pipelines/x.flow", "--resume")
    assert "2 of 2 jobs run" not in plan.stdout and "resuming from run" in plan.stdout
    graph = flowbatch(repo, "graph", "pipelines/x.flow", "--run", "latest", "-o", "g.json")
    assert graph.returncode == 0, graph.stderr


def test_the_environment_variable_moves_the_state_for_every_command(
    repo: Path, tmp_path: Path
) -> None:
    env = {"FLOWBATCH_STATE_DIR": str(tmp_path / "elsewhere")}
    assert flowbatch(repo, "run", "pipelines/x.flow", env=env).returncode == 0
    assert (tmp_path / "elsewhere" / "jobs.db").is_file()
    assert not (repo / ".flowbatch").exists()
    # From any directory, the variable finds it; --state-dir wins over it.
    other = tmp_path / "other"
    other.mkdir()
    assert flowbatch(other, "jobs", env=env).returncode == 0
    missing = flowbatch(other, "jobs", "--state-dir", "nowhere", env=env)
    assert missing.returncode == 2
    assert f"`{other / 'nowhere' / 'jobs.db'}` (given by --state-dir)" in missing.stderr


def test_a_command_run_elsewhere_says_where_it_looked_and_how_to_point_there(
    repo: Path, tmp_path: Path
) -> None:
    assert flowbatch(repo, "run", "pipelines/x.flow").returncode == 0
    inside = repo / "pipelines"
    planned = flowbatch(inside, "plan", "x.flow", "--resume")
    assert planned.returncode == 0
    assert f"note: no job database at `{inside / '.flowbatch' / 'jobs.db'}`" in planned.stderr
    for args in (["jobs"], ["runs"], ["report", "latest"], ["terminate", "x"]):
        failed = flowbatch(inside, *args)
        assert failed.returncode == 2, args
        assert f"no job database at `{inside / '.flowbatch' / 'jobs.db'}`" in failed.stderr
        assert "(the default, .flowbatch in the current directory)" in failed.stderr
        assert "--state-dir DIR or set FLOWBATCH_STATE_DIR=DIR" in failed.stderr
        assert "Traceback" not in failed.stderr
    env = {"FLOWBATCH_STATE_DIR": str(tmp_path / "none")}
    failed = flowbatch(inside, "jobs", env=env)
    assert "(from $FLOWBATCH_STATE_DIR)" in failed.stderr


def test_report_from_another_directory_finds_the_pipeline_file(repo: Path, tmp_path: Path) -> None:
    assert flowbatch(repo, "run", "pipelines/x.flow").returncode == 0
    other = tmp_path / "other"
    other.mkdir()
    state = str(repo / ".flowbatch")
    made = flowbatch(other, "report", "latest", "-o", "r.html", "--state-dir", state)
    assert made.returncode == 0, made.stderr
    assert "is gone" not in made.stderr and "note: no graph" not in made.stderr
    assert "<svg" in (other / "r.html").read_text()
    # `runs` shows the recorded (absolute) path relative to here when it is below here.
    runs = flowbatch(repo, "runs").stdout.splitlines()[1].split()
    assert runs[1] == "pipelines/x.flow"


def test_logs_and_report_of_a_checkout_that_moved_since_the_run(repo: Path, tmp_path: Path) -> None:
    """The state directory goes with the checkout (renamed, or a CI artifact unpacked
    elsewhere): its logs are found below it, where the recorded absolute path is gone."""
    assert flowbatch(repo, "run", "pipelines/x.flow").returncode == 0
    (repo / "pipelines" / "f.flow").write_text('job f {\n  command = "echo broke >&2; exit 3"\n}\n')
    assert flowbatch(repo, "run", "pipelines/f.flow").returncode == 1
    moved = repo.rename(tmp_path / "moved")
    shown = flowbatch(moved, "logs", "f", "--stderr")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == "broke\n"
    described = json.loads(flowbatch(moved, "describe", "f").stdout)["jobs"][0]
    assert described["container"]["logStreamName"].startswith(str(moved / ".flowbatch" / "logs"))
    made = flowbatch(moved, "report", "latest", "-o", "r.html")
    assert made.returncode == 0, made.stderr
    assert "note: no graph" not in made.stderr  # the pipeline file moved with it
    page = (moved / "r.html").read_text()
    assert "broke" in page and "<svg" in page
