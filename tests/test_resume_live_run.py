"""`run --resume` while the run it would resume still has its runner alive (another
terminal, a CI step that did not wait) must not start that run's jobs a second time
beside the ones running: it refuses with exit 2, as Nextflow and Snakemake refuse a
second run in a locked directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from proc_helpers import Spawner, first_job_status, run_to_end, wait_for

pytestmark = pytest.mark.slow
FLOWBATCH = [sys.executable, "-m", "flowbatch"]


def test_resume_refuses_while_the_previous_runner_lives(tmp_path: Path, spawn: Spawner) -> None:
    (tmp_path / "p.flow").write_text('job s {\n  command = "echo $$ >> starts; exec sleep 60"\n}\n')
    state = ["--state-dir", str(tmp_path / "state")]
    env = dict(os.environ, FLOWBATCH_CGROUPS="off")
    spawn(
        [*FLOWBATCH, "run", "p.flow", *state],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: first_job_status(tmp_path / "state") == "RUNNING")
    resumed = run_to_end([*FLOWBATCH, "run", "p.flow", *state, "--resume"], cwd=tmp_path, env=env)
    assert resumed.returncode == 2, resumed.stderr
    assert "still running" in resumed.stderr
    assert len((tmp_path / "starts").read_text().split()) == 1
