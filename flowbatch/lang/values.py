"""Attribute values: turning what the user wrote into typed values, or a located error.

Each `expect_*` function takes a syntax value (with `params.NAME` already resolved by
`resolve_params`) and returns a Python value, or raises `Invalid` carrying a FlowError
that points at the value and says what was wanted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import flowbatch.lang.syntax as s
from flowbatch.lang.diagnostics import FlowError, Span
from flowbatch.lang.model import ParamValue


class Invalid(Exception):
    """One bad value; analyze records its error and carries on with the next attribute."""

    def __init__(self, error: FlowError) -> None:
        super().__init__(error.message)
        self.error = error


class Collector:
    """The errors found so far; `check` runs one step and records its Invalid."""

    def __init__(self) -> None:
        self.errors: list[FlowError] = []

    def add(self, error: FlowError) -> None:
        self.errors.append(error)

    def report(self, what: str, span: Span | None, /, **facts: object) -> None:
        """Record the error `what` (a key of messages.MESSAGES) with its facts."""
        from flowbatch.lang.messages import flow_error  # the words, on the first error only

        self.errors.append(flow_error(what, span, **facts))


def invalid(what: str, span: Span, /, **facts: object) -> Invalid:
    """The error `what` (a key of messages.MESSAGES), to raise."""
    from flowbatch.lang.messages import flow_error  # the words, on the first error only

    return Invalid(flow_error(what, span, **facts))


def _wrong(value: s.Value, key: str, wanted: str, example: str) -> Invalid:
    return invalid(
        "wrong-type", value.span, key=key, wanted=wanted, got=s.describe(value), example=example
    )


def resolve_params(value: s.Value, params: Mapping[str, ParamValue]) -> s.Value:
    """`value` with every `params.NAME` replaced by the parameter's value (a literal
    carrying the reference's span). Raises Invalid for an unknown parameter."""
    if isinstance(value, s.Ref) and value.parts[0] == "params":
        if len(value.parts) != 2:
            raise invalid("not-a-parameter-reference", value.span, ref=value.dotted)
        name = value.parts[1]
        if name not in params:
            raise invalid("unknown-parameter", value.span, name=name, known=params)
        return literal(params[name], value.span)
    # Lists and maps are copied only when a reference inside them was replaced: most
    # hold none, and 10,000 jobs would otherwise copy 10,000 `after` lists.
    if isinstance(value, s.List):
        items = tuple(resolve_params(v, params) for v in value.items)
        if any(new is not old for new, old in zip(items, value.items, strict=True)):
            return s.List(value.span, items)
    elif isinstance(value, s.Map):
        entries = tuple(
            e if new is e.value else s.Entry(e.span, e.key, e.key_span, new)
            for e in value.entries
            for new in (resolve_params(e.value, params),)
        )
        if any(new is not old for new, old in zip(entries, value.entries, strict=True)):
            return s.Map(value.span, entries)
    return value


def literal(value: ParamValue, span: Span) -> s.Value:
    if isinstance(value, bool):
        return s.Bool(span, value)
    if isinstance(value, int | float):
        return s.Number(span, value)
    return s.Str(span, value)


def expect_str(value: s.Value, key: str) -> str:
    if isinstance(value, s.Str):
        return value.value
    raise _wrong(value, key, "a string", '"..."')


def expect_bool(value: s.Value, key: str) -> bool:
    if isinstance(value, s.Bool):
        return value.value
    raise _wrong(value, key, "`true` or `false`", "true")


def expect_number(value: s.Value, key: str, *, minimum: float = 0) -> float:
    if isinstance(value, s.Number) and not isinstance(value.value, bool):
        if value.value < minimum:
            raise invalid("below-minimum", value.span, key=key, minimum=minimum)
        return float(value.value)
    raise _wrong(value, key, "a number", "2")


def expect_int(value: s.Value, key: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, s.Number) and isinstance(value.value, int):
        if value.value < minimum or (maximum is not None and value.value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise invalid("out-of-bounds", value.span, key=key, bounds=bound, value=value.value)
        return value.value
    raise _wrong(value, key, "a whole number", "2")


def expect_size(value: s.Value, key: str) -> int:
    """A size in MiB (rounded up). A plain number is taken as MiB, as AWS does."""
    if isinstance(value, s.Size):
        mib = value.mib
    elif isinstance(value, s.Number):
        mib = float(value.value)
    else:
        raise _wrong(value, key, "a size", "2GiB")
    if mib <= 0:
        raise invalid("not-positive", value.span, key=key)
    return math.ceil(mib)


def expect_duration(value: s.Value, key: str) -> float:
    """A duration in seconds. A plain number is taken as seconds."""
    if isinstance(value, s.Duration):
        seconds = value.seconds
    elif isinstance(value, s.Number):
        seconds = float(value.value)
    else:
        raise _wrong(value, key, "a duration", "20m")
    if seconds <= 0:
        raise invalid("not-positive", value.span, key=key)
    return seconds


def expect_name(value: s.Value, key: str) -> tuple[str, Span]:
    if isinstance(value, s.Ref) and len(value.parts) == 1:
        return value.parts[0], value.span
    if isinstance(value, s.Str):  # `queue = "render"` is forgiven: the intent is plain
        return value.value, value.span
    raise _wrong(value, key, "a name", "render")


def expect_list(value: s.Value, key: str) -> tuple[s.Value, ...]:
    if isinstance(value, s.List):
        return value.items
    raise _wrong(value, key, "a list", "[a, b]")


def expect_map(value: s.Value, key: str) -> s.Map:
    if isinstance(value, s.Map):
        return value
    raise _wrong(value, key, "a map", '{ NAME = "value" }')


def expect_str_list(value: s.Value, key: str) -> tuple[str, ...]:
    """A list of strings; a single string is a list of one."""
    if isinstance(value, s.Str):
        return (value.value,)
    return tuple(expect_str(item, key) for item in expect_list(value, key))


def expect_str_map(value: s.Value, key: str) -> dict[str, str]:
    """A map whose values are strings; numbers and booleans are written as text."""
    out: dict[str, str] = {}
    for entry in expect_map(value, key).entries:
        v = entry.value
        if isinstance(v, s.Str):
            out[entry.key] = v.value
        elif isinstance(v, s.Bool):
            out[entry.key] = "true" if v.value else "false"
        elif isinstance(v, s.Number):
            out[entry.key] = str(v.value)
        else:
            raise _wrong(v, f"{key}.{entry.key}", "a string", '"value"')
    return out


def param_value(value: s.Value) -> tuple[ParamValue, str]:
    """A parameter's default and its type name: str, int, float, bool, size, duration."""
    if isinstance(value, s.Str):
        return value.value, "str"
    if isinstance(value, s.Bool):
        return value.value, "bool"
    if isinstance(value, s.Number):
        return value.value, "int" if isinstance(value.value, int) else "float"
    if isinstance(value, s.Size):
        return math.ceil(value.mib), "size"
    if isinstance(value, s.Duration):
        return value.seconds, "duration"
    raise invalid("parameter-type", value.span, got=s.describe(value))


def override_value(text: str, type_name: str) -> ParamValue | None:
    """`-p NAME=TEXT` as a value of the parameter's type, or None when TEXT is not one.
    Numbers, sizes and durations are taken exactly as the language writes them (no
    sign, exponent, `_`, space, `nan` or `inf`, at most 15 digits in a whole part): a
    value that could not be the param's default cannot override it either. A whole
    number is also a number (`-p alpha=1` gives 1.0)."""
    if type_name in ("int", "float"):
        value = s.number_value(text)
        if value is None or (type_name == "int" and not isinstance(value, int)):
            return None
        return float(value) if type_name == "float" else value
    if type_name == "bool":
        return {"true": True, "false": False}.get(text.lower())
    if type_name == "size":
        mib = s.size_mib(text)
        return math.ceil(mib) if mib is not None else None
    if type_name == "duration":
        return s.duration_seconds(text)
    return text


# A name every shell can `export` and every container runtime's env-file can carry.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def expect_env(value: s.Value, key: str) -> dict[str, str]:
    """A job's `env`: a map of strings under names a shell can export, none reserved."""
    env = expect_str_map(value, key)
    for entry in expect_map(value, key).entries:
        _env_name(entry.key, entry.key_span)
        if "\0" in env[entry.key]:
            raise invalid("env-value-nul", entry.value.span, name=entry.key)
    return env


def expect_env_names(value: s.Value, key: str) -> tuple[str, ...]:
    """The names of the runner's variables a job gets; duplicates (from definitions
    adding to each other) are kept once, in the order first given."""
    names: dict[str, None] = {}
    items = value.items if isinstance(value, s.List) else (value,)
    for item, name in zip(items, expect_str_list(value, key), strict=True):
        _env_name(name, item.span)
        names.setdefault(name, None)
    return tuple(names)


def _env_name(name: str, span: Span) -> None:
    # fb_: the shell variables of the ssh wrapper and SLURM scripts
    if name.startswith(("AWS_BATCH", "FLOWBATCH_", "fb_")):
        raise invalid("reserved-env", span, name=name)
    if not ENV_NAME.fullmatch(name):
        raise invalid("env-name", span, name=name)
