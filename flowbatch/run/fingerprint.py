"""Fingerprints: what a job's (or an array child's) success was made of, so that
`run --resume` can tell whether doing it again would do anything different.

A fingerprint is two digests joined by a dot, `<command>.<inputs>`, kept apart so that
`flowbatch plan` can say which of the two changed:

- command: the rendered command (an array child's with its own index), the image, the
  environment, the names (never the values) in `env_from_host` and the parameters. The
  command is rendered with the placeholder job id `JOB_ID` and attempt 1: a fresh id
  every run must not make everything run again.
- inputs: the sha256 of every regular file the job's `inputs` globs match (relative to
  its working directory), with the names matched and the globs that matched nothing. A
  value a template inserts in a glob is literal text (`template.render(paths=True)`).
  Only regular files are read, and only so far (`MAX_READ_*`): FIFOs, devices and
  sockets count by their kind, a larger file by its size and modification time, and a
  job whose globs look at more than `MAX_ENTRIES` entries raises InputsError.

Rendering 100,000 children is the cost, so renders are cached by what a template can
see: a template that never names `array` renders once per job, one that never names
`job` renders once per index across all the jobs sharing its text. Inputs are hashed
once per job and each file once per instance.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import os
import stat
from pathlib import Path

from flowbatch.errors import FlowbatchError
from flowbatch.lang.compile import Plan
from flowbatch.lang.model import JobSpec
from flowbatch.lang.template import Context, TemplateError, render, render_command

__all__ = ["MAX_ENTRIES", "MAX_READ_FILE", "MAX_READ_JOB", "Fingerprints", "InputsError", "split"]

_DIGEST = 16  # hex digits kept of each sha256: 64 bits, plenty to tell versions apart
_EMPTY = hashlib.sha256(b"").hexdigest()[:_DIGEST]
# Looking at a job's files must stay cheap: the runner does it on its event loop as each
# attempt starts. A job's `inputs` may look at this many directory entries and files in
# all (more is an error), and its regular files are read up to these sizes; a larger
# file, or one past the job's total, is known by its size and modification time, as
# Nextflow's default cache mode knows every file.
MAX_ENTRIES = 100_000
MAX_READ_FILE = 64 << 20
MAX_READ_JOB = 256 << 20


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
        # The facts of the job asked last (an array's children come one after another):
        # one entry, not one a job (10,000 jobs kept 2 MiB of them for nothing).
        self._last: tuple[str, tuple[str | tuple[str, ...], bool, bool, str]] | None = None
        self._inputs: dict[tuple[str, int | None], str] = {}
        self._files: dict[tuple[str, int, int, int, int], str] = {}

    def of(self, name: str, index: int | None = None) -> str:
        """The fingerprint of job `name` (array child `index`)."""
        return f"{self.command(name, index)}.{self.inputs(name, index)}"

    def children(self, name: str) -> list[str]:
        """The fingerprint of every child of array `name`, by index: one render per
        child only when the command names `array`."""
        spec = self.plan.job(name)
        size = spec.array_size or 0
        facts = self._job_facts(name)
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
        command, uses_array, uses_job, static = self._job_facts(name)
        where = (index, self.plan.job(name).array_size) if uses_array else None
        key = (command, static, name if uses_job else None, where)
        digest = self._renders.get(key)
        if digest is None:
            digest = self._renders[key] = self._render(name, index, static)
        return digest

    def _job_facts(self, name: str) -> tuple[str | tuple[str, ...], bool, bool, str]:
        last = self._last  # read once: the inputs' worker thread asks too
        if last is not None and last[0] == name:
            return last[1]
        spec = self.plan.job(name)
        text = spec.command if isinstance(spec.command, str) else "\0".join(spec.command)
        # Conservative by text: naming `array` anywhere (even in a comment) renders per
        # child, which only costs time, never a wrong reuse.
        facts = (spec.command, "array" in text, "job" in text, self._static_digest(spec))
        self._last = (name, facts)
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
        if not spec.inputs:
            return _EMPTY  # kept for no job: most have no `inputs`
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
            return tuple(
                render(p, ctx, shell=False, parameters=spec.parameters, paths=True)
                for p in patterns
            )
        except TemplateError as exc:
            return (f"!template error: {exc.message}",)

    def workdir(self, spec: JobSpec) -> Path:
        return self._dir / spec.workdir

    def _hash_inputs(self, spec: JobSpec, patterns: tuple[str, ...]) -> str:
        # A pattern that matched nothing is `pattern\0(none)`, as before there were records.
        lines = ["\0".join(r if r[2] else r[:2]) for r in self._records(spec, patterns)]
        return _digest("\n".join(lines))

    def records(self, name: str, index: int | None = None) -> list[tuple[str, str, str]]:
        """What the inputs digest of `name` (child `index`) is made of: (pattern, path,
        the file's sha256 or what stands for it), and (pattern, "(none)", "") for a
        pattern that matches nothing. Raises InputsError."""
        spec = self.plan.job(name)
        return self._records(spec, self.patterns(name, spec.inputs, index))

    def _records(self, spec: JobSpec, patterns: tuple[str, ...]) -> list[tuple[str, str, str]]:
        root = self.workdir(spec)
        walk = _Walk(spec.name)
        out: list[tuple[str, str, str]] = []
        for pattern in patterns:
            matches = sorted(set(_files(root, pattern, walk)))
            if not matches:
                out.append((pattern, "(none)", ""))
            for path in matches:
                out.append((pattern, path, self._file_digest(root / path, walk)))
        return out

    def _file_digest(self, path: Path, walk: _Walk) -> str:
        """A regular file's sha256, read without following it anywhere it could block;
        any other kind of file by its kind (never opened); a file over the read limits
        by its size and modification time."""
        try:
            st = os.stat(path)
        except OSError as exc:
            return f"unreadable: {exc.strerror}"
        if not stat.S_ISREG(st.st_mode):
            return _kind(st.st_mode)
        # Charged whether or not it is read now: which files are read must depend on
        # the job's own files only, never on which job looked at them first.
        walk.read += st.st_size
        if st.st_size > MAX_READ_FILE or walk.read > MAX_READ_JOB:
            return f"size {st.st_size}, modified {st.st_mtime_ns}"
        key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        digest = self._files.get(key)
        if digest is None:
            digest = self._files[key] = _read_digest(path, st)
        return digest

    def outputs_missing(self, name: str, index: int | None = None) -> list[str]:
        """The `outputs` globs of job `name` (child `index`) that match no file now."""
        spec = self.plan.job(name)
        if not spec.outputs:
            return []
        root = self.workdir(spec)
        patterns = self.patterns(name, spec.outputs, index)
        walk = _Walk(name)
        return [p for p in patterns if not _matches(root, p, walk, first=True)]


def templated(patterns: tuple[str, ...]) -> bool:
    """Whether `inputs` or `outputs` patterns use templates (and so differ per child)."""
    return any("{{" in p or "{%" in p for p in patterns)


class InputsError(FlowbatchError):
    """A job's `inputs` or `outputs` that cannot be looked at within the limits: `job`
    went past `limit` ("listed": files and entries named; "scanned": directory entries
    read to match) at `pattern`."""

    def __init__(self, job: str, pattern: str, limit: str) -> None:
        super().__init__(job, pattern, limit)
        self.job = job
        self.pattern = pattern
        self.limit = limit

    @property
    def message(self) -> str:
        what = _LIMITS[self.limit].format(MAX_ENTRIES)
        return (
            f"the `inputs`/`outputs` of job `{self.job}` {what} "
            f"(at `{self.pattern}`): name the files the job reads more narrowly"
        )


_LIMITS = {
    "listed": "name more than {:,} files and directory entries",
    "scanned": "read more than {:,} directory entries to match",
}


class _Walk:
    """What looking at one job's files has cost so far."""

    __slots__ = ("job", "listed", "read", "scanned")

    def __init__(self, job: str) -> None:
        self.job = job
        self.listed = 0  # files matched, and entries below the directories matched
        self.scanned = 0  # directory entries read to match the globs
        self.read = 0  # bytes of regular files, read or not

    def list(self, pattern: str) -> None:
        self.listed += 1
        if self.listed > MAX_ENTRIES:
            raise InputsError(self.job, pattern, "listed")

    def scan(self, pattern: str) -> None:
        self.scanned += 1
        if self.scanned > MAX_ENTRIES:
            raise InputsError(self.job, pattern, "scanned")


_KINDS = (
    (stat.S_ISDIR, "directory"),
    (stat.S_ISFIFO, "fifo, not read"),
    (stat.S_ISCHR, "character device, not read"),
    (stat.S_ISBLK, "block device, not read"),
    (stat.S_ISSOCK, "socket, not read"),
)


def _kind(mode: int) -> str:
    return next((label for test, label in _KINDS if test(mode)), "special file, not read")


def _read_digest(path: Path, before: os.stat_result) -> str:
    # O_NONBLOCK: a FIFO swapped in since the stat opens at once instead of waiting
    # for a writer; the fstat then sees it is not the regular file that was stat'ed.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (
            before.st_dev,
            before.st_ino,
        ):
            return _kind(st.st_mode) if not stat.S_ISREG(st.st_mode) else "changed while read"
        h = hashlib.sha256()
        left = st.st_size  # what it held when looked at: a file still growing is not chased
        try:
            while left > 0:
                block = f.read(min(left, 1 << 20))
                if not block:
                    break
                h.update(block)
                left -= len(block)
        except OSError as exc:
            return f"unreadable: {exc.strerror}"
        return h.hexdigest()


def _files(root: Path, pattern: str, walk: _Walk) -> list[str]:
    """Files matched by `pattern` under `root` (a matched directory stands for every
    entry below it, symbolic links to directories below it not followed), as paths
    relative to `root` (or absolute, for an absolute pattern)."""
    out: list[str] = []
    walked: set[str] = set()
    for match in sorted(_matches(root, pattern, walk)):
        name = match.rstrip("/") or "/"
        if _below(name, walked):
            continue  # listed with a directory above it already (`data/**`)
        full = root / name
        if not full.is_dir():
            walk.list(pattern)
            out.append(name)
            continue
        walked.add(name)
        todo = [full]
        while todo:
            here = todo.pop()
            try:
                with os.scandir(here) as entries:
                    for entry in entries:
                        walk.list(pattern)
                        if entry.is_dir(follow_symlinks=False):
                            todo.append(Path(entry.path))
                        elif os.path.isabs(name):
                            out.append(entry.path)
                        else:
                            out.append(os.path.relpath(entry.path, root))
            except OSError:
                continue
    return out


def _below(path: str, dirs: set[str]) -> bool:
    parent = os.path.dirname(path)
    while parent and parent != path:
        if parent in dirs:
            return True
        path, parent = parent, os.path.dirname(parent)
    return False


def _matches(root: Path, pattern: str, walk: _Walk, *, first: bool = False) -> list[str]:
    """What `glob.glob(pattern, root_dir=root, recursive=True)` matches, looked for
    with a bound: at most MAX_ENTRIES directory entries are read, and `**`
    does not follow symbolic links to directories (a link to `.` is no endless tree).
    `first`: stop at the first match."""
    if not pattern or "\0" in pattern:
        return []  # `-p sample=` leaves nothing to name; no path holds a NUL
    if not glob.has_magic(pattern):
        full = root / pattern
        found = full.is_dir() if pattern.endswith("/") else os.path.lexists(full)
        return [pattern] if found else []
    absolute = pattern.startswith("/")
    parts = [p for p in pattern.split("/") if p]
    trail = "/" if pattern.endswith("/") else ""
    out: list[str] = []

    def join(rel: str, name: str) -> str:
        return f"{rel.rstrip('/')}/{name}" if rel else name

    def place(rel: str) -> Path:
        return Path(rel) if absolute else root / rel if rel else root

    def scan(rel: str, dirs_only: bool) -> list[tuple[str, bool]]:
        names: list[tuple[str, bool]] = []
        try:
            with os.scandir(place(rel)) as entries:
                for entry in entries:
                    walk.scan(pattern)
                    try:
                        is_dir = entry.is_dir()
                    except OSError:
                        continue
                    if is_dir or not dirs_only:
                        link = entry.is_symlink()
                        names.append((entry.name, is_dir and not link))
        except OSError:
            pass
        return names

    def step(rel: str, i: int) -> None:
        if first and out:
            return
        if i == len(parts):
            if rel and (not trail or place(rel).is_dir()):
                out.append(rel + trail if not rel.endswith("/") else rel)
            return
        part, last = parts[i], i == len(parts) - 1
        if part == "**":
            # Zero or more directories (and, last, every file below), hidden ones aside.
            if not last:
                step(rel, i + 1)
            elif rel:
                out.append(join(rel, ""))
            todo = [rel]
            while todo and not (first and out):
                here = todo.pop()
                for name, real_dir in scan(here, dirs_only=not last or bool(trail)):
                    if name.startswith("."):
                        continue
                    below = join(here, name)
                    if last:
                        out.append(below + trail)
                    else:
                        step(below, i + 1)
                    if real_dir:
                        todo.append(below)
            return
        if not glob.has_magic(part):
            below = join(rel, part)
            if os.path.lexists(place(below)):
                step(below, i + 1)
            return
        hidden = part.startswith(".")
        for name, _real in scan(rel, dirs_only=not last):
            if first and out:
                return
            if (hidden or not name.startswith(".")) and fnmatch.fnmatchcase(name, part):
                step(join(rel, name), i + 1)

    step("/" if absolute else "", 0)
    return out
