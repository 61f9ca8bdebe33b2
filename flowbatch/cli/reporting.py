"""Errors on stderr, in one place: any FlowbatchError as text (`report_error`, located
ones as `path:line:col` with the line and a caret), and anything else as a bug
(`report_bug`: the traceback, a request to report it, exit 70).
"""

from __future__ import annotations

from typing import NoReturn

import click

from flowbatch.cli.github import escape_data, github_annotation, on_github, workflow_command
from flowbatch.errors import EXIT_BUG, FlowbatchError
from flowbatch.lang.diagnostics import FlowError, render


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
