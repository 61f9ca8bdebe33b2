"""Where an attempt's logs live: the one module that knows the layout.

A run's logs are one directory, `<state>/logs/<run_id>/` (0700), made once. An attempt
has no directory of its own: its files share a *stem* in that directory,

    <run dir>/<name>.attempt-<N>            a job
    <run dir>/<name>.<index>.attempt-<N>    a child of an array job

and are `<stem>.stdout`, `<stem>.stderr` (0600), and whatever an executor keeps beside
them (`<stem>.slurm-exit-code`, `<stem>.slurm-batch.sh`, a container runtime's working
directory `<stem>.conmon/`). A job name has no dot, so the first dot ends it. Creating
a directory costs about as much as running a `true` job (two of them per attempt were
most of flowbatch's cost per job), which is why there are none per attempt.

The store records an attempt's stem as its `log_path`. Stores written before this layout
recorded a directory holding `stdout` and `stderr` (`<run dir>/<name>[/<index>]/
attempt-<N>/`): `recorded_file` reads either, and `started` and `remove` list either.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Final

STREAMS: Final = ("stdout", "stderr")

# `<name>[.<index>].attempt-<N>.<what>`: a file (or directory) of an attempt. A name is
# `[A-Za-z][A-Za-z0-9_-]*` in a pipeline, a job id (which may start with a digit) on a
# server: no dot and no slash either way.
_ENTRY = re.compile(r"([^./]+)(?:\.(\d+))?\.attempt-(\d+)\.(.+)")


def stem_name(name: str, index: int | str | None, attempt: int) -> str:
    """The last part of an attempt's stem (`index` may be a pattern, SLURM's `%a`)."""
    if index is None:
        return f"{name}.attempt-{attempt}"
    return f"{name}.{index}.attempt-{attempt}"


def stem(run_dir: Path, name: str, index: int | None, attempt: int) -> Path:
    """The stem of an attempt's log files (nothing is made)."""
    return run_dir / stem_name(name, index, attempt)


def beside(stem: str | os.PathLike[str], what: str) -> Path:
    """`<stem>.<what>`: a file of an attempt of this layout (`stdout`, `stderr`, an
    executor's own), for writing. Looks at nothing on disk."""
    return Path(f"{os.fspath(stem)}.{what}")


def own_dir(stem: str | os.PathLike[str], what: str) -> Path:
    """`<stem>.<what>/`, made private (0700) if missing: a working directory of the
    attempt's own, for a container runtime that drops files where it runs (conmon#504).
    Raises OSError."""
    path = beside(stem, what)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if not path.is_dir():
            raise
    return path


def exists(recorded: str | os.PathLike[str]) -> bool:
    """Whether logs are at a recorded `log_path`: an old store's directory, or a stem
    with either stream beside it."""
    path = os.fspath(recorded)  # the files first: one stat for this layout's logs
    return any(os.path.exists(f"{path}.{s}") for s in STREAMS) or os.path.isdir(path)


def recorded_file(recorded: str | os.PathLike[str], what: str, base: Path | None = None) -> Path:
    """The file `what` (`stdout`, `stderr`, `slurm-exit-code`, ...) of an attempt whose
    `log_path` is `recorded`: inside it when it is a directory (as stores written before
    this layout recorded), else beside the stem. A relative path with nothing at it is
    taken from `base`."""
    path = Path(recorded)
    if base is not None and not path.is_absolute() and not exists(path):
        path = base / path
    if path.is_dir():
        return path / what
    return beside(path, what)


# By (job name, array index): each attempt's number and `log_path`.
_Found = dict[tuple[str, int | None], dict[int, str]]


def started(run_dir: Path) -> _Found:
    """The attempts whose logs are in a run's directory, by (job name, array index), each
    attempt's number with its `log_path`: one listing of the directory, however many
    attempts it holds. An attempt counts once either stream exists (every executor makes
    them before it starts the job). Directories of the older layout count too."""
    found: _Found = {}
    for entry in _listing(run_dir):
        match = _ENTRY.fullmatch(entry.name)
        if match is not None:
            name, index, number, what = match.groups()
            if what in STREAMS:
                key = (name, None if index is None else int(index))
                n = int(number)
                found.setdefault(key, {})[n] = str(stem(run_dir, name, key[1], n))
        elif "." not in entry.name and entry.is_dir(follow_symlinks=False):
            _old_attempts(entry, found)
    return found


def _old_attempts(job: os.DirEntry[str], found: _Found) -> None:
    """The attempt directories of one job in the older layout, `<name>/attempt-<N>/` and
    `<name>/<index>/attempt-<N>/`."""
    for entry in _listing(job.path):
        if not entry.is_dir(follow_symlinks=False):
            continue
        if entry.name.isdigit():  # an array child's directory
            for attempt in _listing(entry.path):
                n = _attempt_number(attempt.name)
                if n is not None and attempt.is_dir(follow_symlinks=False):
                    found.setdefault((job.name, int(entry.name)), {})[n] = attempt.path
        else:
            n = _attempt_number(entry.name)
            if n is not None:
                found.setdefault((job.name, None), {})[n] = entry.path


def _attempt_number(name: str) -> int | None:
    prefix, _, number = name.partition("-")
    return int(number) if prefix == "attempt" and number.isdigit() else None


def remove(run_dir: Path, names: Collection[str]) -> None:
    """Delete every log of the jobs `names` (and of their children) from a run's
    directory, in either layout: one listing of the directory."""
    if not names:
        return
    for entry in _listing(run_dir):
        name, dot, _ = entry.name.partition(".")
        if name not in names:
            continue
        if entry.is_dir(follow_symlinks=False):  # `<name>/` of the older layout, a `.conmon`
            shutil.rmtree(entry.path, ignore_errors=True)
        elif dot:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _listing(where: str | os.PathLike[str]) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(where) as entries:
            return list(entries)
    except OSError:  # gone, or never made (the runner died before any attempt)
        return []
