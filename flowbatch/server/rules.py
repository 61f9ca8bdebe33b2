"""The rules of the catalog's API that need no state: names, tags, vCPU ranges,
members flowbatch refuses, and Describe* pages with their opaque `nextToken`s.

Each check raises `ClientException` with a message naming the member.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from flowbatch.server.errors import ClientException

Body = dict[str, Any]
Params = Mapping[str, Any]

NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
# Where the registry keeps private facts in a catalog body; never shown by the API.
PRIVATE: Final = "_flowbatch"
PAGE: Final = 100  # AWS's default and largest page of a Describe* call
MAX_TAGS: Final = 50  # per resource, AWS's limit
# ComputeResourceUpdate members that ComputeResource also has (same shape), kept in the
# environment's description when an update gives them.
UPDATABLE: Final = (
    "minvCpus", "maxvCpus", "desiredvCpus", "subnets", "securityGroupIds",
    "allocationStrategy", "instanceTypes", "ec2KeyPair", "instanceRole", "tags",
    "placementGroup", "bidPercentage", "launchTemplate", "ec2Configuration", "type",
    "imageId", "scalingPolicy", "capacityTags",
)  # fmt: skip


def checked_name(member: str, name: str) -> str:
    if not NAME.fullmatch(name):
        raise ClientException(
            f"{member}: {name!r} is not a valid name: up to 128 letters (uppercase and"
            " lowercase), numbers, hyphens and underscores"
        )
    return name


def checked_tags(current: Mapping[str, str], added: Mapping[str, str]) -> dict[str, str]:
    for key, value in added.items():
        if key.lower().startswith("aws:"):
            raise ClientException(f"tag key {key}: the aws: prefix is reserved for AWS use")
        if not 1 <= len(key) <= 128 or len(value) > 256:
            raise ClientException(f"tag {key}: keys are 1 to 128 characters, values up to 256")
    merged = {**current, **added}
    if len(merged) > MAX_TAGS:
        raise ClientException(f"a resource can have at most {MAX_TAGS} tags, not {len(merged)}")
    return merged


def checked_priority(priority: int) -> int:
    if priority < 0:
        raise ClientException(f"priority must be 0 or more, not {priority}")
    return priority


def checked_unmanaged(vcpus: int) -> int:
    if vcpus < 0:
        raise ClientException(f"unmanagedvCpus must be 0 or more, not {vcpus}")
    return vcpus


def checked_resources(resources: Body) -> Body:
    """ComputeResource of a new MANAGED environment: 0 <= minvCpus <= desiredvCpus <=
    maxvCpus (min defaults to 0, desired to min)."""
    resources.setdefault("minvCpus", 0)
    resources.setdefault("desiredvCpus", resources["minvCpus"])
    _check_vcpus(resources)
    return resources


def updated_resources(current: Body, update: Mapping[str, Any]) -> Body:
    resources = copy.deepcopy(current)
    if "type" in update and _kind_of(update["type"]) != _kind_of(current["type"]):
        raise ClientException(
            f"computeResources.type can't change from {current['type']} to {update['type']}"
        )
    for key in UPDATABLE:
        if key in update:
            resources[key] = copy.deepcopy(update[key])
    if "desiredvCpus" not in update:  # follows a new range rather than break it
        low, high = resources.get("minvCpus", 0), resources["maxvCpus"]
        resources["desiredvCpus"] = min(max(resources.get("desiredvCpus", low), low), high)
    _check_vcpus(resources)
    return resources


def _check_vcpus(resources: Mapping[str, Any]) -> None:
    low, desired, high = resources["minvCpus"], resources["desiredvCpus"], resources["maxvCpus"]
    if low < 0:
        raise ClientException(f"minvCpus must be 0 or more, not {low}")
    if high < low:
        raise ClientException(f"maxvCpus ({high}) must be at least minvCpus ({low})")
    if not low <= desired <= high:
        raise ClientException(
            f"desiredvCpus ({desired}) must be between minvCpus ({low}) and maxvCpus ({high})"
        )


def refuse_unsupported(params: Params, members: Sequence[str], what: str) -> None:
    for member in members:
        if params.get(member):
            raise ClientException(f"{member}: flowbatch server does not support {what}")


def refuse_queue_extras(params: Params) -> None:
    refuse_unsupported(params, ("serviceEnvironmentOrder",), "service environments")
    refuse_unsupported(params, ("jobStateTimeLimitActions",), "job state time limit actions")
    if params.get("jobQueueType") not in (None, "ECS", "ECS_FARGATE"):
        raise ClientException(
            f"jobQueueType: flowbatch server does not support {params['jobQueueType']} job queues"
        )


def _kind_of(resource_type: str) -> str:
    if resource_type in ("FARGATE", "FARGATE_SPOT"):
        return "FARGATE"
    return "EC2" if resource_type in ("EC2", "SPOT") else resource_type


def kind(detail: Mapping[str, Any]) -> str:
    """What a queue may not mix: EC2 (EC2, SPOT, UNMANAGED), Fargate, and others."""
    if detail["type"] == "UNMANAGED":
        return "EC2"
    return _kind_of(detail["computeResources"]["type"])


def enabled(detail: Mapping[str, Any]) -> bool:
    return bool(detail["state"] == "ENABLED")


def order_arns(queue: Mapping[str, Any]) -> set[str]:
    return {entry["computeEnvironment"] for entry in queue["computeEnvironmentOrder"]}


def public(body: Mapping[str, Any]) -> Body:
    """What the API shows of a body: not the private key, nor empty tags (the model's
    tag map has at least one entry)."""
    return copy.deepcopy(
        {k: v for k, v in body.items() if k != PRIVATE and not (k == "tags" and not v)}
    )


# -- pages --------------------------------------------------------------------------------
def page(
    keys: list[tuple[str | int, ...]], params: Params
) -> tuple[list[tuple[Any, ...]], str | None]:
    """One page of sorted `keys` after the request's nextToken (the last key of the
    previous page, so that a page never repeats or skips what stays), and the token of
    the next page, if any."""
    limit = params.get("maxResults")
    if limit is not None and limit < 1:
        raise ClientException(f"maxResults must be at least 1, not {limit}")
    limit = min(limit or PAGE, PAGE)
    start = 0
    token = params.get("nextToken")
    if token:
        after = _decode_token(token)
        try:
            start = next((i for i, key in enumerate(keys) if key > after), len(keys))
        except TypeError:
            # A token made up by the caller, of a name where a revision goes (a 500 once).
            raise ClientException("Invalid nextToken") from None
    page = keys[start : start + limit]
    more = start + limit < len(keys)
    return page, _encode_token(page[-1]) if more else None


def _encode_token(key: tuple[Any, ...]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_token(token: str) -> tuple[Any, ...]:
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError:
        key = None
    if not isinstance(key, list) or not all(isinstance(k, str | int) for k in key) or not key:
        raise ClientException("Invalid nextToken")
    return tuple(key)


def with_token(response: Body, token: str | None) -> Body:
    if token is not None:
        response["nextToken"] = token
    return response
