"""Syntax to meaning: resolve names, apply defaults and inheritance, check everything
that can be checked before anything runs, and build the frozen `model.Pipeline`.

Errors are collected rather than raised one at a time, so that a file with several
mistakes shows them all; an attribute whose value is bad is left out and checking goes
on. Jobs are built in `jobs.py`; this module handles the file as a whole: params,
compute environments, queues, definitions and names.

Imports: syntax, model, values, jobs, diagnostics.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from flowbatch import syntax as s
from flowbatch.diagnostics import FlowError, Kind, Span, did_you_mean
from flowbatch.jobs import JobBuilder
from flowbatch.model import (
    DEFAULT_QUEUE,
    ComputeEnv,
    Host,
    ParamValue,
    Pipeline,
    Queue,
    local_compute,
)
from flowbatch.values import (
    Invalid,
    expect_bool,
    expect_int,
    expect_list,
    expect_map,
    expect_name,
    expect_number,
    expect_size,
    expect_str,
    invalid,
    param_value,
    resolve_params,
)

COMPUTE_KEYS = {
    "type", "vcpus", "memory", "gpus", "placement", "managed", "spot", "bid_percentage",
    "interruption_rate", "runtime", "network",
    "hosts", "known_hosts", "identity", "max_sessions",  # ssh
    "partition", "max_vcpus", "account", "qos", "poll_interval",  # slurm
}  # fmt: skip
_ONLY_FOR = {
    "hosts": "ssh", "known_hosts": "ssh", "identity": "ssh", "max_sessions": "ssh",
    "partition": "slurm", "max_vcpus": "slurm", "account": "slurm", "qos": "slurm",
    "poll_interval": "slurm",
}  # fmt: skip
COMPUTE_TYPES = ("local", "ssh", "slurm")
QUEUE_KEYS = {"priority", "compute", "state"}
HOST_KEYS = {"name", "address", "port", "user", "vcpus", "memory", "gpus"}
# A SLURM environment's memory is the cluster's business unless the user caps it.
UNBOUNDED_MEMORY = 1 << 40


@dataclass(frozen=True, slots=True)
class Machine:
    """This machine, for the implicit `local` compute environment."""

    vcpus: int
    memory: int  # MiB


class Collector:
    """The errors found so far; `check` runs one step and records its Invalid."""

    def __init__(self) -> None:
        self.errors: list[FlowError] = []

    def add(self, error: FlowError) -> None:
        self.errors.append(error)

    def error(
        self, kind: Kind, message: str, span: Span | None, hint: str | None = None, **detail: object
    ) -> None:
        self.errors.append(FlowError(kind, message, span, hint=hint, detail=detail))


def analyze(
    files: Sequence[s.File],
    *,
    overrides: Mapping[str, str] | None = None,
    machine: Machine,
) -> Pipeline:
    """The checked pipeline of `files` (the main file first, then its imports).

    Raises FlowError carrying every error found.
    """
    errors = Collector()
    main = files[0]
    blocks = _collect(files, errors)
    params = _params(blocks.params, overrides or {}, errors)
    computes = _computes(blocks.computes, params, machine, errors)
    queues = _queues(blocks.queues, computes, params, errors)
    builder = JobBuilder(
        params=params,
        definitions=blocks.definitions,
        queues=queues,
        computes=computes,
        errors=errors,
    )
    jobs = builder.build(blocks.jobs)
    if errors.errors:
        raise FlowError.many(errors.errors)
    return Pipeline(
        path=main.source.path,
        params=MappingProxyType(params),
        computes=MappingProxyType(computes),
        queues=MappingProxyType(queues),
        jobs=MappingProxyType(jobs),
        sources=tuple(f.source.path for f in files),
    )


@dataclass
class _Blocks:
    params: dict[str, s.Param]
    computes: dict[str, s.Block]
    queues: dict[str, s.Block]
    definitions: dict[str, s.Block]
    jobs: dict[str, s.Block]


def _collect(files: Sequence[s.File], errors: Collector) -> _Blocks:
    blocks = _Blocks({}, {}, {}, {}, {})
    tables: dict[str, dict[str, s.Block]] = {
        "compute": blocks.computes,
        "queue": blocks.queues,
        "definition": blocks.definitions,
        "job": blocks.jobs,
    }
    for number, file in enumerate(files):
        for statement in file.statements:
            if isinstance(statement, s.Param):
                _add_unique(blocks.params, statement.name, statement, "parameter", errors)
            elif isinstance(statement, s.Block):
                if statement.kind == "job" and number > 0:
                    errors.error(
                        Kind.IMPORT,
                        f"job `{statement.name}` is in an imported file",
                        statement.name_span,
                        hint="an import brings in definitions, queues and compute "
                        "environments; declare jobs in the pipeline file itself",
                    )
                    continue
                table = tables[statement.kind]
                _add_unique(table, statement.name, statement, statement.kind, errors)
    return blocks


def _add_unique(
    table: dict[str, s.Param] | dict[str, s.Block],
    name: str,
    node: s.Param | s.Block,
    what: str,
    errors: Collector,
) -> None:
    if name in table:
        first = table[name]
        errors.error(
            Kind.DUPLICATE,
            f"{what} `{name}` is defined twice",
            node.name_span,
            hint=f"first defined at {first.span.path}:{first.span.line}",
        )
        return
    table[name] = node  # type: ignore[assignment]


def _params(
    declared: Mapping[str, s.Param], overrides: Mapping[str, str], errors: Collector
) -> dict[str, ParamValue]:
    values: dict[str, ParamValue] = {}
    for name, param in declared.items():
        try:
            value, type_name = param_value(param.value)
        except Invalid as bad:
            errors.add(bad.error)
            continue
        if name in overrides:
            converted = _convert_override(overrides[name], type_name)
            if converted is None:
                errors.error(
                    Kind.PARAM_TYPE,
                    f"`-p {name}={overrides[name]}`: parameter `{name}` is {_TYPE_WORDS[type_name]}",
                    param.value.span,
                    hint=f"give a value like its default here, e.g. -p {name}={_example(param)}",
                    param=name,
                )
                converted = value  # keep the default, so later checks don't echo this one
            value = converted
        values[name] = value
    for name in overrides:
        if name not in declared:
            errors.error(
                Kind.UNKNOWN_NAME,
                f"`-p {name}=...`: unknown parameter `{name}`",
                None,
                hint=did_you_mean(name, declared, "parameter"),
                name=name,
            )
    return values


_TYPE_WORDS = {
    "str": "a string",
    "int": "a whole number",
    "float": "a number",
    "bool": "a boolean (true or false)",
    "size": "a size",
    "duration": "a duration",
}


def _example(param: s.Param) -> str:
    line = param.span.source.line(param.value.span.line)
    return line[param.value.span.col - 1 : param.value.span.end_col - 1].strip('"')


def _convert_override(text: str, type_name: str) -> ParamValue | None:
    import math

    try:
        if type_name == "int":
            return int(text)
        if type_name == "float":
            return float(text)
    except ValueError:
        return None
    if type_name == "bool":
        return {"true": True, "false": False}.get(text.lower())
    if type_name == "size":
        mib = s.size_mib(text)
        return math.ceil(mib) if mib is not None else None
    if type_name == "duration":
        return s.duration_seconds(text)
    return text


def _entries(
    block: s.Block, allowed: set[str], what: str, errors: Collector
) -> Iterator[s.Entry]:
    """The block's entries, with unknown and repeated keys reported and skipped."""
    seen: dict[str, s.Entry] = {}
    for entry in block.body.entries:
        if entry.key not in allowed:
            errors.error(
                Kind.UNKNOWN_ATTRIBUTE,
                f"unknown attribute `{entry.key}` in {what} `{block.name}`",
                entry.key_span,
                hint=did_you_mean(entry.key, allowed, "attribute"),
            )
            continue
        if entry.key in seen:
            errors.error(
                Kind.DUPLICATE,
                f"attribute `{entry.key}` is set twice",
                entry.key_span,
                hint=f"first set on line {seen[entry.key].span.line}",
            )
            continue
        seen[entry.key] = entry
        yield entry


def _computes(
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
    values: dict[str, s.Value] = {}
    for entry in _entries(block, COMPUTE_KEYS, "compute environment", errors):
        try:
            values[entry.key] = resolve_params(entry.value, params)
        except Invalid as bad:
            errors.add(bad.error)
    type_ = expect_str(values["type"], "type") if "type" in values else "local"
    if type_ not in COMPUTE_TYPES:
        raise invalid(
            f"unknown compute environment type `{type_}`",
            values["type"].span,
            hint=did_you_mean(type_, COMPUTE_TYPES, "type"),
        )
    for key, value in values.items():
        if key in _ONLY_FOR and _ONLY_FOR[key] != type_:
            errors.error(
                Kind.UNKNOWN_ATTRIBUTE,
                f"`{key}` is for {_ONLY_FOR[key]} compute environments, not {type_}",
                value.span,
            )
    options: dict[str, object] = {}
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
    if type_ == "slurm":
        options["max_vcpus"] = vcpus
    placement = expect_str(values["placement"], "placement") if "placement" in values else "binpack"
    if placement not in ("binpack", "exclusive"):
        raise invalid(
            f"unknown placement `{placement}`", values["placement"].span,
            hint='placement is "binpack" (the default) or "exclusive" (one job per host)',
        )  # fmt: skip
    rate = 0.0
    if "interruption_rate" in values:
        rate = expect_number(values["interruption_rate"], "interruption_rate")
        if rate > 1:
            raise invalid("`interruption_rate` is a chance per attempt, from 0 to 1",
                          values["interruption_rate"].span)  # fmt: skip
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
        managed=expect_bool(values["managed"], "managed") if "managed" in values else type_ != "ssh",
        spot=expect_bool(values["spot"], "spot") if "spot" in values else False,
        bid_percentage=bid,
        interruption_rate=rate,
        options=MappingProxyType(options),
        hosts=hosts,
        span=block.name_span,
    )


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
            raise invalid(
                f"ssh compute environment `{block.name}` lists no hosts",
                block.name_span,
                hint='hosts = [{ address = "10.0.0.5", user = "batch", vcpus = 8, memory = 16GiB }]',
                kind=Kind.MISSING_ATTRIBUTE,
            )
        if "known_hosts" not in values:
            raise invalid(
                f"ssh compute environment `{block.name}` has no `known_hosts`",
                block.name_span,
                hint="host keys are checked, never trusted silently: "
                'known_hosts = "~/.ssh/known_hosts"',
                kind=Kind.MISSING_ATTRIBUTE,
            )
        return tuple(
            _ssh_host(item, i, errors) for i, item in enumerate(expect_list(values["hosts"], "hosts"))
        )
    if type_ == "slurm":
        key = "max_vcpus" if "max_vcpus" in values else "vcpus"
        vcpus = expect_int(values[key], key, minimum=1) if key in values else 256
        memory = expect_size(values["memory"], "memory") if "memory" in values else UNBOUNDED_MEMORY
        partition = expect_str(values["partition"], "partition") if "partition" in values else "slurm"
        return (Host(name=partition, vcpus=vcpus, memory=memory, gpus=gpus),)
    vcpus = expect_int(values["vcpus"], "vcpus", minimum=1) if "vcpus" in values else machine.vcpus
    memory = expect_size(values["memory"], "memory") if "memory" in values else machine.memory
    return (Host(name="localhost", vcpus=vcpus, memory=memory, gpus=gpus),)


def _ssh_host(item: s.Value, number: int, errors: Collector) -> Host:
    if isinstance(item, s.Str):  # "user@host:port", with the default capacity
        user, _, rest = item.value.rpartition("@")
        address, _, port = rest.partition(":")
        return Host(
            name=address if not port else f"{address}:{port}",
            vcpus=1, memory=1024, address=address, port=int(port) if port.isdigit() else None,
            user=user or None,
        )  # fmt: skip
    entries = {e.key: e.value for e in expect_map(item, "hosts").entries}
    for key, value in entries.items():
        if key not in HOST_KEYS:
            errors.error(Kind.UNKNOWN_ATTRIBUTE, f"unknown host attribute `{key}`", value.span,
                         hint=did_you_mean(key, HOST_KEYS, "attribute"))  # fmt: skip
    if "address" not in entries:
        raise invalid("a host needs an `address`", item.span, kind=Kind.MISSING_ATTRIBUTE)
    address = expect_str(entries["address"], "address")
    port = expect_int(entries["port"], "port", minimum=1, maximum=65535) if "port" in entries else None
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


def _queues(
    blocks: Mapping[str, s.Block],
    computes: Mapping[str, ComputeEnv],
    params: Mapping[str, ParamValue],
    errors: Collector,
) -> dict[str, Queue]:
    queues = {"default": DEFAULT_QUEUE}
    for name, block in blocks.items():
        values: dict[str, s.Value] = {}
        for entry in _entries(block, QUEUE_KEYS, "queue", errors):
            try:
                values[entry.key] = resolve_params(entry.value, params)
            except Invalid as bad:
                errors.add(bad.error)
        try:
            queues[name] = _queue(block, values, computes, errors)
        except Invalid as bad:
            errors.add(bad.error)
    return queues


def _queue(
    block: s.Block, values: Mapping[str, s.Value], computes: Mapping[str, ComputeEnv],
    errors: Collector,
) -> Queue:  # fmt: skip
    compute: tuple[str, ...] = ("local",)
    if "compute" in values:
        items = expect_list(values["compute"], "compute")
        if not 1 <= len(items) <= 3:
            raise invalid(
                f"a queue lists 1 to 3 compute environments, not {len(items)}",
                values["compute"].span,
            )
        names: list[str] = []
        for item in items:
            name, span = expect_name(item, "compute")
            if name not in computes:
                errors.error(Kind.UNKNOWN_NAME, f"unknown compute environment `{name}`", span,
                             hint=did_you_mean(name, computes, "compute environment"))  # fmt: skip
            names.append(name)
        compute = tuple(names)
    state = expect_str(values["state"], "state") if "state" in values else "enabled"
    if state not in ("enabled", "disabled"):
        raise invalid(f"unknown queue state `{state}`", values["state"].span,
                      hint='state is "enabled" or "disabled"')  # fmt: skip
    return Queue(
        name=block.name,
        priority=expect_int(values["priority"], "priority") if "priority" in values else 1,
        compute=compute,
        state=state,  # type: ignore[arg-type]
        span=block.name_span,
    )
