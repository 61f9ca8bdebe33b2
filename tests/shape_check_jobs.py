"""Checks a dict against a shape of botocore's own AWS Batch service model.

`problems(value, "JobDetail")` lists where `value` does not fit: a key that is no
member of its structure, a value of the wrong type, a required member missing, a
value outside its enum, a list or map over its bounds. An empty list means botocore
would read it as AWS's answer.
"""

from __future__ import annotations

import functools
from typing import Any

import botocore.loaders

# Members the model calls required that AWS itself leaves out until they exist: a
# JobDetail has no startedAt before its job starts (DescribeJobs of a queued job).
NOT_YET: dict[str, frozenset[str]] = {"JobDetail": frozenset({"startedAt"})}


@functools.cache
def shapes() -> dict[str, dict[str, Any]]:
    model = botocore.loaders.Loader().load_service_model("batch", "service-2")
    found: dict[str, dict[str, Any]] = model["shapes"]
    return found


def problems(value: Any, shape: str, path: str = "") -> list[str]:
    """Where `value` does not fit `shape` of the Batch model (empty: it fits)."""
    spec = shapes()[shape]
    kind = spec["type"]
    where = path or shape
    if value is None:
        return [f"{where}: null (AWS leaves a member out rather than sending null)"]
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not a structure ({shape})"]
        out = []
        for member in spec.get("required", ()):
            if member not in value and member not in NOT_YET.get(shape, ()):
                out.append(f"{where}.{member}: required by {shape}, missing")
        for key, item in value.items():
            if key not in spec["members"]:
                out.append(f"{where}.{key}: not a member of {shape}")
            else:
                out += problems(item, spec["members"][key]["shape"], f"{where}.{key}")
        return out
    if kind == "list":
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__}, not a list"]
        out = _bounds(len(value), spec, where)
        for i, item in enumerate(value):
            out += problems(item, spec["member"]["shape"], f"{where}[{i}]")
        return out
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not a map"]
        out = _bounds(len(value), spec, where)
        for key, item in value.items():
            out += problems(key, spec["key"]["shape"], f"{where} key {key!r}")
            out += problems(item, spec["value"]["shape"], f"{where}[{key!r}]")
        return out
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where}: {type(value).__name__}, not a string"]
        if "enum" in spec and value not in spec["enum"]:
            return [f"{where}: {value!r} is not one of {spec['enum']}"]
        return _bounds(len(value), spec, where)
    if kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{where}: {value!r} is not an integer"]
        return []
    if kind in ("float", "double"):
        if not isinstance(value, int | float) or isinstance(value, bool):
            return [f"{where}: {value!r} is not a number"]
        return []
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: {value!r} is not a boolean"]
    return [f"{where}: the check does not know shapes of type {kind}"]


def _bounds(size: int, spec: dict[str, Any], where: str) -> list[str]:
    if "min" in spec and size < spec["min"]:
        return [f"{where}: {size} long, under its minimum {spec['min']}"]
    if "max" in spec and size > spec["max"]:
        return [f"{where}: {size} long, over its maximum {spec['max']}"]
    return []
