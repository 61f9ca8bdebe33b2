"""`flowbatch server` as a command: where it may listen, what it prints, and a clean
stop on SIGTERM that leaves the store consistent."""

from __future__ import annotations

import signal
import sqlite3
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from proc_helpers import Spawner, run_to_end, wait_for
from server_process import make_queue, start_server, wait_jobs

pytestmark = pytest.mark.slow


def test_a_non_loopback_address_needs_tls_or_insecure(tmp_path: Path) -> None:
    done = run_to_end(
        [sys.executable, "-m", "flowbatch", "server", "--listen", "0.0.0.0:0",
         "--state-dir", str(tmp_path / "s")],
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--tls-cert" in done.stderr and "--insecure" in done.stderr
    assert not (tmp_path / "s" / "credentials").exists()


def test_sigterm_stops_it_cleanly_and_a_restart_settles_what_ran(
    spawn: Spawner, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    server = start_server(spawn, state)
    assert (state / "credentials").stat().st_mode & 0o777 == 0o600
    assert "AWS_SHARED_CREDENTIALS_FILE=" in server.log()
    secret = next(
        line.split("=", 1)[1].strip()
        for line in (state / "credentials").read_text().splitlines()
        if line.startswith("aws_secret_access_key")
    )
    assert secret not in server.log()
    batch = server.client()
    make_queue(batch, "q")
    batch.register_job_definition(
        jobDefinitionName="sleeps",
        type="container",
        containerProperties={"command": ["sleep", "300"]},
    )
    job = batch.submit_job(jobName="s", jobQueue="q", jobDefinition="sleeps")["jobId"]
    wait_jobs(batch, [job], lambda j: j["status"] == "RUNNING")
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0, server.log()
    with sqlite3.connect(state / "jobs.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        (status,) = db.execute("SELECT status FROM jobs WHERE job_id = ?", (job,)).fetchone()
    assert status == "RUNNING"  # as it was: the next start settles it
    again = start_server(spawn, state)
    found = wait_jobs(again.client(), [job])[job]
    assert found["status"] == "FAILED"
    assert found["statusReason"] == "Host EC2 (instance flowbatch-server) terminated."


def test_a_job_that_ended_is_forgotten_after_keep_hours(spawn: Spawner, tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = start_server(spawn, state, "--keep-hours", "0.001")  # 3.6 s: its logs are seen first
    batch = server.client()
    make_queue(batch, "q")
    batch.register_job_definition(
        jobDefinitionName="hi", type="container", containerProperties={"command": ["echo", "hi"]}
    )
    job = batch.submit_job(jobName="j", jobQueue="q", jobDefinition="hi")["jobId"]
    assert wait_jobs(batch, [job])[job]["status"] == "SUCCEEDED"
    run_dir = state / "logs" / "server"
    assert (run_dir / f"{job}.attempt-1.stdout").read_text() == "hi\n"
    wait_for(lambda: batch.describe_jobs(jobs=[job])["jobs"] == [], timeout=60)
    assert not list(run_dir.glob(f"{job}*"))  # its logs went with it
    with pytest.raises(ClientError) as err:  # gone for dependsOn too, as on AWS
        batch.submit_job(jobName="k", jobQueue="q", jobDefinition="hi", dependsOn=[{"jobId": job}])
    assert err.value.response["Error"]["Code"] == "ClientException"
