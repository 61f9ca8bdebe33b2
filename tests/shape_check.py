"""Checks a response dict against an output shape of botocore's Batch model: every
member is one the shape has, of its type, recursively, and every required member is
there. (The app's model validates inputs; this is the tests' check of outputs.)"""

from __future__ import annotations

import functools
from typing import Any

import botocore.loaders
import botocore.model


@functools.cache
def batch_model() -> botocore.model.ServiceModel:
    loader = botocore.loaders.Loader()
    return botocore.model.ServiceModel(loader.load_service_model("batch", "service-2"), "batch")


def output_problems(operation: str, value: Any) -> list[str]:
    """What is wrong with `value` as the output of `operation` (empty when nothing)."""
    shape = batch_model().operation_model(operation).output_shape
    if shape is None:
        return [] if value in ({}, None) else [f"{operation} has no output, got {value!r}"]
    return shape_problems(shape, value, operation)


def check_output(operation: str, value: Any) -> None:
    problems = output_problems(operation, value)
    assert not problems, "\n".join(problems)


def shape_problems(shape: botocore.model.Shape, value: Any, path: str) -> list[str]:
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, botocore.model.StructureShape)
        if not isinstance(value, dict):
            return [f"{path}: {shape.name} expects an object, got {type(value).__name__}"]
        problems = [
            f"{path}: required member {name} missing"
            for name in shape.required_members
            if name not in value
        ]
        for name, member_value in value.items():
            member = shape.members.get(name)
            if member is None:
                problems.append(f"{path}: {shape.name} has no member {name}")
            else:
                problems += shape_problems(member, member_value, f"{path}.{name}")
        return problems
    if kind == "list":
        assert isinstance(shape, botocore.model.ListShape)
        if not isinstance(value, list):
            return [f"{path}: {shape.name} expects a list, got {type(value).__name__}"]
        member = shape.member
        return [p for i, v in enumerate(value) for p in shape_problems(member, v, f"{path}[{i}]")]
    if kind == "map":
        assert isinstance(shape, botocore.model.MapShape)
        if not isinstance(value, dict):
            return [f"{path}: {shape.name} expects a map, got {type(value).__name__}"]
        problems = []
        for key, item in value.items():
            problems += shape_problems(shape.key, key, f"{path} key")
            problems += shape_problems(shape.value, item, f"{path}[{key!r}]")
        return problems
    return _scalar_problems(shape, value, path)


def _scalar_problems(shape: botocore.model.Shape, value: Any, path: str) -> list[str]:
    kind = shape.type_name
    if kind == "string":
        if not isinstance(value, str):
            return [f"{path}: expects a string, got {value!r}"]
        enum = shape.enum
        if enum and value not in enum:
            return [f"{path}: {value!r} is not one of {', '.join(enum)}"]
        return []
    if kind in ("integer", "long"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind in ("float", "double", "timestamp"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "blob":
        ok = isinstance(value, str | bytes)
    else:
        return [f"{path}: unknown shape type {kind}"]
    return [] if ok else [f"{path}: expects {kind}, got {value!r}"]
