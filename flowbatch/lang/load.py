"""The front half in one call: read `.flow` files, parse, analyze, compile.

`load(path)` reads the file and its imports; `load_text(text, path)` takes the text
(and a `read` function for imports) and does no I/O of its own. Neither starts an
event loop.
"""

from __future__ import annotations

import contextlib
import gc
import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import flowbatch.lang.syntax as s
from flowbatch.lang.analyze import analyze
from flowbatch.lang.aws_limits import AwsTarget
from flowbatch.lang.compile import Plan, compile_pipeline
from flowbatch.lang.computes import Machine
from flowbatch.lang.diagnostics import FlowError, Source, Span
from flowbatch.lang.parse import parse

Reader = Callable[[str], str]


def load(
    path: str | Path,
    params: Mapping[str, str] | None = None,
    *,
    computes: Sequence[str | Path] = (),
    aws: AwsTarget | None = None,
) -> Plan:
    """The Plan of the pipeline in `path`; raises FlowError with every problem found.
    `params` are `-p NAME=VALUE` overrides as strings, converted to each param's type.
    `computes` are more files to import, as if the pipeline imported them: how a user
    brings their cluster's compute environments to a pipeline without editing it.
    `aws` says which jobs go to AWS Batch and are held to its limits (by default those
    whose queue lists an `aws_batch` compute environment).
    An unreadable file is a FlowError(Kind.IMPORT) too."""
    path = str(path)
    try:
        text = _read(path)
    except (OSError, UnicodeDecodeError, NotAPipelineFile) as exc:
        from flowbatch.lang.messages import flow_error

        raise flow_error("unreadable-file", None, path=path, why=_why(exc)) from None
    if computes:
        # Spelled as import statements so they get the same checks and messages;
        # the paths are made relative to the pipeline, as imports are.
        base = os.path.dirname(path) or "."
        lines = [f'import "{_json_escape(os.path.relpath(p, base))}"' for p in map(str, computes)]
        text = text + "\n" + "\n".join(lines) + "\n"
    return load_text(text, path, params, read=_read, aws=aws)


def _json_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def load_text(
    text: str,
    path: str = "<string>",
    params: Mapping[str, str] | None = None,
    *,
    read: Reader | None = None,
    machine: Machine | None = None,
    aws: AwsTarget | None = None,
) -> Plan:
    """Like `load`, from text; `read(path)` supplies imported files (none by default).
    `machine` sizes the implicit `local` compute environment (this machine's by default)."""
    problem = not_text(text)
    if problem is not None:
        from flowbatch.lang.messages import flow_error

        raise flow_error("unreadable-file", None, path=path, why=problem)
    with _no_cycle_collection():
        main = parse(text, path)
        files = [main, *_imports(main, read, (path,))]
        pipeline = analyze(
            files, overrides=params or {}, machine=machine or this_machine(), aws=aws
        )
        # The syntax tree is most of the front half's memory (~1 KiB a job, a span for
        # every part); the model keeps what errors need. Freed before compile adds its
        # own, so that the run's peak is not the two of them at once.
        del main, files
        return compile_pipeline(pipeline)


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """The front half makes hundreds of thousands of small objects and no reference
    cycles that matter; CPython's cycle collector would walk the survivors again on
    every collection, and took a third of validating 100,000 jobs. Reference counting
    still frees everything; the collector is back on, as it was, once the Plan is made."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def this_machine() -> Machine:
    """This machine's CPUs (those this process may use) and memory in MiB."""
    try:
        vcpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        vcpus = os.cpu_count() or 1
    memory = 4096
    with contextlib.suppress(ValueError, OSError, AttributeError):
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return Machine(vcpus=vcpus, memory=int(memory))


# No pipeline comes near this; it keeps a mistaken path from filling memory.
MAX_FILE_BYTES = 16 * 2**20
# A chain of imports deeper than this is an error at the import that goes past it.
MAX_IMPORT_DEPTH = 100


class NotAPipelineFile(Exception):
    """A path that is not a regular file of UTF-8 text within the size limit; the
    message says why without quoting any of its content."""


def _read(path: str) -> str:
    """The text of the regular file at `path`. A device, FIFO or directory is refused
    before anything is read from it (O_NONBLOCK: opening a FIFO without a writer
    does not wait for one), as is a file past MAX_FILE_BYTES (at most one byte more
    is read to find out: /proc files claim a size of 0) or not UTF-8. Control
    characters are `not_text`'s to find, for text from any reader."""
    flags = os.O_RDONLY
    for name in ("O_NONBLOCK", "O_NOCTTY", "O_CLOEXEC"):  # POSIX; absent on Windows
        flags |= getattr(os, name, 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotAPipelineFile(f"it is {_file_kind(info.st_mode)}, not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise NotAPipelineFile(_too_large())
        chunks: list[bytes] = []
        left = MAX_FILE_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, 2**20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_FILE_BYTES:
        raise NotAPipelineFile(_too_large())
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotAPipelineFile(f"it is not UTF-8 text (byte offset {exc.start})") from None
    return text


def _too_large() -> str:
    return f"it is larger than {MAX_FILE_BYTES // 2**20} MiB"


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


# Control characters other than tab, newline, carriage return and form feed (C0, DEL
# and C1): no pipeline has them, binary files and /proc/*/environ do, and an error
# quoting a line with them would send them to the terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")


def not_text(text: str) -> str | None:
    """Why `text` is not the text of a pipeline (a control character, and at which
    byte offset), or None. Says nothing of what the text holds."""
    m = _CONTROL.search(text)
    if m is None:
        return None
    what = "a NUL byte" if m.group() == "\x00" else "a control character"
    offset = len(text[: m.start()].encode("utf-8", "surrogatepass"))
    return f"it is not text ({what} at byte offset {offset})"


def _imports(file: s.File, read: Reader | None, chain: tuple[str, ...]) -> list[s.File]:
    """Every file `file` imports, depth first, each once."""
    out: list[s.File] = []
    seen = set(chain)
    errors: list[FlowError] = []
    for statement in file.statements:
        if not isinstance(statement, s.Import):
            continue
        target = posixpath.normpath(
            posixpath.join(posixpath.dirname(file.source.path), statement.path)
        )
        if target in chain:
            from flowbatch.lang.messages import flow_error

            loop = (*chain[chain.index(target) :], target)
            errors.append(flow_error("import-cycle", statement.path_span, cycle=loop))
            continue
        if target in seen:
            continue
        if len(chain) > MAX_IMPORT_DEPTH:
            from flowbatch.lang.messages import flow_error

            chained = (*chain, target)
            errors.append(
                flow_error(
                    "imports-too-deep", statement.path_span, chain=chained, limit=MAX_IMPORT_DEPTH
                )
            )
            break
        seen.add(target)
        if read is None:
            errors.append(_unreadable(statement.path_span, target, "no files can be read here"))
            continue
        try:
            text = read(target)
        except (OSError, UnicodeDecodeError, NotAPipelineFile) as exc:
            not_pipeline = not isinstance(exc, OSError)
            errors.append(_unreadable(statement.path_span, target, _why(exc), not_pipeline))
            continue
        problem = not_text(text)
        if problem is not None:
            errors.append(_unreadable(statement.path_span, target, problem, True))
            continue
        imported = parse(text, target)
        out.append(imported)
        for sub in _imports(imported, read, (*chain, target)):
            if sub.source.path not in seen:
                seen.add(sub.source.path)
                out.append(sub)
    if errors:
        raise FlowError.many(errors)
    return out


def _why(exc: OSError | UnicodeDecodeError | NotAPipelineFile) -> str:
    """Why a file could not be read, quoting nothing of its content."""
    if isinstance(exc, UnicodeDecodeError):
        return f"it is not UTF-8 text (byte offset {exc.start})"
    if isinstance(exc, NotAPipelineFile):
        return str(exc)
    return exc.strerror or str(exc)


def _unreadable(span: Span, target: str, why: str, not_a_pipeline: bool = False) -> FlowError:
    from flowbatch.lang.messages import flow_error  # on an error only

    return flow_error(
        "unreadable-import",
        span,
        target=target,
        why=why,
        not_a_pipeline=not_a_pipeline,
        max_mib=MAX_FILE_BYTES // 2**20,
    )


__all__ = ["AwsTarget", "Machine", "Source", "load", "load_text", "this_machine"]
