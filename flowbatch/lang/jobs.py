"""Jobs: merge each job with its chain of definitions, check its attributes, its
dependencies, its retry rules, its templates and its fit on the compute of its queue,
and build the frozen `JobSpec`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import flowbatch.lang.syntax as s
import flowbatch.lang.template as template
from flowbatch.lang.aws_limits import AwsTarget, check_job
from flowbatch.lang.dependencies import check_dependencies, parse_after
from flowbatch.lang.diagnostics import FlowError, Kind, Span
from flowbatch.lang.model import (
    MAX_ARRAY_SIZE,
    MIN_ARRAY_SIZE,
    ComputeEnv,
    JobSpec,
    ParamValue,
    Queue,
    RetryStrategy,
    frozen_map,
)
from flowbatch.lang.retries import retry_strategy
from flowbatch.lang.template_spans import narrow, piece_span, shorten
from flowbatch.lang.values import (
    Collector,
    Invalid,
    expect_bool,
    expect_duration,
    expect_env,
    expect_env_names,
    expect_int,
    expect_name,
    expect_number,
    expect_size,
    expect_str,
    expect_str_list,
    expect_str_map,
    invalid,
    resolve_params,
)

SHARED_KEYS = {
    "command",
    "image",
    "vcpus",
    "memory",
    "gpus",
    "timeout",
    "retry",
    "env",
    "env_from_host",
    "parameters",
    "queue",
    "priority",
    "share",
    "tags",
    "inputs",
    "outputs",
    "workdir",
}
JOB_ONLY_KEYS = {"array", "sequential", "after"}
# Maps that a child definition or job merges key by key instead of replacing.
MERGED_KEYS = {"retry", "env", "tags", "parameters"}
# Lists that a child definition or job adds to instead of replacing (inherited like `env`).
UNION_KEYS = {"env_from_host"}

_T = TypeVar("_T")
# Frozen, so one serves every job without a retry strategy (10,000 jobs, 10,000 copies).
_NO_RETRY = RetryStrategy()


class JobBuilder:
    def __init__(
        self,
        *,
        params: Mapping[str, ParamValue],
        definitions: Mapping[str, s.Block],
        queues: Mapping[str, Queue],
        computes: Mapping[str, ComputeEnv],
        errors: Collector,
        aws: AwsTarget | None = None,
    ) -> None:
        self.aws = aws or AwsTarget()
        self.params = params
        self.definitions = definitions
        self.queues = queues
        self.computes = computes
        self.errors = errors
        self._merged: dict[str, dict[str, s.Entry] | None] = {}
        # Whether a template renders depends on its text and on which names exist, not
        # on the job: 10,000 jobs from one definition cost one render, not 10,000.
        self._verdicts: dict[tuple[object, ...], template.TemplateError | None] = {}
        self._misplaced: set[tuple[Span | None, int]] = set()

    def build(self, blocks: Mapping[str, s.Block]) -> dict[str, JobSpec]:
        for name, block in self.definitions.items():
            self._definition(name, block, ())
        specs: dict[str, JobSpec] = {}
        for name, block in blocks.items():
            try:
                specs[name] = self._job(block)
            except _Skip:
                pass
            except Invalid as bad:
                self.errors.add(bad.error)
        check_dependencies(blocks, specs, self.errors)
        return specs

    # -- inheritance ---------------------------------------------------------------
    def _definition(
        self, name: str, block: s.Block, chain: tuple[str, ...]
    ) -> dict[str, s.Entry] | None:
        """The definition's entries merged over its parents'; None if it is broken."""
        if name in self._merged:
            return self._merged[name]
        if name in chain:
            loop = (*chain[chain.index(name) :], name)
            self.errors.report("definition-cycle", block.parent_span or block.name_span, cycle=loop)
            self._merged[name] = None
            return None
        base = self._parent_entries(block, (*chain, name))
        merged = None if base is None else self._merge(base, block, "definition")
        self._merged[name] = merged
        return merged

    def _parent_entries(self, block: s.Block, chain: tuple[str, ...]) -> dict[str, s.Entry] | None:
        if block.parent is None:
            return {}
        parent = self.definitions.get(block.parent)
        if parent is None:
            assert block.parent_span is not None
            self.errors.report(
                "unknown-definition", block.parent_span, name=block.parent, known=self.definitions
            )
            return None
        return self._definition(block.parent, parent, chain)

    def _merge(self, base: Mapping[str, s.Entry], block: s.Block, what: str) -> dict[str, s.Entry]:
        allowed = SHARED_KEYS | JOB_ONLY_KEYS if what == "job" else SHARED_KEYS
        merged = dict(base)
        seen: set[str] = set()
        for entry in block.body.entries:
            if entry.key not in allowed:
                self.errors.report(
                    "unknown-attribute",
                    entry.key_span,
                    name=entry.key,
                    what=what,
                    block=block.name,
                    known=allowed,
                    job_only=entry.key in JOB_ONLY_KEYS,
                )
                continue
            if entry.key in seen:
                self.errors.report("attribute-set-twice", entry.key_span, name=entry.key)
                continue
            seen.add(entry.key)
            old = merged.get(entry.key)
            if (
                entry.key in MERGED_KEYS
                and old is not None
                and isinstance(old.value, s.Map)
                and isinstance(entry.value, s.Map)
            ):
                keep = tuple(e for e in old.value.entries if entry.value.get(e.key) is None)
                value = s.Map(entry.value.span, keep + entry.value.entries)
                merged[entry.key] = s.Entry(entry.span, entry.key, entry.key_span, value)
            elif entry.key in UNION_KEYS and old is not None:
                items = s.List(entry.value.span, _items(old.value) + _items(entry.value))
                merged[entry.key] = s.Entry(entry.span, entry.key, entry.key_span, items)
            else:
                merged[entry.key] = entry
        return merged

    # -- one job -------------------------------------------------------------------
    def _job(self, block: s.Block) -> JobSpec:
        base = self._parent_entries(block, ())
        if base is None:
            raise _Skip()
        before = len(self.errors.errors)
        entries = self._merge(base, block, "job")
        misspelt = len(self.errors.errors) > before
        values: dict[str, s.Value] = {}
        for key, entry in entries.items():
            try:
                values[key] = resolve_params(entry.value, self.params)
            except Invalid as bad:
                self.errors.add(bad.error)
        for key in ("inputs", "outputs"):
            if key in values:
                values[key] = _literal_params(entries[key].value, values[key])
        if "command" not in entries and misspelt:
            raise _Skip()  # most likely `command` is among the misspelt keys
        if "command" not in entries:
            raise invalid("missing-command", block.name_span, job=block.name)
        fields = _Fields(values, self.errors)
        command = fields.get("command", _command)
        array_size = fields.get("array", _array_size)
        queue = self._queue(values)
        spec = JobSpec(
            name=block.name,
            command=command if command is not None else "",
            image=fields.get("image", expect_str),
            vcpus=fields.get("vcpus", _vcpus) or 1,
            memory=fields.get("memory", expect_size) or 1024,
            gpus=fields.get("gpus", expect_int) or 0,
            timeout=fields.get("timeout", expect_duration),
            retry=fields.get("retry", retry_strategy) or _NO_RETRY,
            env=frozen_map(fields.get("env", expect_env)),
            env_from_host=fields.get("env_from_host", expect_env_names) or (),
            parameters=frozen_map(fields.get("parameters", expect_str_map)),
            queue=queue.name if queue else "default",
            priority=fields.get("priority", expect_int) or 0,
            share=fields.get("share", expect_str),
            tags=frozen_map(fields.get("tags", expect_str_map)),
            inputs=fields.get("inputs", expect_str_list) or (),
            outputs=fields.get("outputs", expect_str_list) or (),
            array_size=array_size,
            sequential=bool(fields.get("sequential", expect_bool)),
            after=fields.get("after", parse_after) or (),
            definition=block.parent,
            workdir=fields.get("workdir", expect_str) or ".",
            span=block.name_span.copy(),
        )
        if spec.sequential and spec.array_size is None:
            self.errors.report("sequential-non-array", values["sequential"].span, job=block.name)
        both = [n for n in spec.env_from_host if n in spec.env]
        if both:
            self.errors.report(
                "env-and-env-from-host", values["env_from_host"].span, name=both[0], job=block.name
            )
        # A bad `array` was reported; checking `array.*` in the command would only echo it.
        if command is not None and not ("array" in values and array_size is None):
            parts: tuple[str, ...] = (spec.command,) if isinstance(spec.command, str) else ()
            shells: tuple[bool, ...] = (True,)
            program: tuple[int, str] | None = None
            if not isinstance(spec.command, str):
                # A list runs without a shell, unless it is `["sh", "-c", SCRIPT]`.
                parts, script = spec.command, template.script_index(spec.command)
                shells = tuple(k == script for k in range(len(parts)))
                program = template.program_index(spec.command)
            inherited = block.body.get("command") is None
            self._check_templates(
                spec, parts, values.get("command"), shells, inherited=inherited, program=program
            )
            # Paths may be templates too (one file per child): rendered, never quoted.
            for key in ("inputs", "outputs"):
                paths = getattr(spec, key)
                if any("{{" in p or "{%" in p for p in paths):
                    inherited = block.body.get(key) is None
                    self._check_templates(
                        spec, paths, values.get(key), (False,) * len(paths), inherited=inherited
                    )
        if queue is not None:
            self._check_fit(spec, queue, values, block)
            if self.aws.aims(queue, self.computes):
                image = self.aws.needs_image(queue, self.computes)
                check_job(spec, entries, self.errors, image=image)
        return spec

    def _queue(self, values: Mapping[str, s.Value]) -> Queue | None:
        if "queue" not in values:
            return self.queues["default"]
        try:
            name, span = expect_name(values["queue"], "queue")
        except Invalid as bad:
            self.errors.add(bad.error)
            return None
        if name not in self.queues:
            self.errors.report("unknown-queue", span, name=name, known=self.queues)
            return None
        return self.queues[name]

    def _check_templates(
        self,
        spec: JobSpec,
        parts: tuple[str, ...],
        value: s.Value | None,
        shells: tuple[bool, ...],
        *,
        inherited: bool,
        program: tuple[int, str] | None = None,
    ) -> None:
        """`shells`: which parts a shell reads; `program`: which part an interpreter runs
        as code, and its name; `inherited`: the templates are a definition's, so the error
        says which job."""
        spans: list[Span | None] = (
            [value.span]
            if isinstance(value, s.Str)
            else [i.span for i in value.items]
            if isinstance(value, s.List)
            else [spec.span]
        )
        first = 0 if spec.is_array else None
        for k, (part, span, shell) in enumerate(zip(parts, spans, shells, strict=False)):
            if shell:
                self._check_quoting(part, span, template.misplaced(part))
            elif program is not None and k == program[0]:
                self._check_quoting(part, span, template.values_in_program(part, program[1]))
            exc = self._verdict(part, spec, first, shell)
            where = ""
            if exc is None and spec.array_size:
                # The last child too: an index used to pick from a list or a range fails
                # at the end, not at 0, and finding that at run time costs the run.
                exc = self._verdict(part, spec, spec.array_size - 1, shell)
                where = f" (for the last child, array.index = {spec.array_size - 1})"
            if exc is not None:
                at = (
                    narrow(span, exc.name)
                    if exc.offset is None
                    else piece_span(span, part, exc.offset, exc.length)
                )
                self.errors.report(
                    "template",
                    at,
                    job=spec.name,
                    inherited=inherited,
                    where=where,
                    error=exc.message,
                    name=exc.name,
                    own_hint=exc.hint,
                    is_array=spec.is_array,
                    params=tuple(self.params),
                    parameters=tuple(spec.parameters),
                )

    def _check_quoting(
        self, text: str, span: Span | None, found: tuple[template.Misplaced, ...]
    ) -> None:
        """A value the author put inside shell quotes (or backticks, a comment, a
        here-document, a program's code) would be code once inserted: an error, once
        per place."""
        for bad in found:
            at = piece_span(span, text, bad.offset, bad.length)
            key = (at, bad.offset)
            if key in self._misplaced:
                continue  # a definition's command, inherited by many jobs
            self._misplaced.add(key)
            self.errors.report(
                "template-misplaced",
                at,
                text=shorten(bad.text),
                where=bad.where,
                why=bad.why,
                hint=bad.hint,
            )

    def _verdict(
        self, text: str, spec: JobSpec, index: int | None, shell: bool
    ) -> template.TemplateError | None:
        # The job's name matters only to a template that mentions `job`.
        name = spec.name if "job" in text else ""
        key = (text, shell, index, spec.array_size, name, tuple(spec.parameters.items()))
        if key not in self._verdicts:
            ctx = template.Context(
                params=self.params, job_name=spec.name, index=index, size=spec.array_size
            )
            try:
                template.check(text, ctx, shell=shell, parameters=spec.parameters)
                self._verdicts[key] = None
            except template.TemplateError as exc:
                self._verdicts[key] = exc
        return self._verdicts[key]

    def _check_fit(
        self, spec: JobSpec, queue: Queue, values: Mapping[str, s.Value], block: s.Block
    ) -> None:
        envs = [self.computes[c] for c in queue.compute if c in self.computes]
        for env in envs:
            for host in env.hosts:
                if (
                    spec.vcpus <= host.vcpus
                    and spec.memory <= host.memory
                    and spec.gpus <= host.gpus
                ):
                    return
        if not envs:
            return
        need = f"{spec.vcpus:g} vCPU, {spec.memory} MiB, {spec.gpus} GPU"
        have = "; ".join(
            f"{env.name}: "
            + ", ".join(f"{h.vcpus} vCPU {h.memory} MiB {h.gpus} GPU" for h in env.hosts)
            for env in envs
        )
        key = next((k for k in ("vcpus", "memory", "gpus") if k in values), None)
        span = values[key].span if key else block.name_span
        self.errors.report(
            "unschedulable", span, job=spec.name, need=need, queue=queue.name, have=have
        )

    # -- dependencies ----------------------------------------------------------------


class _Skip(Invalid):
    """A job whose definition is broken; the definition's error was reported already."""

    def __init__(self) -> None:
        Exception.__init__(self, "skip")
        self.error = FlowError(Kind.UNKNOWN_NAME, "skip", None)


class _Fields:
    """Typed access to a job's values; a bad value is recorded and reads as None."""

    def __init__(self, values: Mapping[str, s.Value], errors: Collector) -> None:
        self.values, self.errors = values, errors

    def get(self, key: str, convert: Callable[[s.Value, str], _T]) -> _T | None:
        if key not in self.values:
            return None
        try:
            return convert(self.values[key], key)
        except Invalid as bad:
            self.errors.add(bad.error)
            return None


def _items(value: s.Value) -> tuple[s.Value, ...]:
    """A list's items; any other value is a list of one (checked when the job is built)."""
    return value.items if isinstance(value, s.List) else (value,)


def _literal_params(written: s.Value, resolved: s.Value) -> s.Value:
    """`inputs = [params.sample]`: a parameter's value names a file, never a pattern
    (`-p sample='*'` is the file `*`), as a value a template inserts in a path."""
    if isinstance(written, s.Ref) and isinstance(resolved, s.Str):
        import glob  # only for a path that names a parameter

        return s.Str(resolved.span, glob.escape(resolved.value))
    if isinstance(written, s.List) and isinstance(resolved, s.List) and written is not resolved:
        items = zip(written.items, resolved.items, strict=True)
        return s.List(resolved.span, tuple(_literal_params(w, r) for w, r in items))
    return resolved


def _command(value: s.Value, key: str) -> str | tuple[str, ...]:
    if isinstance(value, s.Str):
        return value.value
    if isinstance(value, s.List) and value.items:
        return tuple(expect_str(item, key) for item in value.items)
    raise invalid("command-type", value.span, got=s.describe(value))


def _vcpus(value: s.Value, key: str) -> float:
    vcpus = expect_number(value, key, minimum=0.25)
    return int(vcpus) if vcpus.is_integer() else vcpus


def _array_size(value: s.Value, key: str) -> int:
    size = expect_int(value, key, minimum=-(2**31))
    if not MIN_ARRAY_SIZE <= size <= MAX_ARRAY_SIZE:
        raise invalid(
            "array-size", value.span, size=size, minimum=MIN_ARRAY_SIZE, maximum=MAX_ARRAY_SIZE
        )
    return size
