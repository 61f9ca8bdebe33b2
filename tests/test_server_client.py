"""The CLI against a real flowbatch server: `submit` a shipped pipeline, then `jobs`,
`describe`, `logs` and `cancel` with `--server`, credentials found in the server's
state directory as a user on the same machine would."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from proc_helpers import Spawner, run_to_end
from server_process import make_queue, start_server, wait_jobs

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def test_submit_a_pipeline_and_follow_it_with_the_cli(spawn: Spawner, tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(REPO / "pipelines", work, ignore=shutil.ignore_patterns("out", ".flowbatch"))
    state = tmp_path / "state"
    server = start_server(spawn, state, "--workdir", str(work))
    batch = server.client()
    make_queue(batch, "default")

    def flowbatch(*args: str) -> str:
        # no AWS_* variables: the CLI finds the key in the state directory itself
        env = {k: v for k, v in server.env.items() if not k.startswith("AWS_")}
        done = run_to_end(
            [sys.executable, "-m", "flowbatch", *args, "--server", server.url,
             "--state-dir", str(state)],
            env=env, cwd=work,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    printed = flowbatch("submit", "quickstart.flow")
    ids = dict(line.split() for line in printed.splitlines())
    assert set(ids) == {"split", "shout", "join"}
    jobs = wait_jobs(batch, ids.values())
    assert {j["jobName"]: j["status"] for j in jobs.values()} == {
        "split": "SUCCEEDED", "shout": "SUCCEEDED", "join": "SUCCEEDED",
    }  # fmt: skip
    assert (work / "out" / "quickstart" / "shout.txt").read_text().split() == [
        "HELLO", "BATCH", "WORLD",
    ]  # fmt: skip
    listed = flowbatch("jobs", "--json")
    assert {j["jobId"] for j in json.loads(listed)["jobSummaryList"]} >= set(ids.values())
    described = json.loads(flowbatch("describe", ids["shout"]))["jobs"][0]
    assert described["arrayProperties"]["size"] == 3
    # join prints its $AWS_BATCH_JOB_ID (the server's id) and the joined words
    assert flowbatch("logs", ids["join"]) == f"join ({ids['join']}): HELLO BATCH WORLD\n"


def test_run_with_server_follows_the_jobs_as_a_local_run(spawn: Spawner, tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(REPO / "pipelines", work, ignore=shutil.ignore_patterns("out", ".flowbatch"))
    state = tmp_path / "state"
    server = start_server(spawn, state, "--workdir", str(work))
    batch = server.client()
    make_queue(batch, "default")
    env = server.env  # as the server printed: AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE
    local_state = tmp_path / "run-state"
    done = run_to_end(
        [sys.executable, "-m", "flowbatch", "run", "quickstart.flow", "--server", server.url,
         "--state-dir", str(local_state), "--junit", str(tmp_path / "junit.xml")],
        env=env, cwd=work,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (work / "out" / "quickstart" / "shout.txt").read_text().split() == [
        "HELLO", "BATCH", "WORLD",
    ]  # fmt: skip
    assert 'failures="0"' in (tmp_path / "junit.xml").read_text()
    # each attempt was a job of the server's queue
    assert len(batch.list_jobs(jobQueue="default", jobStatus="SUCCEEDED")["jobSummaryList"]) >= 3
    # and a server without the pipeline's queue is an error before anything runs
    batch.update_job_queue(jobQueue="default", state="DISABLED")
    batch.delete_job_queue(jobQueue="default")
    refused = run_to_end(
        [sys.executable, "-m", "flowbatch", "run", "quickstart.flow", "--server", server.url,
         "--state-dir", str(local_state)],
        env=env, cwd=work,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "no job queue default" in refused.stderr
