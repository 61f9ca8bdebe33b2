"""Jobs as AWS Batch's API speaks of them: a SubmitJob request made a JobSpec, and a
job made a JobDetail (ListJobs and its JobSummary are `listing`'s).

Everything here is pure (no I/O, no clock): the service hands in the request, the
registered job definition (the dict DescribeJobDefinitions returns), the records the
store read, and a `lookup` of other jobs' array sizes. Bad input raises
`ClientException` with AWS's wording where AWS's is known (`Error executing request,
Exception : ...`).

A SubmitJob's command is an argument list run without a shell, as on AWS. `Ref::name`
in any of its arguments is replaced by the parameter `name` (the job's over the
definition's) and left as it is when there is no such parameter (AWS). It is filled
in here, once, and the command handed on as an `Argv`, which the runner runs as it
is: nothing in a SubmitJob is a Jinja template. Where the command hands an argument
to a shell as its script (`["sh", "-c", SCRIPT]`), a parameter's value is inserted
shell-quoted, so that it stays one word and never becomes shell syntax (AWS inserts
it as it is); a placeholder where quoting cannot protect it (inside the script's own
quotes, say) and one in another interpreter's program (`python3 -c`) are refused, as
`flowbatch validate` refuses them in a pipeline.
"""

from __future__ import annotations

import enum
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from flowbatch.lang.model import (
    MAX_ARRAY_SIZE,
    MAX_ATTEMPTS,
    MAX_DEPENDENCIES,
    MAX_RETRY_RULES,
    MIN_ARRAY_SIZE,
    Argv,
    Dependency,
    DepKind,
    JobSpec,
    RetryRule,
    RetryStrategy,
    frozen_map,
)
from flowbatch.lang.template import REF, misplaced, program_index, script_index
from flowbatch.run.records import AttemptRecord, JobRecord
from flowbatch.run.state import JobState
from flowbatch.server import rules
from flowbatch.server.errors import ClientException

__all__ = [
    "MISSING",
    "Lookup",
    "Missing",
    "check_submit",
    "command_of",
    "job_detail",
    "job_spec",
    "log_stream_name",
    "parse_log_stream",
]


class Missing(enum.Enum):
    """What a `lookup` returns for a job id the service does not know."""

    MISSING = "missing"


MISSING: Final = Missing.MISSING

# A job id -> its array size, None for a job that is no array, MISSING for no such job.
Lookup = Callable[[str], int | Missing | None]

_AWS: Final = "Error executing request, Exception : "

DEFAULT_VCPUS: Final = 1.0
DEFAULT_MEMORY: Final = 2048  # MiB
MIN_TIMEOUT: Final = 60  # seconds: AWS's minimum attemptDurationSeconds
MAX_PRIORITY: Final = 9999
MAX_PATTERN: Final = 512
MAX_RESOURCE: Final = 2**31 - 1  # vCPUs, MiB or GPUs of one job
MIN_VCPU: Final = 0.25  # as in a job definition (Fargate's least)
RESERVED_ENV: Final = "AWS_BATCH"

# What AWS's evaluateOnExit patterns may hold: an exit code's digits, or a reason's
# letters, digits, white space, periods and colons; either may end in one `*`.
_EXIT_CODE_PATTERN: Final = re.compile(r"[0-9]*\*?")
_REASON_PATTERN: Final = re.compile(r"[A-Za-z0-9.: \t]*\*?")

# AWS's jobName: up to 128 letters, digits, hyphens and underscores, the first
# alphanumeric.
_JOB_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")

# SubmitJob members that are another kind of job than a container's.
_UNSUPPORTED_MEMBERS: Final = (
    "nodeOverrides",
    "eksPropertiesOverride",
    "ecsPropertiesOverride",
    "consumableResourcePropertiesOverride",
)
_UNSUPPORTED_PROPERTIES: Final = ("nodeProperties", "eksProperties", "ecsProperties")


def _client(text: str) -> ClientException:
    return ClientException(_AWS + text)


# -- SubmitJob -> JobSpec ---------------------------------------------------------------


def job_spec(
    request: Mapping[str, Any],
    definition: Mapping[str, Any],
    *,
    job_id: str,
    queue: str,
    workdir: str,
    lookup: Lookup,
) -> JobSpec:
    """The job a SubmitJob `request` (validated against botocore's input shape) asks for,
    made from the registered `definition` (as DescribeJobDefinitions returns it):
    `name` is `job_id`, `queue` the queue's name, `workdir` where it runs. `lookup`
    tells the array size of each job it depends on. Raises ClientException for what
    AWS refuses (and for what flowbatch cannot run, saying so)."""
    _check_supported(request, definition)
    if not _JOB_NAME.fullmatch(str(request.get("jobName", ""))):
        raise _client("Job name should match valid pattern")
    props: Mapping[str, Any] = definition.get("containerProperties") or {}
    overrides: Mapping[str, Any] = request.get("containerOverrides") or {}
    array_size = _array_size(request)
    after, sequential = _dependencies(request.get("dependsOn") or (), job_id, array_size, lookup)
    vcpus, memory, gpus = _resources(props, overrides)
    timeout = _timeout(request, definition)
    return JobSpec(
        name=job_id,
        command=command_of(request, definition),
        image=props.get("image") or None,
        vcpus=vcpus,
        memory=memory,
        gpus=gpus,
        timeout=None if timeout is None else float(timeout),
        retry=_retry(_retry_strategy(request, definition)),
        env=frozen_map(_environment(props, overrides)),
        parameters=frozen_map(_parameters(request, definition)),
        queue=queue,
        priority=_priority(request, definition),
        share=request.get("shareIdentifier"),
        tags=frozen_map(_spec_tags(request, definition)),
        array_size=array_size,
        sequential=sequential,
        after=after,
        definition=_definition_label(definition),
        workdir=workdir,
    )


def check_submit(request: Mapping[str, Any]) -> None:
    """Rules of a SubmitJob's own members that are checked when it is received, before
    `job_spec`: rules added after requests were kept without them. A kept request is
    made a job again at every restart and described by every DescribeJobs of it, so
    `job_spec` and `job_detail` must never refuse one they accepted once; these are
    checked here, once, instead."""
    overrides: Mapping[str, Any] = request.get("containerOverrides") or {}
    for item in overrides.get("environment") or ():
        name = str(item.get("name") or "")
        if "=" in name:
            # No process can be given it (the job failed as it started, an "executor
            # error"): `NAME=value` is how an environment is written.
            raise _client(f"Environment variable name {name} cannot contain '='")
    for kind, text in _requirements(
        overrides.get("resourceRequirements"), "containerOverrides"
    ).items():
        value = _number(kind, text, 0)
        if value > MAX_RESOURCE:
            # The JobDetail's `vcpus` and `memory` are 32-bit integers in AWS's model;
            # the store's are 64-bit, and a larger one was a 500 once it was written.
            raise _client(f"{kind} must be at most {MAX_RESOURCE}, got {value:g}")
        if kind == "VCPU" and value < MIN_VCPU:
            # The least of a definition's and of the language's: 1e-300 vCPU put any
            # number of jobs at once on an environment of two.
            raise _client(f"VCPU must be at least {MIN_VCPU:g}, got {value:g}")
    rules.checked_tags({}, request.get("tags") or {})


def _check_supported(request: Mapping[str, Any], definition: Mapping[str, Any]) -> None:
    for member in _UNSUPPORTED_MEMBERS:
        if request.get(member):
            raise ClientException(f"flowbatch server does not support SubmitJob's `{member}`")
    kind = definition.get("type", "container")
    if kind != "container" or any(definition.get(p) for p in _UNSUPPORTED_PROPERTIES):
        name = _definition_label(definition)
        raise ClientException(
            f"flowbatch server runs container jobs only: job definition {name} is of type"
            f" {kind}" + ("" if kind != "container" else " with properties it cannot run")
        )


def _definition_label(definition: Mapping[str, Any]) -> str:
    name = str(definition.get("jobDefinitionName", ""))
    revision = definition.get("revision")
    return name if revision is None else f"{name}:{revision}"


def _parameters(request: Mapping[str, Any], definition: Mapping[str, Any]) -> dict[str, str]:
    return {**(definition.get("parameters") or {}), **(request.get("parameters") or {})}


def command_of(request: Mapping[str, Any], definition: Mapping[str, Any]) -> Argv:
    """The arguments the job runs: `containerOverrides.command`, else the definition's
    `containerProperties.command`, with `Ref::` placeholders filled in (see the module's
    docstring). ClientException for no command at all, an empty argument (AWS), or a
    placeholder where its value would be code."""
    overrides = request.get("containerOverrides") or {}
    command = overrides.get("command") or (definition.get("containerProperties") or {}).get(
        "command"
    )
    if not command:
        raise ClientException(
            "flowbatch server needs a command: neither containerOverrides.command nor the"
            f" job definition {_definition_label(definition)} gives one (an image's own"
            " CMD is not run)"
        )
    argv = tuple(str(arg) for arg in command)
    if any(arg == "" for arg in argv):
        raise _client("Command field cannot have empty strings")
    filled = _fill(argv, _parameters(request, definition))
    if any("\0" in arg for arg in filled):
        raise ClientException(_NUL.format(what="the command"))
    return filled


# exec takes no argument and no variable holding one.
_NUL: Final = "{what} holds a NUL character, which no program can receive"


def _fill(argv: tuple[str, ...], parameters: Mapping[str, str]) -> Argv:
    if not any("Ref::" in arg for arg in argv):
        return Argv(argv)
    # Which argument a shell (or another interpreter) runs is read from the command as
    # it will run: `["Ref::shell", "-c", ...]` with shell=sh runs a shell too.
    filled = tuple(_substitute(arg, parameters, shell=False) for arg in argv)
    script = script_index(filled)
    program = program_index(filled)
    out = []
    for k, arg in enumerate(argv):
        if k == script:
            _refuse_misplaced(arg, parameters)
        elif program is not None and k == program[0]:
            found = [m.group() for m in REF.finditer(arg) if m.group(1) in parameters]
            if found:
                raise ClientException(
                    f"command argument {k} is the program of `{program[1]}`, and {found[0]}"
                    " in it would be run as code: pass the value as an argument after the"
                    " program and read it there"
                )
        out.append(_substitute(arg, parameters, shell=k == script))
    return Argv(out)


def _substitute(text: str, parameters: Mapping[str, str], *, shell: bool) -> str:
    def value(m: re.Match[str]) -> str:
        if m.group(1) not in parameters:
            return m.group()  # AWS leaves a placeholder with no parameter as it is
        found = str(parameters[m.group(1)])
        return shlex.quote(found) if shell else found

    return REF.sub(value, text)


def _refuse_misplaced(script: str, parameters: Mapping[str, str]) -> None:
    # The check reads Jinja's tags as templates; a SubmitJob's script has none, so its
    # `{{`, `{%` and `{#` are made plain text of the same length first (the shell reads
    # `${Xx}` where it read `${#x}`: the quoting around each placeholder is unchanged).
    plain = re.sub(r"\{[{%#]", "{X", script)
    for m in misplaced(plain):
        name = m.text.removeprefix("Ref::")
        if m.text.startswith("Ref::") and name in parameters:
            raise ClientException(
                f"`{m.text}` is {m.where} in the command's shell script, {m.why}: {m.hint}"
            )


def _resources(props: Mapping[str, Any], overrides: Mapping[str, Any]) -> tuple[float, int, int]:
    """vCPUs, memory (MiB) and GPUs. Per resource: the override's resourceRequirements,
    else the definition's; the legacy `vcpus`/`memory` fields count only where the
    definition has no resourceRequirements of that type (AWS ignores a legacy override
    of a resourceRequirements value), and a default of 1 vCPU and 2,048 MiB."""
    mine = _requirements(overrides.get("resourceRequirements"), "containerOverrides")
    theirs = _requirements(props.get("resourceRequirements"), "containerProperties")
    legacy = {"VCPU": "vcpus", "MEMORY": "memory"}

    def pick(kind: str) -> str | None:
        for found in (mine.get(kind), theirs.get(kind)):
            if found is not None:
                return found
        for source in (overrides, props):
            if kind in legacy and source.get(legacy[kind]) is not None:
                return str(source[legacy[kind]])
        return None

    vcpus = _number("VCPU", pick("VCPU"), DEFAULT_VCPUS)
    memory = _number("MEMORY", pick("MEMORY"), DEFAULT_MEMORY)
    gpus = _number("GPU", pick("GPU"), 0)
    if vcpus <= 0:
        raise _client(f"VCPU must be greater than 0, got {vcpus:g}")
    if memory < 4 or not float(memory).is_integer():
        raise _client(f"MEMORY must be a whole number of MiB of at least 4, got {memory:g}")
    if gpus < 0 or not float(gpus).is_integer():
        raise _client(f"GPU must be a whole number of at least 0, got {gpus:g}")
    return vcpus, int(memory), int(gpus)


def _requirements(items: Sequence[Mapping[str, Any]] | None, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ():
        kind = str(item.get("type", ""))
        if kind not in ("VCPU", "MEMORY", "GPU"):
            raise ClientException(
                f"flowbatch server does not support the resource requirement type `{kind}`"
                f" ({where}.resourceRequirements): VCPU, MEMORY and GPU are supported"
            )
        if kind in out:
            raise _client(f"{where}.resourceRequirements has {kind} more than once")
        out[kind] = str(item.get("value") or "")
    return out


def _number(kind: str, text: str | None, default: float) -> float:
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise _client(f"{kind} value must be a number, got `{text}`") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise _client(f"{kind} value must be a number, got `{text}`")
    return value


def _environment(props: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in (props, overrides):
        for item in source.get("environment") or ():
            name = item.get("name")
            if not name:
                raise _client("Environment variable name must be given")
            if str(name).startswith(RESERVED_ENV):
                raise _client(
                    f"Environment variable {name}: names starting with {RESERVED_ENV} are"
                    " reserved for variables that Batch sets"
                )
            env[str(name)] = str(item.get("value") or "")
            if "\0" in env[str(name)] or "\0" in str(name):
                raise ClientException(_NUL.format(what=f"environment variable {name}"))
    return env


def _timeout(request: Mapping[str, Any], definition: Mapping[str, Any]) -> int | None:
    for source in (request, definition):
        seconds = (source.get("timeout") or {}).get("attemptDurationSeconds")
        if seconds is not None:
            if int(seconds) < MIN_TIMEOUT:
                raise _client(
                    f"timeout.attemptDurationSeconds must be at least {MIN_TIMEOUT}, got {seconds}"
                )
            return int(seconds)
    return None


def _retry_strategy(
    request: Mapping[str, Any], definition: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    # A SubmitJob's retryStrategy replaces the definition's as a whole (AWS).
    found: Mapping[str, Any] | None = request.get("retryStrategy")
    return found if found is not None else definition.get("retryStrategy")


def _retry(strategy: Mapping[str, Any] | None) -> RetryStrategy:
    if strategy is None:
        return RetryStrategy()
    attempts = strategy.get("attempts")
    if attempts is None:
        raise _client("RetryAttempts must be provided with retry strategy")
    if not 1 <= int(attempts) <= MAX_ATTEMPTS:
        raise _client(f"Retry strategy attempts must be between 1 and {MAX_ATTEMPTS}")
    rules = strategy.get("evaluateOnExit") or ()
    if len(rules) > MAX_RETRY_RULES:
        raise _client(
            f"Retry strategy evaluateOnExit can have at most {MAX_RETRY_RULES} conditions,"
            f" got {len(rules)}"
        )
    return RetryStrategy(
        attempts=int(attempts), rules=tuple(_rule(r, i) for i, r in enumerate(rules))
    )


def _rule(rule: Mapping[str, Any], i: int) -> RetryRule:
    action = str(rule.get("action", "")).lower()
    if action not in ("retry", "exit"):
        raise _client(
            f"evaluateOnExit[{i}].action must be RETRY or EXIT, got `{rule.get('action')}`"
        )
    patterns: dict[str, str | None] = {}
    for member, pattern in (
        ("onExitCode", _EXIT_CODE_PATTERN),
        ("onStatusReason", _REASON_PATTERN),
        ("onReason", _REASON_PATTERN),
    ):
        text = rule.get(member)
        if text is not None:
            text = str(text)
            if not text or len(text) > MAX_PATTERN or not pattern.fullmatch(text):
                what = (
                    "digits"
                    if member == "onExitCode"
                    else "letters, digits, white space, periods and colons"
                )
                raise _client(
                    f"evaluateOnExit[{i}].{member} `{text}` is not a valid pattern: 1 to"
                    f" {MAX_PATTERN} {what}, optionally ending in *"
                )
        patterns[member] = text
    return RetryRule(
        action="retry" if action == "retry" else "exit",
        on_exit_code=patterns["onExitCode"],
        on_status_reason=patterns["onStatusReason"],
        on_reason=patterns["onReason"],
    )


def _array_size(request: Mapping[str, Any]) -> int | None:
    size = (request.get("arrayProperties") or {}).get("size")
    if size is None:
        return None
    if not MIN_ARRAY_SIZE <= int(size) <= MAX_ARRAY_SIZE:
        raise _client(
            f"Array size must be between {MIN_ARRAY_SIZE} and {MAX_ARRAY_SIZE}, got {size}"
        )
    return int(size)


_CHILD: Final = re.compile(r"(.+):([0-9]+)")


def _dependencies(
    depends_on: Sequence[Mapping[str, Any]],
    job_id: str,
    array_size: int | None,
    lookup: Lookup,
) -> tuple[tuple[Dependency, ...], bool]:
    """`dependsOn` as Dependencies, and whether the array runs its children one after
    another (SEQUENTIAL)."""
    if len(depends_on) > MAX_DEPENDENCIES:
        raise _client(f"Job cannot have more than {MAX_DEPENDENCIES} dependencies")
    after: dict[Dependency, None] = {}
    sequential = False
    missing: list[str] = []
    for i, dep in enumerate(depends_on):
        target = dep.get("jobId") or None
        kind = dep.get("type")
        if kind == "SEQUENTIAL":
            if target is not None and target != job_id:
                raise _client(
                    f"dependsOn[{i}]: a SEQUENTIAL dependency names no job (or the job"
                    f" itself), got {target}"
                )
            if array_size is None:
                raise _client("SEQUENTIAL dependency type is only valid for array jobs")
            sequential = True
            continue
        if target is None:
            raise _client(f"dependsOn[{i}]: jobId is required")
        child = _CHILD.fullmatch(target)
        size = MISSING if child is None else lookup(child[1])
        if child is not None and size is not MISSING:
            # `ID:N`, child N of array job ID: the scheduler knows jobs by their ids and
            # their children by index, so this is an ELEMENT dependency on ID.
            parent, index = child[1], int(child[2])
            if kind == "N_TO_N":
                raise _client(
                    f"dependsOn[{i}]: an N_TO_N dependency names an array job, not one of"
                    f" its children ({target})"
                )
            if size is None or not 0 <= index < size:
                shown = "is not an array job" if size is None else f"has {size} children"
                raise _client(f"dependsOn[{i}]: no child {index}: job {parent} {shown}")
            after[Dependency(job=parent, kind=DepKind.ELEMENT, index=index)] = None
            continue
        size = lookup(target)
        if size is MISSING:
            missing.append(target)
            continue
        if kind == "N_TO_N":
            if array_size is None or size is None or size != array_size:
                raise _client(
                    f"dependsOn[{i}]: an N_TO_N dependency needs both jobs to be array jobs"
                    f" of the same size: this job's is {_size_text(array_size)}, job"
                    f" {target}'s is {_size_text(size)}"
                )
            after[Dependency(job=target, kind=DepKind.N_TO_N)] = None
        else:
            after[Dependency(job=target)] = None
    if missing:
        raise _client(f"Job ID(s) not found: {', '.join(missing)}")
    return tuple(after), sequential


def _size_text(size: int | None) -> str:
    return "none (not an array job)" if size is None else str(size)


def _priority(request: Mapping[str, Any], definition: Mapping[str, Any]) -> int:
    found = request.get("schedulingPriorityOverride")
    if found is None:
        found = definition.get("schedulingPriority")
    if found is None:
        return 0
    if not 0 <= int(found) <= MAX_PRIORITY:
        raise _client(f"Scheduling priority must be between 0 and {MAX_PRIORITY}, got {found}")
    return int(found)


def _propagate_tags(request: Mapping[str, Any], definition: Mapping[str, Any]) -> bool:
    found = request.get("propagateTags")
    return bool(definition.get("propagateTags", False) if found is None else found)


def _spec_tags(request: Mapping[str, Any], definition: Mapping[str, Any]) -> dict[str, str]:
    # The tags the job's work carries: with propagateTags, the definition's too, the
    # job's winning where both name a key (AWS).
    own = dict(request.get("tags") or {})
    if not _propagate_tags(request, definition):
        return own
    return {**(definition.get("tags") or {}), **own}


# -- log streams ---------------------------------------------------------------------------


def log_stream_name(definition_name: str, job_id: str, attempt: int) -> str:
    """An attempt's `logStreamName`, shaped as AWS's `<definition>/default/<task id>`:
    the task id is the job's id (`:` of an array child's made `.`, which CloudWatch
    allows in a stream's name) and the attempt's number, `<job id>.<attempt>`."""
    return f"{definition_name}/default/{job_id.replace(':', '.')}.{attempt}"


_STREAM: Final = re.compile(r"([^/]+)/default/([^.:/*]+)(?:\.([0-9]+))?\.([0-9]+)")


def parse_log_stream(name: str) -> tuple[str, str, int] | None:
    """(definition name, job id, attempt) of a `log_stream_name`, or None if `name` is
    no such name."""
    m = _STREAM.fullmatch(name)
    if m is None:
        return None
    job_id = m[2] if m[3] is None else f"{m[2]}:{m[3]}"
    return m[1], job_id, int(m[4])


def _definition_name(arn_of_definition: str) -> str:
    tail = arn_of_definition.rpartition("job-definition/")[2]
    return tail.rpartition(":")[0] if ":" in tail else tail


# -- JobDetail -------------------------------------------------------------------------


def _status_summary(summary: Mapping[JobState, int] | None) -> dict[str, int]:
    return {state.value: (summary or {}).get(state, 0) for state in JobState}


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _attempt(a: AttemptRecord, stream: str) -> dict[str, Any]:
    container: dict[str, Any] = {"logStreamName": stream}
    if a.exit_code is not None:
        container["exitCode"] = a.exit_code
    if a.reason:
        container["reason"] = a.reason
    out: dict[str, Any] = {"container": container}
    for key, value in (
        ("startedAt", a.started_at),
        ("stoppedAt", a.stopped_at),
        ("statusReason", a.status_reason),
    ):
        if value is not None:
            out[key] = value
    return out


def _present(out: dict[str, Any], **members: Any) -> None:
    # AWS leaves out what a job does not have yet rather than sending null.
    out.update({k: v for k, v in members.items() if v is not None})


def job_detail(
    record: JobRecord,
    *,
    job_arn: str,
    arn_of_queue: str,
    arn_of_definition: str,
    request: Mapping[str, Any],
    definition: Mapping[str, Any],
) -> dict[str, Any]:
    """A described job (`record` with its detail) as an entry of DescribeJobs' `jobs`, a
    JobDetail: what the store recorded of it (status, times, attempts, exit code, its
    children's counts) and what it was submitted as (`request` made with `definition`,
    the revision `arn_of_definition`; `arn_of_queue` the queue's ARN). An array child
    is described with its parent's request."""
    d = record.detail
    if d is None:
        raise ValueError(f"job {record.job_id} was listed, not described: it has no detail")
    props: Mapping[str, Any] = definition.get("containerProperties") or {}
    overrides: Mapping[str, Any] = request.get("containerOverrides") or {}
    vcpus, memory, gpus = _resources(props, overrides)
    resources = [
        {"type": "VCPU", "value": _number_text(vcpus)},
        {"type": "MEMORY", "value": str(memory)},
    ]
    if gpus:
        resources.append({"type": "GPU", "value": str(gpus)})
    name = _definition_name(arn_of_definition)
    streams = [log_stream_name(name, record.job_id, n + 1) for n in range(len(d.attempts))]
    container: dict[str, Any] = {
        "command": list(command_of(request, definition)),
        "environment": [{"name": k, "value": v} for k, v in _environment(props, overrides).items()],
        "resourceRequirements": resources,
        "memory": memory,
    }
    if float(vcpus).is_integer():
        container["vcpus"] = int(vcpus)  # AWS's legacy field is an integer
    _present(
        container,
        image=props.get("image") or None,
        exitCode=record.exit_code,
        reason=d.reason or None,
        logStreamName=streams[-1] if streams else None,
    )
    strategy = _retry(_retry_strategy(request, definition))
    retry: dict[str, Any] = {"attempts": strategy.attempts}
    if strategy.rules:
        retry["evaluateOnExit"] = [_rule_json(r) for r in strategy.rules]
    out: dict[str, Any] = {
        "jobArn": job_arn,
        "jobName": record.name,
        "jobId": record.job_id,
        "jobQueue": arn_of_queue,
        "status": record.status.value,
        "jobDefinition": arn_of_definition,
        "attempts": [_attempt(a, s) for a, s in zip(d.attempts, streams, strict=True)],
        "dependsOn": _depends_on_json(record, request),
        "parameters": _parameters(request, definition),
        "container": container,
        "retryStrategy": retry,
        "propagateTags": _propagate_tags(request, definition),
        "isCancelled": d.is_cancelled,
        "isTerminated": d.is_terminated,
        "schedulingPriority": _priority(request, definition),
        "platformCapabilities": list(definition.get("platformCapabilities") or ["EC2"]),
    }
    _present(
        out,
        statusReason=record.status_reason or None,
        createdAt=record.created_at,
        startedAt=record.started_at,
        stoppedAt=record.stopped_at,
        shareIdentifier=request.get("shareIdentifier"),
        tags=dict(request.get("tags") or {}) or None,  # AWS's tag map has at least one
    )
    timeout = _timeout(request, definition)
    if timeout is not None:
        out["timeout"] = {"attemptDurationSeconds": timeout}
    if record.array_size is not None:
        array: dict[str, Any] = {
            "size": record.array_size,
            "statusSummary": _status_summary(record.status_summary),
        }
        _present(array, statusSummaryLastUpdatedAt=d.summary_updated_at)
        out["arrayProperties"] = array
    elif record.array_index is not None:
        out["arrayProperties"] = {"index": record.array_index}
    return out


def _rule_json(rule: RetryRule) -> dict[str, str]:
    out = {"action": rule.action.upper()}
    _present(
        out,
        onExitCode=rule.on_exit_code,
        onStatusReason=rule.on_status_reason,
        onReason=rule.on_reason,
    )
    return out


def _depends_on_json(record: JobRecord, request: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A job's dependsOn as submitted; an array child's as the store derives it (its
    N_TO_N partners, and in a SEQUENTIAL array the child before it)."""
    if record.array_index is not None:
        assert record.detail is not None
        return [dict(dep) for dep in record.detail.depends_on]
    out = []
    for dep in request.get("dependsOn") or ():
        entry: dict[str, Any] = {}
        _present(entry, jobId=dep.get("jobId") or None, type=dep.get("type"))
        out.append(entry)
    return out
