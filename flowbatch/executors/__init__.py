"""Executors: one per compute environment, chosen by its `type`.

`make_executor` imports the backend lazily, so a local run never pays for asyncssh.

    base          the seam: Executor protocol, Attempt, ExecResult, the grace period
    logfiles      where an attempt's logs live (files beside a stem in the run's one
                  directory), and reading what older stores recorded
    local         a process group on this machine (cgroups: its memory; reaper: its
                  cleanup if the runner dies; processes: pids that cannot be mistaken)
    container     an attempt with an `image` as a container runtime call (local, ssh, slurm)
    ssh           attempts on the hosts of an `ssh` environment (asyncssh)
    slurm         attempts as SLURM batch jobs; slurm_script writes them, slurm_parse
                  reads squeue's answers
    aws_batch     attempts as AWS Batch jobs (botocore), their logs from CloudWatch Logs
    fake          a scripted executor for tests
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowbatch.executors.base import GRACE_SECONDS, Executor
from flowbatch.lang.model import ComputeEnv

if TYPE_CHECKING:
    from flowbatch.lang.compile import Plan

__all__ = ["local_limits_notice", "make_executor"]


def make_executor(ce: ComputeEnv, *, grace: float = GRACE_SECONDS) -> Executor:
    """The executor for `ce`; raises ValueError for an unknown type. `grace` is the time
    between SIGTERM and SIGKILL for a job that is stopped (SLURM's own KillWait decides
    there: scancel does the stopping)."""
    if ce.type == "local":
        from flowbatch.executors.local import LocalExecutor

        return LocalExecutor(ce, grace=grace)
    if ce.type == "ssh":
        from flowbatch.executors.ssh import SshExecutor

        return SshExecutor(ce, grace=grace)
    if ce.type == "slurm":
        from flowbatch.executors.slurm import SlurmExecutor

        return SlurmExecutor(ce)
    if ce.type == "aws_batch":
        from flowbatch.executors.aws_batch import AwsBatchExecutor

        return AwsBatchExecutor(ce)
    raise ValueError(
        f"compute `{ce.name}`: unknown type {ce.type!r} (local, ssh, slurm, aws_batch)"
    )


def local_limits_notice(plan: Plan) -> str | None:
    """What local jobs of `plan` go without on this machine (no cgroups: memory neither
    enforced nor measured, setsid escapes not stopped), to be said once per run; None
    when nothing is given up or no job runs locally without an image."""
    if not any(ce.type == "local" for ce in plan.computes.values()):
        return None
    if all(spec.image is not None for spec in plan.pipeline.jobs.values()):
        return None
    from flowbatch.executors.cgroups import Cgroups, describe_missing

    probe = Cgroups.create()
    if probe is not None:
        probe.remove()
        return None
    return describe_missing()
