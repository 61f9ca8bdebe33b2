"""Syntax to meaning: resolve names, apply defaults and inheritance, check everything
that can be checked before anything runs, and build the frozen `model.Pipeline`.

Errors are collected rather than raised one at a time, so that a file with several
mistakes shows them all; an attribute whose value is bad is left out and checking goes
on. Jobs are built in `jobs.py`; this module handles the file as a whole: params,
compute environments, queues, definitions and names.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import flowbatch.lang.syntax as s
from flowbatch.lang.aws_limits import AwsTarget
from flowbatch.lang.computes import Machine, build_computes, resolved_entries
from flowbatch.lang.diagnostics import FlowError
from flowbatch.lang.jobs import JobBuilder
from flowbatch.lang.model import DEFAULT_QUEUE, ParamValue, Pipeline, Queue
from flowbatch.lang.values import (
    Collector,
    Invalid,
    expect_int,
    expect_list,
    expect_name,
    expect_str,
    invalid,
    override_value,
    param_value,
)

QUEUE_KEYS = {"priority", "compute", "state"}
# `definition a: b` chains longer than this are an error: merging walks them recursively.
MAX_DEFINITION_DEPTH = 100


def analyze(
    files: Sequence[s.File],
    *,
    overrides: Mapping[str, str] | None = None,
    machine: Machine,
    aws: AwsTarget | None = None,
) -> Pipeline:
    """The checked pipeline of `files` (the main file first, then its imports); the
    jobs `aws` aims at AWS Batch are held to its limits too (`aws_limits`).

    Raises FlowError carrying every error found.
    """
    errors = Collector()
    main = files[0]
    blocks = _collect(files, errors)
    params = _params(blocks.params, overrides or {}, errors)
    computes = build_computes(blocks.computes, params, machine, errors)
    # A compute environment that failed to build was reported; naming it is not a second
    # mistake, so queues look names up among everything declared.
    known = {*computes, *blocks.computes}
    queues = _queues(blocks.queues, known, params, errors)
    if _definitions_too_deep(blocks.definitions, errors):
        raise FlowError.many(errors.errors)
    builder = JobBuilder(
        params=params,
        definitions=blocks.definitions,
        queues=queues,
        computes=computes,
        errors=errors,
        aws=aws,
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
    """The blocks of every file of a pipeline, by kind and name."""

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
                    errors.report("imported-job", statement.name_span, name=statement.name)
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
        errors.report("defined-twice", node.name_span, what=what, name=name, first=first.span)
        return
    table[name] = node  # type: ignore[assignment]


def _definitions_too_deep(definitions: Mapping[str, s.Block], errors: Collector) -> bool:
    """Report each definition that extends a chain past MAX_DEFINITION_DEPTH. Walked
    without recursion, each definition once; cycles and unknown parents are left to
    the job builder, which reports them."""
    depth: dict[str, int] = {}
    found = False
    for name in definitions:
        path: list[s.Block] = []
        on_path: set[str] = set()
        current: str | None = name
        while current is not None and current not in depth and current not in on_path:
            block = definitions.get(current)
            if block is None:
                break
            on_path.add(current)
            path.append(block)
            current = block.parent
        level = depth.get(current, 0) if current is not None and current not in on_path else 0
        for block in reversed(path):
            level += 1
            depth[block.name] = level
            if level == MAX_DEFINITION_DEPTH + 1:
                found = True
                errors.report(
                    "definitions-too-deep",
                    block.parent_span or block.name_span,
                    limit=MAX_DEFINITION_DEPTH,
                )
    return found


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
            converted = override_value(overrides[name], type_name)
            if converted is None:
                errors.report(
                    "override-type",
                    param.value.span,
                    param=name,
                    value=_shown(overrides[name]),
                    wanted=_TYPE_WORDS[type_name],
                    example=_example(param),
                    as_in_files=type_name in _WRITTEN_AS_IN_FILES,
                )
                converted = value  # keep the default, so later checks don't echo this one
            value = converted
        values[name] = value
    for name in overrides:
        if name not in declared:
            errors.report("unknown-override", None, name=name, known=declared)
    return values


_TYPE_WORDS = {
    "str": "a string",
    "int": "a whole number",
    "float": "a number",
    "bool": "a boolean (true or false)",
    "size": "a size",
    "duration": "a duration",
}


_WRITTEN_AS_IN_FILES = {"int", "float", "size", "duration"}


def _shown(text: str) -> str:
    """A `-p` value as an error quotes it: control characters made visible, and cut
    short when long (a value of 5,000 digits is not worth repeating)."""
    visible = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:41])
    return visible[:40] + "…" if len(text) > 40 else visible


def _example(param: s.Param) -> str:
    line = param.span.source.line(param.value.span.line)
    return line[param.value.span.col - 1 : param.value.span.end_col - 1].strip('"')


def _queues(
    blocks: Mapping[str, s.Block],
    computes: Collection[str],
    params: Mapping[str, ParamValue],
    errors: Collector,
) -> dict[str, Queue]:
    queues = {"default": DEFAULT_QUEUE}
    for name, block in blocks.items():
        values = resolved_entries(block, QUEUE_KEYS, "queue", params, errors)
        try:
            queues[name] = _queue(block, values, computes, errors)
        except Invalid as bad:
            errors.add(bad.error)
    return queues


def _queue(
    block: s.Block,
    values: Mapping[str, s.Value],
    computes: Collection[str],
    errors: Collector,
) -> Queue:
    compute: tuple[str, ...] = ("local",)
    if "compute" in values:
        items = expect_list(values["compute"], "compute")
        if not 1 <= len(items) <= 3:
            raise invalid("queue-compute-count", values["compute"].span, count=len(items))
        names: list[str] = []
        for item in items:
            name, span = expect_name(item, "compute")
            if name not in computes:
                errors.report("unknown-compute", span, name=name, known=computes)
            names.append(name)
        compute = tuple(names)
    state = expect_str(values["state"], "state") if "state" in values else "enabled"
    if state not in ("enabled", "disabled"):
        raise invalid("queue-state", values["state"].span, state=state)
    return Queue(
        name=block.name,
        priority=expect_int(values["priority"], "priority") if "priority" in values else 1,
        compute=compute,
        state=state,  # type: ignore[arg-type]
        span=block.name_span.copy(),
    )
