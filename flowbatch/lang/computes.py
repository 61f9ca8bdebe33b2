"""Compute environments: `compute NAME { ... }` checked and built into `ComputeEnv`s with
their `Host`s (this machine for local, one virtual host for SLURM, the listed hosts for
SSH), plus the implicit `local`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import flowbatch.lang.syntax as s
from flowbatch.lang.model import ComputeEnv, Host, ParamValue, local_compute
from flowbatch.lang.values import (
    Collector,
    Invalid,
    expect_bool,
    expect_int,
    expect_list,
    expect_map,
    expect_number,
    expect_size,
    expect_str,
    invalid,
    resolve_params,
)

COMPUTE_KEYS = {
    "type",
    "vcpus",
    "memory",
    "gpus",
    "placement",
    "managed",
    "spot",
    "bid_percentage",
    "interruption_rate",
    "runtime",
    "network",
    "hosts",
    "known_hosts",
    "identity",
    "max_sessions",  # ssh
    "partition",
    "max_vcpus",
    "account",
    "qos",
    "poll_interval",  # slurm, aws_batch
    "job_queue",
    "region",
    "profile",
    "endpoint",  # aws_batch
}
_ONLY_FOR = {
    "hosts": ("ssh",),
    "known_hosts": ("ssh",),
    "identity": ("ssh",),
    "max_sessions": ("ssh",),
    "partition": ("slurm",),
    "max_vcpus": ("slurm", "aws_batch"),
    "account": ("slurm",),
    "qos": ("slurm",),
    "poll_interval": ("slurm", "aws_batch"),
    "job_queue": ("aws_batch",),
    "region": ("aws_batch",),
    "profile": ("aws_batch",),
    "endpoint": ("aws_batch",),
}
COMPUTE_TYPES = ("local", "ssh", "slurm", "aws_batch")
# Keys a user might reach for to give AWS credentials, which a .flow file never holds
# (it is shared, committed, printed in errors): botocore's standard chain finds them.
_CREDENTIAL_KEY = re.compile(r"secret|access_key|session_token|credential|password|token", re.I)
# An access key id (long-term AKIA, temporary ASIA) written as any value.
_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d+|local")
HOST_KEYS = {"name", "address", "port", "user", "vcpus", "memory", "gpus"}
# A SLURM environment's memory is the cluster's business unless the user caps it.
UNBOUNDED_MEMORY = 1 << 40
UNBOUNDED_GPUS = 1 << 20  # AWS's instance types are AWS's business too


@dataclass(frozen=True, slots=True)
class Machine:
    """This machine, for the implicit `local` compute environment."""

    vcpus: int
    memory: int  # MiB


def entries(block: s.Block, allowed: set[str], what: str, errors: Collector) -> Iterator[s.Entry]:
    """The block's entries, with unknown and repeated keys reported and skipped."""
    seen: dict[str, s.Entry] = {}
    for entry in block.body.entries:
        if entry.key not in allowed:
            errors.report(
                "unknown-attribute",
                entry.key_span,
                name=entry.key,
                what=what,
                block=block.name,
                known=allowed,
            )
            continue
        if entry.key in seen:
            errors.report(
                "attribute-set-twice", entry.key_span, name=entry.key, first=seen[entry.key].span
            )
            continue
        seen[entry.key] = entry
        yield entry


def resolved_entries(
    block: s.Block,
    allowed: set[str],
    what: str,
    params: Mapping[str, ParamValue],
    errors: Collector,
) -> dict[str, s.Value]:
    """The block's values by key, `params.X` resolved; a key that is unknown, repeated
    or whose value does not resolve is reported and left out."""
    values: dict[str, s.Value] = {}
    for entry in entries(block, allowed, what, errors):
        try:
            values[entry.key] = resolve_params(entry.value, params)
        except Invalid as bad:
            errors.add(bad.error)
    return values


def build_computes(
    blocks: Mapping[str, s.Block],
    params: Mapping[str, ParamValue],
    machine: Machine,
    errors: Collector,
) -> dict[str, ComputeEnv]:
    computes = {"local": local_compute(machine.vcpus, machine.memory)}
    for name, block in blocks.items():
        try:
            computes[name] = _compute(block, params, machine, errors)
        except Invalid as bad:
            errors.add(bad.error)
    return computes


def _compute(
    block: s.Block, params: Mapping[str, ParamValue], machine: Machine, errors: Collector
) -> ComputeEnv:
    credentials = _credentials(block, errors)
    values = resolved_entries(
        block, COMPUTE_KEYS | credentials, "compute environment", params, errors
    )
    for key in credentials:  # reported once, as what they are
        values.pop(key, None)
    type_ = expect_str(values["type"], "type") if "type" in values else "local"
    if type_ not in COMPUTE_TYPES:
        raise invalid("compute-type", values["type"].span, name=type_, known=COMPUTE_TYPES)
    for key, value in values.items():
        if key in _ONLY_FOR and type_ not in _ONLY_FOR[key]:
            errors.report(
                "attribute-for-other-type",
                value.span,
                name=key,
                for_type=" and ".join(_ONLY_FOR[key]),
                type=type_,
            )
    options: dict[str, object] = {}
    if type_ == "aws_batch":
        options.update(_aws_options(block, values))
    for key in ("runtime", "known_hosts", "identity", "partition", "account", "qos"):
        if key in values:
            options[key] = expect_str(values[key], key)
    for key in ("known_hosts", "identity"):  # paths are relative to the file that names them
        if key in options:
            options[key] = _relative_to(block.span.path, str(options[key]))
    if "max_sessions" in values:
        options["max_sessions"] = expect_int(values["max_sessions"], "max_sessions", minimum=2)
    if "network" in values:
        options["network"] = expect_bool(values["network"], "network")
    if "poll_interval" in values:
        options["poll_interval"] = expect_number(values["poll_interval"], "poll_interval")
    gpus = expect_int(values["gpus"], "gpus") if "gpus" in values else 0
    hosts = _hosts(block, type_, values, gpus, machine, errors)
    vcpus = sum(h.vcpus for h in hosts)
    memory = sum(h.memory for h in hosts)
    if type_ in ("slurm", "aws_batch"):
        options["max_vcpus"] = vcpus
    placement = expect_str(values["placement"], "placement") if "placement" in values else "binpack"
    if placement not in ("binpack", "exclusive"):
        raise invalid("placement", values["placement"].span, placement=placement)
    rate = 0.0
    if "interruption_rate" in values:
        rate = expect_number(values["interruption_rate"], "interruption_rate")
        if rate > 1:
            raise invalid("interruption-rate", values["interruption_rate"].span, rate=rate)
    bid = None
    if "bid_percentage" in values:
        bid = expect_int(values["bid_percentage"], "bid_percentage", minimum=1, maximum=100)
    return ComputeEnv(
        name=block.name,
        type=type_,
        vcpus=vcpus,
        memory=memory,
        gpus=sum(h.gpus for h in hosts),
        placement=placement,  # type: ignore[arg-type]
        managed=expect_bool(values["managed"], "managed")
        if "managed" in values
        else type_ != "ssh",
        spot=expect_bool(values["spot"], "spot") if "spot" in values else False,
        bid_percentage=bid,
        interruption_rate=rate,
        options=MappingProxyType(options),
        hosts=hosts,
        span=block.name_span.copy(),
    )


def _credentials(block: s.Block, errors: Collector) -> set[str]:
    """Report every key of `block` named like a credential and every value that looks
    like an access key id; the keys so reported, to be skipped."""
    found: set[str] = set()
    for entry in block.body.entries:
        if _CREDENTIAL_KEY.search(entry.key):
            found.add(entry.key)
            errors.report("aws-credentials", entry.key_span, what=f"`{entry.key}`")
        elif isinstance(entry.value, s.Str) and _ACCESS_KEY_ID.search(entry.value.value):
            found.add(entry.key)  # never quoted back: the error names the key only
            errors.report("aws-credentials", entry.value.span, what=f"the value of `{entry.key}`")
    return found


def _aws_options(block: s.Block, values: Mapping[str, s.Value]) -> dict[str, object]:
    """`job_queue` and `region` (required), `profile` and `endpoint` (optional)."""
    examples = {
        "job_queue": 'job_queue = "my-queue" (a name or an ARN of an existing job queue)',
        "region": 'region = "eu-west-1"',
    }
    options: dict[str, object] = {}
    for key, example in examples.items():
        if key not in values:
            raise invalid("aws-missing", block.name_span, name=block.name, key=key, example=example)
    for key in ("job_queue", "region", "profile", "endpoint"):
        if key in values:
            options[key] = expect_str(values[key], key)
    if not _REGION.fullmatch(str(options["region"])):
        raise invalid(
            "wrong-type",
            values["region"].span,
            key="region",
            wanted="an AWS region",
            got=f"`{options['region']}`",
            example='"us-east-1"',
        )
    endpoint = str(options.get("endpoint", "http://"))
    if not endpoint.startswith(("http://", "https://")):
        raise invalid("aws-endpoint", values["endpoint"].span, url=endpoint)
    return options


def _relative_to(flow_path: str, path: str) -> str:
    if path.startswith("~") or posixpath.isabs(path):
        return path
    return posixpath.normpath(posixpath.join(posixpath.dirname(flow_path), path))


def _hosts(
    block: s.Block,
    type_: str,
    values: Mapping[str, s.Value],
    gpus: int,
    machine: Machine,
    errors: Collector,
) -> tuple[Host, ...]:
    if type_ == "ssh":
        if "hosts" not in values:
            raise invalid("ssh-no-hosts", block.name_span, name=block.name)
        if "known_hosts" not in values:
            raise invalid("ssh-no-known-hosts", block.name_span, name=block.name)
        return tuple(_ssh_host(item, errors) for item in expect_list(values["hosts"], "hosts"))
    if type_ in ("slurm", "aws_batch"):
        # One virtual host: the cluster (or AWS) places jobs on its own machines, and
        # `max_vcpus` caps what flowbatch keeps in flight there at once.
        key = "max_vcpus" if "max_vcpus" in values else "vcpus"
        vcpus = expect_int(values[key], key, minimum=1) if key in values else 256
        memory = expect_size(values["memory"], "memory") if "memory" in values else UNBOUNDED_MEMORY
        if type_ == "aws_batch":
            gpus = expect_int(values["gpus"], "gpus") if "gpus" in values else UNBOUNDED_GPUS
            return (Host(name=block.name, vcpus=vcpus, memory=memory, gpus=gpus),)
        partition = (
            expect_str(values["partition"], "partition") if "partition" in values else "slurm"
        )
        return (Host(name=partition, vcpus=vcpus, memory=memory, gpus=gpus),)
    vcpus = expect_int(values["vcpus"], "vcpus", minimum=1) if "vcpus" in values else machine.vcpus
    memory = expect_size(values["memory"], "memory") if "memory" in values else machine.memory
    return (Host(name="localhost", vcpus=vcpus, memory=memory, gpus=gpus),)


def _ssh_host(item: s.Value, errors: Collector) -> Host:
    if isinstance(item, s.Str):  # "user@host:port", with the default capacity
        user, _, rest = item.value.rpartition("@")
        address, _, port_text = rest.partition(":")
        return Host(
            name=address if not port_text else f"{address}:{port_text}",
            vcpus=1,
            memory=1024,
            address=address,
            port=int(port_text) if port_text.isdigit() else None,
            user=user or None,
        )
    entries = {e.key: e.value for e in expect_map(item, "hosts").entries}
    for key, value in entries.items():
        if key not in HOST_KEYS:
            errors.report("unknown-host-attribute", value.span, name=key, known=HOST_KEYS)
    if "address" not in entries:
        raise invalid("host-address", item.span)
    address = expect_str(entries["address"], "address")
    port = (
        expect_int(entries["port"], "port", minimum=1, maximum=65535) if "port" in entries else None
    )
    default_name = address if port is None else f"{address}:{port}"
    return Host(
        name=expect_str(entries["name"], "name") if "name" in entries else default_name,
        vcpus=expect_int(entries["vcpus"], "vcpus", minimum=1) if "vcpus" in entries else 1,
        memory=expect_size(entries["memory"], "memory") if "memory" in entries else 1024,
        gpus=expect_int(entries["gpus"], "gpus") if "gpus" in entries else 0,
        address=address,
        port=port,
        user=expect_str(entries["user"], "user") if "user" in entries else None,
    )
