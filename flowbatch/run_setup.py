"""What a run is set up with before it starts: its run id, its job ids, and the
capacity of its compute environments (`--max-vcpus`, one host for a host-less one).

Imports: compile, model.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
import uuid
from collections.abc import Mapping

from flowbatch.compile import Plan
from flowbatch.model import ComputeEnv, Host


def new_run_id(now: float | None = None) -> str:
    """`YYYYMMDD-HHMMSS-xxxx`: UTC time and 4 random hex digits."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(2)}"


def new_job_ids(plan: Plan) -> dict[str, str]:
    """A fresh job id (a uuid4 string, as AWS) for every job of the plan."""
    return {name: str(uuid.uuid4()) for name in plan.topo_order()}


def limit_vcpus(computes: Mapping[str, ComputeEnv], max_vcpus: int) -> dict[str, ComputeEnv]:
    """`--max-vcpus N`: local compute environments capped at N vCPUs."""
    out: dict[str, ComputeEnv] = {}
    for name, ce in computes.items():
        if ce.type == "local" and ce.vcpus > max_vcpus:
            hosts = tuple(dataclasses.replace(h, vcpus=min(h.vcpus, max_vcpus)) for h in ce.hosts)
            ce = dataclasses.replace(ce, vcpus=max_vcpus, hosts=hosts)
        out[name] = ce
    return out


def with_host(ce: ComputeEnv) -> ComputeEnv:
    """`ce`, with one host of its whole capacity if it lists none (local, slurm)."""
    if ce.hosts:
        return ce
    host = Host(name=ce.name, vcpus=ce.vcpus, memory=ce.memory, gpus=ce.gpus)
    return dataclasses.replace(ce, hosts=(host,))
