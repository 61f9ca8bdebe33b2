"""flowbatch server's environments declared in `--config` run where they say: a job
submitted through boto3 to a queue on a SLURM environment runs as a SLURM job."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from engine_helpers import engine_unavailable
from proc_helpers import Spawner, wait_for
from server_process import start_server, wait_jobs

from flowbatch.store.jobstore import Store

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


def slurm_partition() -> str:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        engine_unavailable("slurm", "sinfo or sbatch is not on PATH")
    probe = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if probe.returncode != 0 or not probe.stdout.strip():
        engine_unavailable("slurm", f"sinfo failed: {probe.stderr.strip()}")
    return os.environ.get("FLOWBATCH_TEST_SLURM_PARTITION") or "debug"


def test_a_job_on_a_declared_slurm_environment_runs_as_a_slurm_job(
    spawn: Spawner, tmp_path: Path
) -> None:
    config = tmp_path / "service.flow"
    config.write_text(
        f'compute cluster {{\n  type = "slurm"\n  partition = "{slurm_partition()}"\n'
        "  max_vcpus = 2\n  poll_interval = 0.2\n}\n\n"
        "queue hpc {\n  compute = [cluster]\n}\n"
    )
    out = tmp_path / "out"
    out.mkdir()
    server = start_server(spawn, tmp_path / "state", "--config", str(config))
    batch = server.client()
    batch.register_job_definition(
        jobDefinitionName="where",
        type="container",
        containerProperties={"command": ["sh", "-c", f'echo "$SLURM_JOB_ID" > {out}/$0', "Ref::n"]},
        parameters={"n": "first"},
    )
    job = batch.submit_job(jobName="w", jobQueue="hpc", jobDefinition="where")
    found = wait_jobs(batch, [job["jobId"]], timeout=180)[job["jobId"]]
    assert found["status"] == "SUCCEEDED", found.get("statusReason")
    assert (out / "first").read_text().strip().isdigit()  # a SLURM job id: sbatch ran it


def test_a_slurm_job_running_at_a_kill_9_is_re_adopted_by_the_restarted_server(
    spawn: Spawner, tmp_path: Path
) -> None:
    config = tmp_path / "service.flow"
    config.write_text(
        f'compute cluster {{\n  type = "slurm"\n  partition = "{slurm_partition()}"\n'
        "  max_vcpus = 2\n  poll_interval = 0.2\n}\n\n"
        "queue hpc {\n  compute = [cluster]\n}\n"
    )
    runs, go = tmp_path / "runs", tmp_path / "go"
    state = tmp_path / "state"
    server = start_server(spawn, state, "--config", str(config))
    batch = server.client()
    script = (
        f'echo "start $SLURM_JOB_ID" >> {runs}; while [ ! -e {go} ]; do sleep 0.1; done;'
        f' echo "end $SLURM_JOB_ID" >> {runs}'
    )
    batch.register_job_definition(
        jobDefinitionName="held",
        type="container",
        containerProperties={"command": ["sh", "-c", script]},
        retryStrategy={"attempts": 2},  # a lost attempt would be retried: it must not be
    )
    job_id = batch.submit_job(jobName="held", jobQueue="hpc", jobDefinition="held")["jobId"]
    slurm_ids: list[str] = []
    try:
        wait_jobs(batch, [job_id], lambda j: j["status"] == "RUNNING", timeout=180)
        wait_for(lambda: runs.exists() and runs.read_text().startswith("start "), timeout=180)
        slurm_ids.append(runs.read_text().split()[1])

        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=30)
        assert slurm_ids[0] in _squeue_ids()  # the SLURM job outlives the server

        again = start_server(spawn, state, "--config", str(config))
        batch = again.client()
        go.touch()
        found = wait_jobs(batch, [job_id], timeout=180)[job_id]
        assert found["status"] == "SUCCEEDED", found.get("statusReason")
        assert len(found["attempts"]) == 1
        # it ran once, as the one SLURM job submitted before the kill
        assert runs.read_text().split("\n") == [f"start {slurm_ids[0]}", f"end {slurm_ids[0]}", ""]
        store = Store.open(state, create=False)
        try:
            (attempt,) = store.job(job_id).detail.attempts  # type: ignore[union-attr]
        finally:
            store.close()
        assert attempt.external_id == slurm_ids[0]
    finally:
        go.touch()
        if slurm_ids:
            subprocess.run(["scancel", *slurm_ids], check=False, capture_output=True)


def _squeue_ids() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True)
    return out.stdout.split()
