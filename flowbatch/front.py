"""The front half in one call: read `.flow` files, parse, analyze, compile.

`load(path)` reads the file and its imports; `load_text(text, path)` takes the text
(and a `read` function for imports) and does no I/O of its own. Neither starts an
event loop.

Imports: parse, analyze, compile, syntax, diagnostics.
"""

from __future__ import annotations

import contextlib
import gc
import os
import posixpath
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import flowbatch.syntax as s
from flowbatch.analyze import analyze
from flowbatch.compile import Plan, compile_pipeline
from flowbatch.computes import Machine
from flowbatch.diagnostics import FlowError, Kind, Source, Span
from flowbatch.parse import parse

Reader = Callable[[str], str]


def load(
    path: str | Path,
    params: Mapping[str, str] | None = None,
    *,
    computes: Sequence[str | Path] = (),
) -> Plan:
    """The Plan of the pipeline in `path`; raises FlowError with every problem found.
    `params` are `-p NAME=VALUE` overrides as strings, converted to each param's type.
    `computes` are more files to import, as if the pipeline imported them: how a user
    brings their cluster's compute environments to a pipeline without editing it.
    An unreadable file is a FlowError(Kind.IMPORT) too."""
    path = str(path)
    try:
        text = _read(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowError(Kind.IMPORT, f"cannot read `{path}`: {_why(exc)}", None) from None
    if computes:
        # Spelled as import statements so they get the same checks and messages;
        # the paths are made relative to the pipeline, as imports are.
        base = os.path.dirname(path) or "."
        lines = [f'import "{_json_escape(os.path.relpath(p, base))}"' for p in map(str, computes)]
        text = text + "\n" + "\n".join(lines) + "\n"
    return load_text(text, path, params, read=_read)


def _json_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def load_text(
    text: str,
    path: str = "<string>",
    params: Mapping[str, str] | None = None,
    *,
    read: Reader | None = None,
    machine: Machine | None = None,
) -> Plan:
    """Like `load`, from text; `read(path)` supplies imported files (none by default).
    `machine` sizes the implicit `local` compute environment (this machine's by default)."""
    with _no_cycle_collection():
        main = parse(text, path)
        files = [main, *_imports(main, read, (path,))]
        pipeline = analyze(files, overrides=params or {}, machine=machine or this_machine())
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


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


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
            loop = (*chain[chain.index(target) :], target)
            errors.append(
                FlowError(
                    Kind.IMPORT_CYCLE,
                    "imports form a cycle: " + " -> ".join(f"`{p}`" for p in loop),
                    statement.path_span,
                    hint="move what both files need into a third file that both import",
                    detail={"cycle": loop},
                )
            )
            continue
        if target in seen:
            continue
        seen.add(target)
        if read is None:
            errors.append(_unreadable(statement.path_span, target, "no files can be read here"))
            continue
        try:
            text = read(target)
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(_unreadable(statement.path_span, target, _why(exc)))
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


def _why(exc: OSError | UnicodeDecodeError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"it is not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})"
    return exc.strerror or str(exc)


def _unreadable(span: Span, target: str, why: str) -> FlowError:
    return FlowError(
        Kind.IMPORT,
        f"cannot import `{target}`: {why}",
        span,
        hint="import paths are relative to the importing file",
    )


__all__ = ["Machine", "Source", "load", "load_text", "this_machine"]
