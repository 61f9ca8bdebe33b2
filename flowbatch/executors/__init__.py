"""Executors: one per compute environment, chosen by its `type`.

`make_executor` imports the backend lazily, so a local run never pays for asyncssh.

Imports: model, executors.base and the executor modules; anyio.
"""

from __future__ import annotations

from flowbatch.executors.base import Executor
from flowbatch.model import ComputeEnv

__all__ = ["make_executor"]


def make_executor(ce: ComputeEnv) -> Executor:
    """The executor for `ce`; raises ValueError for an unknown type."""
    if ce.type == "local":
        from flowbatch.executors.local import LocalExecutor

        return LocalExecutor(ce)
    if ce.type == "ssh":
        from flowbatch.executors.ssh import SshExecutor

        return SshExecutor(ce)
    if ce.type == "slurm":
        from flowbatch.executors.slurm import SlurmExecutor

        return SlurmExecutor(ce)
    raise ValueError(f"compute `{ce.name}`: unknown type {ce.type!r} (local, ssh, slurm)")
