"""What every CLI command shares: `-p NAME=VALUE` options, loading a pipeline,
printing errors (`report_error`, the one place any FlowbatchError becomes text on
stderr), and where the state directory is.

One rule for every command, as Nextflow and Snakemake keep theirs: the state directory is
`--state-dir`, else `$FLOWBATCH_STATE_DIR`, else `.flowbatch` in the current directory
(the directory a command is run from, never the pipeline file's). `flowbatch run
pipelines/x.flow` followed by `flowbatch jobs` from the same directory then see the same
runs; a pipeline's own relative paths (`workdir`) still resolve against its file.
"""

from __future__ import annotations

import errno
import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, TextIO, TypeVar, cast

import click

from flowbatch.errors import EXIT_BUG, FlowbatchError
from flowbatch.lang.diagnostics import FlowError, render

if TYPE_CHECKING:
    from flowbatch.lang.compile import Plan
    from flowbatch.store.jobstore import Store

STATE_DIR_ENV = "FLOWBATCH_STATE_DIR"
DEFAULT_STATE_DIR = ".flowbatch"

F = TypeVar("F", bound=Callable[..., Any])


class DropWhenClosed(io.TextIOBase):
    """A text stream that drops what it is given once its reader has gone (a closed pipe,
    as `flowbatch run p.flow | head -2` leaves) or it cannot be written, instead of
    raising: a run's progress is for watching, and losing the watcher must not stop the
    pipeline or change its exit status.

    On the first EPIPE it does what Python's documentation recommends (the SIGPIPE note
    of the `signal` module): point the descriptor at /dev/null, so that the interpreter's
    own flush at exit does not fail again with "Exception ignored ... BrokenPipeError"."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self.dropping = False

    def write(self, text: str) -> int:
        if not self.dropping:
            try:
                self._stream.write(text)
            except (OSError, ValueError) as err:
                self._stop(err)
        return len(text)

    def flush(self) -> None:
        if not self.dropping:
            try:
                self._stream.flush()
            except (OSError, ValueError) as err:
                self._stop(err)

    def isatty(self) -> bool:
        return not self.dropping and self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding

    def _stop(self, err: Exception) -> None:
        self.dropping = True
        if isinstance(err, OSError) and err.errno == errno.EPIPE:
            point_at_devnull(self._stream)


def point_at_devnull(stream: TextIO) -> None:
    """Python's recipe for a closed pipe: the stream's descriptor now writes to
    /dev/null, so whatever is still buffered can be flushed (and lost) without error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(devnull, stream.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


def keep_running_when_unread() -> None:
    """Send this process's stdout and stderr through DropWhenClosed, for a command
    (`run`) that must carry on whether or not anyone still reads what it prints."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        # None: started with the descriptor closed (`>&-`); print() and click drop it
        if stream is not None and not isinstance(stream, DropWhenClosed):
            setattr(sys, name, cast(TextIO, DropWhenClosed(stream)))


def params_option(func: F) -> F:
    """The `-p NAME=VALUE` option, repeatable, as a tuple of strings named `params`."""
    return click.option(
        "-p",
        "--param",
        "params",
        multiple=True,
        metavar="NAME=VALUE",
        help="Override a pipeline parameter (repeatable).",
    )(func)


def state_dir_option(func: F) -> F:
    """`--state-dir DIR`, as a Path or None (then `state_dir()` picks the default)."""
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=f"Where the job database and logs are (default: ${STATE_DIR_ENV}, else "
        f"{DEFAULT_STATE_DIR} in the current directory).",
    )(func)


def state_dir(option: Path | None) -> Path:
    """The state directory: `--state-dir`, else $FLOWBATCH_STATE_DIR, else ./.flowbatch.
    A leading `~` is the home directory, as a CI file's `env:` or `--state-dir=~/x`
    pass it without a shell to expand it."""
    if option is not None:
        return option.expanduser()
    from_env = os.environ.get(STATE_DIR_ENV, "")
    return Path(from_env).expanduser() if from_env else Path(DEFAULT_STATE_DIR)


def _where_from(option: Path | None) -> str:
    if option is not None:
        return "given by --state-dir"
    if os.environ.get(STATE_DIR_ENV, ""):
        return f"from ${STATE_DIR_ENV}"
    return f"the default, {DEFAULT_STATE_DIR} in the current directory"


def open_existing_store(option: Path | None) -> Store:
    """The store of an existing state directory; StoreError saying where it looked, why
    it looked there and how to point elsewhere when there is no job database."""
    from flowbatch.store.jobstore import DB_NAME, Store, StoreError

    directory = state_dir(option)
    if not (directory / DB_NAME).exists():
        raise StoreError(
            f"no job database at `{os.path.abspath(directory / DB_NAME)}` "
            f"({_where_from(option)}): nothing has run with this state directory yet. "
            f"flowbatch keeps its state in {DEFAULT_STATE_DIR} of the directory `flowbatch "
            f"run` was started from: run this command there, or pass --state-dir DIR or set "
            f"{STATE_DIR_ENV}=DIR"
        )
    return Store.open(directory, create=False)


def parse_params(values: tuple[str, ...]) -> dict[str, str]:
    """`-p NAME=VALUE` options as a mapping; click.BadParameter (exit 2) for a bad one."""
    from flowbatch.outputs.jobview import visible

    params: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(
                f"expected NAME=VALUE, got `{visible(item)}`", param_hint="'-p'"
            )
        params[name.strip()] = value
    return params


def load_plan(
    ctx: click.Context, file: str | Path, params: tuple[str, ...], **options: Any
) -> Plan:
    """The Plan of FILE with `-p` overrides; raises FlowError (the CLI's handler prints
    it and exits 2)."""
    from flowbatch.lang.load import load

    return load(file, parse_params(params), **options)


class CommandError(FlowbatchError):
    """What a command found that it cannot act on (no such attempt, a log that is
    gone), said in the command's own words; exit `code`."""

    def __init__(self, message: str, code: int = 2, *, notes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self._notes = notes

    @property
    def notes(self) -> tuple[str, ...]:
        return self._notes

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return self.code


def report_error(err: FlowbatchError) -> None:
    """`err` on stderr, the one way every command prints an error: a located FlowError
    as `path:line:col: error: ...` with the line and a caret (each of its errors), any
    other as `error: ...`; under GitHub Actions each also as an `::error` annotation."""
    from flowbatch.outputs.jobview import visible

    if isinstance(err, FlowError):
        click.echo(visible(render(err), keep="\n\t"), err=True)
        located: tuple[FlowError, ...] = err.errors
    else:
        hint = f"\n  = help: {visible(err.hint)}" if err.hint else ""
        click.echo(f"error: {visible(err.message)}{hint}", err=True)
        for note in err.notes:
            click.echo(visible(note), err=True)
        located = ()
    if on_github():
        for one in located:
            workflow_command(github_annotation(one))
        if not located:
            hint = f" ({err.hint})" if err.hint else ""
            workflow_command(f"::error::{escape_data(err.message + hint)}")


def fail(err: FlowbatchError) -> NoReturn:
    """Print `err` (`report_error`) and exit with its code."""
    report_error(err)
    raise click.exceptions.Exit(err.exit_code)


def report_bug(err: BaseException) -> NoReturn:
    """An exception no code of flowbatch expected: a bug. Its traceback, a request to
    report it, and exit 70 (EX_SOFTWARE), never the exit 2 of bad input."""
    import traceback

    from flowbatch.outputs.jobview import visible

    trace = "".join(traceback.format_exception(err))
    click.echo(visible(trace.rstrip("\n"), keep="\n"), err=True)
    click.echo(
        "error: this is a bug in flowbatch: please report it, with the command and the "
        "traceback above",
        err=True,
    )
    raise click.exceptions.Exit(EXIT_BUG)


def github_annotation(err: FlowError) -> str:
    """`::error file=F,line=L,col=C::message` (GitHub's workflow command syntax), with
    the message and the properties escaped as GitHub's toolkit escapes them."""
    message = escape_data(err.message + (f" ({err.hint})" if err.hint else ""))
    if err.span is None:
        return f"::error::{message}"
    path = escape_property(err.span.path)
    return f"::error file={path},line={err.span.line},col={err.span.col}::{message}"


# -- GitHub Actions: only flowbatch's own workflow commands -------------------------------
# The runner takes every line of a step's stdout and stderr that starts, after blanks,
# with `::` as a workflow command (`::add-mask::`, `::stop-commands::`, `::error`...).
# Under GITHUB_ACTIONS every line flowbatch prints goes through GitHubLines, which lets
# such a line through only when flowbatch itself wrote it with `workflow_command`.


def on_github() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def escape_data(text: str) -> str:
    """A command's message, as @actions/core's escapeData: % CR LF."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A command's property value, as @actions/core's escapeProperty: % CR LF : ,"""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


_OWN_COMMANDS: set[str] = set()


def workflow_command(line: str, *, err: bool = True) -> None:
    """Print `line`, a workflow command flowbatch built, as it is (stderr, or stdout)."""
    _OWN_COMMANDS.add(line)
    click.echo(line, err=err)


def _defused(line: str) -> str:
    """A line that would start a workflow command, made not to: a backslash before it.
    The runner trims only blanks before looking for `::`."""
    if not line.lstrip().startswith("::"):
        return line
    if line in _OWN_COMMANDS:
        _OWN_COMMANDS.discard(line)
        return line
    return "\\" + line


# The runner also takes `##[command]` (the old syntax) anywhere in a line.
OLD_STYLE = "##["


def _safe(text: str, *, at_start: bool) -> str:
    """`text` (part of one line) as the runner may see it, defused: the runner reads lines
    as .NET's ReadLine does, so a CR alone starts a line too; and `##[` becomes `##\\[`."""
    pieces = text.split("\r")
    for i, piece in enumerate(pieces):
        if i > 0 or at_start:
            pieces[i] = _defused(piece)
    return "\r".join(pieces).replace(OLD_STYLE, "##\\[")


class GitHubLines(io.TextIOBase):
    """A text stream that passes lines on once it knows how they start, with `_defused`
    applied to each (and to what follows a CR), and no `##[` left anywhere. A line
    written in pieces is held until its start is decided; a piece's trailing `#` or CR
    until what follows it is known."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self._pending = ""
        self._mid_line = False  # part of the current line has been passed on

    def write(self, text: str) -> int:
        self._pending += text
        self._drain(final=False)
        return len(text)

    def flush(self) -> None:
        self._drain(final=True)
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding

    @property
    def buffer(self) -> BinaryIO:
        """The binary stream below, for bytes that are written after `flush`."""
        self.flush()
        return self._stream.buffer

    def _drain(self, *, final: bool) -> None:
        out = []
        while self._pending:
            end = self._pending.find("\n")
            if end < 0:
                piece, held = self._pending, ""
                if not final:
                    # what follows decides: `#` + `#[`, CR + `::`, blanks + `::`
                    held = piece[len(piece.rstrip("#\r")) :]
                    piece = piece[: len(piece) - len(held)]
                    after_cr = piece.rpartition("\r")[2]
                    undecided = after_cr.lstrip() in ("", ":")
                    if not piece or (undecided and ("\r" in piece or not self._mid_line)):
                        break
                out.append(_safe(piece, at_start=not self._mid_line))
                self._pending = held
                self._mid_line = True
                break
            line, self._pending = self._pending[:end], self._pending[end + 1 :]
            out.append(_safe(line, at_start=not self._mid_line) + "\n")
            self._mid_line = False
        if out:
            self._stream.write("".join(out))


def json_text(value: object) -> str:
    """`value` as indented JSON; under GitHub Actions with `##[` inside strings written
    `##\\u005b`, the same JSON value that GitHubLines has nothing to change in."""
    text = json.dumps(value, sort_keys=True, indent=2)
    return text.replace(OLD_STYLE, "##\\u005b") if on_github() else text


def guard_workflow_commands() -> None:
    """Under GitHub Actions, send stdout and stderr through GitHubLines."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, GitHubLines):
            setattr(sys, name, cast(TextIO, GitHubLines(stream)))


def storable(text: str) -> str:
    """`text` as the store can hold it. An argument that is not valid UTF-8 reaches Python
    with lone surrogates, which SQLite cannot encode: its bad bytes become U+FFFD (an id
    then matches nothing and says so; a reason or a path keeps the rest)."""
    try:
        raw = text.encode("utf-8", "surrogateescape")  # the argument's own bytes
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")


class StoredText(click.ParamType[str, str]):
    """A text option whose value goes to the store: `storable`."""

    name = "text"

    def convert(self, value: str, param: click.Parameter | None, ctx: click.Context | None) -> str:
        return storable(value)


STORED_TEXT = StoredText()


def resolve_job_id(store: Store, text: str) -> str:
    """The job id `text` stands for: an id (or `ID:INDEX` for an array child), the
    `NAME` or `NAME:INDEX` of a job of the latest run, or a unique prefix of an id
    (`PREFIX:INDEX` too). A name is taken before a prefix. StoreError for an ambiguous
    prefix (naming the candidates), else the store's own error for `text` (with its
    suggestion) when nothing matches."""
    from flowbatch.store.jobstore import StoreError

    text = storable(text)
    try:
        store.describe(text)
        return text
    except StoreError as err:
        not_found = err
    base, sep, index = text.rpartition(":")
    if not (sep and index.isdigit()):
        base, index = text, ""
    suffix = f":{index}" if index else ""
    if not base:
        raise not_found
    latest = store.latest_run()
    if latest is not None:
        named = store.jobs(run_id=latest, name=base)
        if len(named) == 1:
            return f"{named[0]['jobId']}{suffix}"
    found = store.job_ids_starting(base)
    if len(found) == 1 and found[0] + suffix != text:
        return f"{found[0]}{suffix}"
    if len(found) > 1:
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        raise StoreError(f"`{base}` is the start of several job ids: {shown}; give more of it")
    if not found and any(run["runId"] == text for run in store.runs()):
        raise StoreError(
            f"`{text}` is a run, not a job: `flowbatch jobs --run {text}` lists its jobs"
        )
    earlier = store.jobs(name=base) if latest is not None and not found else []
    if earlier:  # a name is looked up in the latest run only: say where it did run
        last = earlier[-1]
        raise StoreError(
            f"no job named `{base}` in the latest run ({latest}); it ran in run "
            f"{last['runId']} as job `{last['jobId']}{suffix}`"
        )
    raise not_found
