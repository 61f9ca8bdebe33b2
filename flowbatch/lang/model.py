"""The meaning of a pipeline, frozen: compute environments, queues, jobs, dependencies.

`analyze` builds these from the syntax tree; everything after it (compile, the runner,
the executors, the store, the renderers) reads them and never changes them. Sizes are
MiB (as AWS stores them), durations are seconds.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from flowbatch.lang.diagnostics import Span

ParamValue = str | int | float | bool

MAX_ARRAY_SIZE = 10_000
MIN_ARRAY_SIZE = 2
MAX_DEPENDENCIES = 20
MAX_ATTEMPTS = 10
MAX_RETRY_RULES = 5


def frozen_map(items: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """A read-only copy of a str->str mapping, sorted by key so that output is stable."""
    if not items:
        return _EMPTY  # most jobs have no env, tags or parameters: one shared, read-only
    return MappingProxyType(dict(sorted(items.items())))


_EMPTY: Mapping[str, str] = MappingProxyType({})


class DepKind(enum.Enum):
    """How a job waits for another (AWS Batch's dependency types)."""

    WHOLE = "whole"  # every child of the dependency succeeded ("end-to-end")
    ELEMENT = "element"  # one child of an array (AWS `jobId:7`)
    N_TO_N = "n_to_n"  # child i waits for the dependency's child i


@dataclass(frozen=True, slots=True, kw_only=True)
class Dependency:
    """One entry of a job's `after`: the whole of `job`, one element of it, or `n_to_n`."""

    job: str
    kind: DepKind = DepKind.WHOLE
    index: int | None = None  # only for ELEMENT
    span: Span | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        if self.kind is DepKind.ELEMENT:
            return f"{self.job}[{self.index}]"
        if self.kind is DepKind.N_TO_N:
            return f"n_to_n({self.job})"
        return self.job


def pattern_matches(pattern: str, value: str) -> bool:
    """AWS's evaluate_on_exit matching: exact, or by prefix when the pattern ends in `*`."""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryRule:
    """One `evaluate_on_exit` entry; every given pattern must match (AWS)."""

    action: Literal["retry", "exit"]
    on_exit_code: str | None = None
    on_status_reason: str | None = None
    on_reason: str | None = None

    def matches(self, exit_code: int | None, status_reason: str, reason: str) -> bool:
        if self.on_exit_code is not None and (
            exit_code is None or not pattern_matches(self.on_exit_code, str(exit_code))
        ):
            return False
        if self.on_status_reason is not None and not pattern_matches(
            self.on_status_reason, status_reason
        ):
            return False
        return self.on_reason is None or pattern_matches(self.on_reason, reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryStrategy:
    """A job's `retry`: how many attempts, which failures to retry, the backoff."""

    attempts: int = 1
    rules: tuple[RetryRule, ...] = ()
    backoff: float | None = None  # seconds before attempt 2, doubled for each later one

    def should_retry(self, exit_code: int | None, status_reason: str, reason: str = "") -> bool:
        """AWS semantics: the first matching rule wins; no rule matching means retry."""
        for rule in self.rules:
            if rule.matches(exit_code, status_reason, reason):
                return rule.action == "retry"
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Host:
    """One machine of a compute environment, with the capacity jobs may use on it.

    A local environment has one host (this machine); a SLURM environment has one
    virtual host whose capacity is `max_vcpus` (SLURM places jobs on its own nodes);
    an SSH environment has the hosts it lists.
    """

    name: str  # unique within its compute environment
    vcpus: int
    memory: int  # MiB
    gpus: int = 0
    address: str | None = None  # ssh: host name or IP
    port: int | None = None  # ssh
    user: str | None = None  # ssh


@dataclass(frozen=True, slots=True, kw_only=True)
class ComputeEnv:
    """A compute environment: where jobs run and how much they may use at once."""

    name: str
    type: str = "local"  # "local", "ssh", "slurm"
    vcpus: int  # capacity this environment may use (max_vcpus for slurm)
    memory: int  # MiB
    gpus: int = 0
    placement: Literal["binpack", "exclusive"] = "binpack"
    managed: bool = True
    spot: bool = False
    bid_percentage: int | None = None
    interruption_rate: float = 0.0  # chance that a spot attempt is interrupted (local only)
    # Type-specific settings, as written: `hosts` for ssh, `partition` for slurm,
    # `runtime` for containers, and so on. Values are str, int, float, bool or lists.
    options: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    hosts: tuple[Host, ...] = ()  # filled by analyze; see Host
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Queue:
    """A job queue: its priority and the compute environments it places jobs on, in order."""

    name: str
    priority: int = 1
    compute: tuple[str, ...] = ("local",)
    state: Literal["enabled", "disabled"] = "enabled"
    span: Span | None = field(default=None, compare=False, repr=False)


class Argv(tuple[str, ...]):
    """A command that is no template: its arguments run as they are. A SubmitJob's
    command is one (AWS Batch has no templates, and its `Ref::` placeholders are filled
    in when the job is submitted): `lang.template.render_command` returns it unchanged,
    so that a `{{`, a `{#` (`${#x}` in a shell's script) or an unresolved `Ref::` in it
    means what it means on AWS."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """A job as it will be submitted. `command` is still a template: the runner renders
    it once per job or array child (see `flowbatch.lang.template`)."""

    name: str
    command: str | tuple[str, ...]  # a str runs under /bin/sh -c; a tuple runs directly
    image: str | None = None
    vcpus: float = 1
    memory: int = 1024  # MiB
    gpus: int = 0
    timeout: float | None = None  # seconds, per attempt
    retry: RetryStrategy = RetryStrategy()
    env: Mapping[str, str] = field(default_factory=frozen_map)
    # Variables of the runner's environment the job gets, by name; their values are read
    # when the run starts and never stored (see docs/language.md, "Environment").
    env_from_host: tuple[str, ...] = ()
    parameters: Mapping[str, str] = field(default_factory=frozen_map)
    queue: str = "default"
    priority: int = 0
    share: str | None = None
    tags: Mapping[str, str] = field(default_factory=frozen_map)
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    array_size: int | None = None  # None for a single job
    sequential: bool = False
    after: tuple[Dependency, ...] = ()
    definition: str | None = None
    workdir: str = "."  # the pipeline file's directory unless told otherwise
    span: Span | None = field(default=None, compare=False, repr=False)

    @property
    def is_array(self) -> bool:
        return self.array_size is not None

    @property
    def size(self) -> int:
        """How many processes this job stands for: its array size, or 1."""
        return self.array_size or 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Pipeline:
    """A whole checked pipeline: what `analyze` returns and `compile` takes."""

    path: str
    params: Mapping[str, ParamValue]
    computes: Mapping[str, ComputeEnv]
    queues: Mapping[str, Queue]
    jobs: Mapping[str, JobSpec]  # in source order
    sources: tuple[str, ...] = ()  # every file read, the main one first


def local_compute(vcpus: int, memory: int) -> ComputeEnv:
    """The implicit `compute local`: this machine's CPUs and memory."""
    host = Host(name="localhost", vcpus=vcpus, memory=memory)
    return ComputeEnv(name="local", type="local", vcpus=vcpus, memory=memory, hosts=(host,))


DEFAULT_QUEUE = Queue(name="default", priority=1, compute=("local",))


def dump(pipeline: Pipeline) -> str:
    """A stable, readable text of the whole model (for golden tests and debugging):
    JSON with sorted keys, spans left out, enums as their values."""
    import dataclasses
    import json

    def plain(value: object) -> object:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {
                f.name: plain(getattr(value, f.name))
                for f in dataclasses.fields(value)
                if f.name != "span"
            }
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    return json.dumps(plain(pipeline), indent=2, sort_keys=True) + "\n"
