"""flowbatch server's environments declared in `--config` run where they say: a job
submitted through boto3 to a queue on a SLURM environment runs as a SLURM job."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from engine_helpers import engine_unavailable
from proc_helpers import Spawner
from server_process import start_server, wait_jobs

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
