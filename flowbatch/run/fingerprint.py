"""Fingerprints: what a job's (or an array child's) success was made of, so that
`run --resume` can tell whether doing it again would do anything different.

A fingerprint is two digests joined by a dot, `<command>.<inputs>`, kept apart so that
`flowbatch plan` can say which of the two changed:

- command: the rendered command (an array child's with its own index), the image, the
  environment, the names (never the values) in `env_from_host` and the parameters. The
  command is rendered with the placeholder job id `JOB_ID` and attempt 1: a fresh id
  every run must not make everything run again.
- inputs: the sha256 of every file the job's `inputs` globs match (relative to its
  working directory), with the names matched and the globs that matched nothing.

Rendering 100,000 children is the cost, so renders are cached by what a template can
see: a template that never names `array` renders once per job, one that never names
`job` renders once per index across all the jobs sharing its text. Inputs are hashed
once per job and each file once per instance.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path

from flowbatch.lang.compile import Plan
from flowbatch.lang.model import JobSpec
from flowbatch.lang.template import Context, TemplateError, render, render_command

__all__ = ["Fingerprints", "split"]

_DIGEST = 16  # hex digits kept of each sha256: 64 bits, plenty to tell versions apart
_EMPTY = hashlib.sha256(b"").hexdigest()[:_DIGEST]


def split(fingerprint: str | None) -> tuple[str, str] | None:
    """(command digest, inputs digest) of a stored fingerprint, or None."""
    if not fingerprint:
        return None
    command, dot, inputs = fingerprint.partition(".")
    return (command, inputs) if dot else None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_DIGEST]


class Fingerprints:
    """The fingerprints of one plan's jobs, computed lazily and cached. Inputs are read
    the first time a job is asked about, so a runner that asks when a job starts
    fingerprints the inputs it actually read."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._dir = Path(plan.path).absolute().parent
        self._static: dict[object, str] = {}  # image, env, parameters -> their digest
        self._renders: dict[tuple[object, ...], str] = {}
        self._per_job: dict[str, tuple[str | tuple[str, ...], bool, bool, str]] = {}
        self._inputs: dict[tuple[str, int | None], str] = {}
        self._files: dict[str, str] = {}

    def of(self, name: str, index: int | None = None) -> str:
        """The fingerprint of job `name` (array child `index`)."""
        return f"{self.command(name, index)}.{self.inputs(name, index)}"

    def children(self, name: str) -> list[str]:
        """The fingerprint of every child of array `name`, by index: one render per
        child only when the command names `array`."""
        spec = self.plan.job(name)
        size = spec.array_size or 0
        facts = self._per_job.get(name) or self._job_facts(name)
        if templated(spec.inputs):
            inputs = [self.inputs(name, i) for i in range(size)]
        else:
            inputs = [self.inputs(name)] * size
        if not facts[1]:
            command = self.command(name, 0)
            return [f"{command}.{digest}" for digest in inputs]
        return [f"{self.command(name, i)}.{inputs[i]}" for i in range(size)]

    def command(self, name: str, index: int | None = None) -> str:
        """The digest of what `name` (child `index`) runs: command, image, env, parameters."""
        facts = self._per_job.get(name)
        if facts is None:
            facts = self._job_facts(name)
        command, uses_array, uses_job, static = facts
        where = (index, self.plan.job(name).array_size) if uses_array else None
        key = (command, static, name if uses_job else None, where)
        digest = self._renders.get(key)
        if digest is None:
            digest = self._renders[key] = self._render(name, index, static)
        return digest

    def _job_facts(self, name: str) -> tuple[str | tuple[str, ...], bool, bool, str]:
        spec = self.plan.job(name)
        text = spec.command if isinstance(spec.command, str) else "\0".join(spec.command)
        # Conservative by text: naming `array` anywhere (even in a comment) renders per
        # child, which only costs time, never a wrong reuse.
        facts = (spec.command, "array" in text, "job" in text, self._static_digest(spec))
        self._per_job[name] = facts
        return facts

    def _static_digest(self, spec: JobSpec) -> str:
        # Keyed by the facts themselves: 10,000 jobs of one definition hash them once.
        key = (
            spec.image,
            tuple(spec.env.items()),
            tuple(spec.parameters.items()),
            spec.env_from_host,
        )
        digest = self._static.get(key)
        if digest is None:
            facts: dict[str, object] = {
                "image": spec.image,
                "env": dict(spec.env),
                "parameters": dict(spec.parameters),
            }
            # By name only: a host variable's value (a token) must never reach the
            # store, even hashed. Left out when empty, so that no other job's
            # fingerprint changes.
            if spec.env_from_host:
                facts["env_from_host"] = sorted(spec.env_from_host)
            digest = self._static[key] = _digest(json.dumps(facts, sort_keys=True))
        return digest

    def _render(self, name: str, index: int | None, static: str) -> str:
        spec = self.plan.job(name)
        ctx = Context(params=self.plan.params, job_name=name, index=index, size=spec.array_size)
        try:
            rendered = render_command(spec.command, ctx, spec.parameters)
        except TemplateError as exc:
            # It will fail when it runs; a fingerprint of the error never matches a success.
            rendered = f"!template error: {exc.message}"
        return _digest(json.dumps([static, rendered]))

    def inputs(self, name: str, index: int | None = None) -> str:
        """The digest of the files job `name` (child `index`) declares as `inputs`, read
        now (once). Patterns that are templates (`{{ array.index }}`) are rendered for
        the child, so each child's digest covers its own files only."""
        spec = self.plan.job(name)
        key = (name, index if templated(spec.inputs) else None)
        digest = self._inputs.get(key)
        if digest is None:
            patterns = self.patterns(name, spec.inputs, key[1])
            digest = _EMPTY if not patterns else self._hash_inputs(spec, patterns)
            self._inputs[key] = digest
        return digest

    def patterns(self, name: str, patterns: tuple[str, ...], index: int | None) -> tuple[str, ...]:
        """`inputs` or `outputs` as paths for child `index`: templates rendered."""
        if not templated(patterns):
            return patterns
        spec = self.plan.job(name)
        ctx = Context(params=self.plan.params, job_name=name, index=index, size=spec.array_size)
        try:
            return tuple(render(p, ctx, shell=False, parameters=spec.parameters) for p in patterns)
        except TemplateError as exc:
            return (f"!template error: {exc.message}",)

    def workdir(self, spec: JobSpec) -> Path:
        return self._dir / spec.workdir

    def _hash_inputs(self, spec: JobSpec, patterns: tuple[str, ...]) -> str:
        root = self.workdir(spec)
        lines: list[str] = []
        for pattern in patterns:
            matches = sorted(_files(root, pattern))
            if not matches:
                lines.append(f"{pattern}\0(none)")
            for path in matches:
                lines.append(f"{pattern}\0{path}\0{self._file_digest(root / path)}")
        return _digest("\n".join(lines))

    def _file_digest(self, path: Path) -> str:
        key = str(path)
        digest = self._files.get(key)
        if digest is None:
            h = hashlib.sha256()
            try:
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                digest = h.hexdigest()
            except OSError as exc:
                digest = f"unreadable: {exc.strerror}"
            self._files[key] = digest
        return digest

    def outputs_missing(self, name: str, index: int | None = None) -> list[str]:
        """The `outputs` globs of job `name` (child `index`) that match no file now."""
        spec = self.plan.job(name)
        if not spec.outputs:
            return []
        root = self.workdir(spec)
        patterns = self.patterns(name, spec.outputs, index)
        return [p for p in patterns if not glob.glob(p, root_dir=root, recursive=True)]


def templated(patterns: tuple[str, ...]) -> bool:
    """Whether `inputs` or `outputs` patterns use templates (and so differ per child)."""
    return any("{{" in p or "{%" in p for p in patterns)


def _files(root: Path, pattern: str) -> list[str]:
    """Files matched by `pattern` under `root` (a matched directory stands for every file
    below it), as paths relative to `root` (or absolute, for an absolute pattern)."""
    out: list[str] = []
    for match in glob.glob(pattern, root_dir=root, recursive=True):
        full = root / match
        if full.is_dir():
            for base, _dirs, names in os.walk(full):
                out.extend(os.path.relpath(os.path.join(base, n), root) for n in names)
        else:
            out.append(match)
    return out
