"""RegisterJobDefinition's rules: what a container job definition may say, checked as
AWS checks it, and the members of the JobDefinition it becomes.

The submit path (`jobs`) checks the combination of a definition and a job's overrides;
this checks what can be told from the definition alone, so that a bad definition is
refused when it is registered rather than when its first job is submitted.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any, Final

from flowbatch.server.errors import ClientException

MAX_ATTEMPTS: Final = 10
MAX_RULES: Final = 5
MIN_TIMEOUT: Final = 60  # seconds, AWS's least attemptDurationSeconds
MIN_MEMORY: Final = 4  # MiB, AWS's least for a job
MIN_VCPU: Final = 0.25  # Fargate's least; flowbatch runs fractions anywhere
MAX_SCHEDULING_PRIORITY: Final = 9999
MAX_RESOURCE: Final = 2**31 - 1  # vCPUs, MiB or GPUs: AWS's model has 32-bit integers
# evaluateOnExit patterns, as AWS documents them: up to 512 characters, `*` only last.
_EXIT_CODE: Final = re.compile(r"[0-9]*\*?")
_REASON: Final = re.compile(r"[A-Za-z0-9.: ]*\*?")
_PATTERN_MAX: Final = 512
# Members flowbatch cannot honour; refused rather than silently ignored.
_UNSUPPORTED: Final = {
    "nodeProperties": "multi-node parallel jobs",
    "eksProperties": "jobs on EKS",
    "ecsProperties": "ECS task properties",
    "consumableResourceProperties": "consumable resources",
}
_OPTIONAL: Final = ("retryStrategy", "timeout", "propagateTags", "platformCapabilities")


def checked(params: Mapping[str, Any]) -> dict[str, Any]:
    """The JobDefinition members (all but name, ARN, revision, status and tags) of a
    valid RegisterJobDefinition request; ClientException naming the member otherwise."""
    if params["type"] != "container":
        raise ClientException(
            f"type: flowbatch server does not support {params['type']} job definitions"
        )
    for member, what in _UNSUPPORTED.items():
        if params.get(member):
            raise ClientException(f"{member}: flowbatch server does not support {what}")
    container = params.get("containerProperties")
    if container is None:
        raise ClientException("containerProperties: required for a container job definition")
    _check_container(container)
    if "retryStrategy" in params:
        _check_retry(params["retryStrategy"])
    timeout = params.get("timeout", {}).get("attemptDurationSeconds")
    if timeout is not None and timeout < MIN_TIMEOUT:
        raise ClientException(
            f"timeout.attemptDurationSeconds: the minimum is {MIN_TIMEOUT} seconds, not {timeout}"
        )
    body: dict[str, Any] = {
        "type": "container",
        "containerOrchestrationType": "ECS",
        "parameters": dict(params.get("parameters") or {}),
        "containerProperties": copy.deepcopy(dict(container)),
    }
    if "schedulingPriority" in params:
        priority = params["schedulingPriority"]
        if not 0 <= priority <= MAX_SCHEDULING_PRIORITY:
            raise ClientException(
                f"schedulingPriority must be between 0 and {MAX_SCHEDULING_PRIORITY},"
                f" not {priority}"
            )
        body["schedulingPriority"] = priority
    for member in _OPTIONAL:
        if member in params:
            body[member] = copy.deepcopy(params[member])
    for rule in body.get("retryStrategy", {}).get("evaluateOnExit") or ():
        rule["action"] = rule["action"].upper()  # AWS takes any case, and shows the enum's
    return body


def _check_container(container: Mapping[str, Any]) -> None:
    if container.get("secrets"):
        raise ClientException(
            "containerProperties.secrets: flowbatch server does not support secrets"
        )
    for variable in container.get("environment") or ():
        name = variable.get("name", "")
        if "=" in name:
            raise ClientException(
                f"containerProperties.environment: {name}: a name cannot contain '='"
            )
        if name.startswith("AWS_BATCH"):
            raise ClientException(
                f"containerProperties.environment: {name}: names starting with AWS_BATCH are"
                " reserved"
            )
    for member, least in (("vcpus", 1), ("memory", MIN_MEMORY)):
        value = container.get(member)
        if value is not None and value < least:
            raise ClientException(
                f"containerProperties.{member} must be at least {least}, not {value}"
            )
    seen: set[str] = set()
    for requirement in container.get("resourceRequirements") or ():
        kind, value = requirement["type"], requirement["value"]
        if kind in seen:
            raise ClientException(f"containerProperties.resourceRequirements: {kind} given twice")
        seen.add(kind)
        _check_requirement(kind, value)


def _check_requirement(kind: str, value: str) -> None:
    try:
        number = float(value) if kind == "VCPU" else int(value)
    except ValueError:
        number = -1
    least = 0 if kind == "GPU" else MIN_MEMORY if kind == "MEMORY" else MIN_VCPU
    # float('nan') compares false with everything: `not least <= number` refuses it too.
    if not least <= number <= MAX_RESOURCE:
        raise ClientException(
            f"containerProperties.resourceRequirements: {kind} value {value!r} must be a number"
            f" of at least {least} and at most {MAX_RESOURCE}"
        )


def _check_retry(strategy: Mapping[str, Any]) -> None:
    attempts = strategy.get("attempts")
    if attempts is not None and not 1 <= attempts <= MAX_ATTEMPTS:
        raise ClientException(
            f"retryStrategy.attempts must be between 1 and {MAX_ATTEMPTS}, not {attempts}"
        )
    rules = strategy.get("evaluateOnExit") or ()
    if len(rules) > MAX_RULES:
        raise ClientException(
            f"retryStrategy.evaluateOnExit: at most {MAX_RULES} rules, not {len(rules)}"
        )
    for rule in rules:
        if str(rule["action"]).upper() not in ("RETRY", "EXIT"):
            raise ClientException(
                f"retryStrategy.evaluateOnExit.action must be RETRY or EXIT, not {rule['action']}"
            )
        for member, pattern in (("onExitCode", _EXIT_CODE), ("onReason", _REASON),
                                ("onStatusReason", _REASON)):  # fmt: skip
            value = rule.get(member)
            if value is not None and (len(value) > _PATTERN_MAX or not pattern.fullmatch(value)):
                raise ClientException(
                    f"retryStrategy.evaluateOnExit.{member}: {value!r} is not a valid pattern"
                )
