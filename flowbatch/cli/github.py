"""GitHub Actions: flowbatch's own workflow commands (`::error` annotations), escaped as
GitHub's toolkit escapes them, and no other line able to act as one.
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import BinaryIO, TextIO, cast

import click

from flowbatch.lang.diagnostics import FlowError


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
