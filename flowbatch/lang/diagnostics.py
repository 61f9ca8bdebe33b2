"""Diagnostics: where something is in a source file, and what is wrong there.

Errors are data first (`FlowError` with a closed `Kind`, a `Span` and a `detail`
mapping of facts) and text second: `messages.MESSAGES` words each kind of problem,
and `render()` gives every error its one shape.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

from flowbatch.errors import FlowbatchError


@dataclass(frozen=True, slots=True)
class Source:
    """One file's text, kept so that errors can quote it."""

    path: str
    text: str

    def line(self, number: int) -> str:
        """The text of line `number` (from 1), without its newline; '' past the end."""
        # Lines end at "\n" only, as the lexer counts them: str.splitlines would also
        # end one at a form feed or a lone "\r" and quote the wrong line.
        lines = self.text.split("\n")
        if not 0 < number <= len(lines):
            return ""
        return lines[number - 1].removesuffix("\r")


class Span(NamedTuple):
    """A region of a source file. Lines and columns count from 1; `end_col` is exclusive.

    A NamedTuple rather than a frozen dataclass: the parser makes one for most tokens,
    and a tuple is several times cheaper to build (10,000 jobs are ~140,000 spans)."""

    source: Source
    line: int
    col: int
    end_line: int
    end_col: int

    @property
    def path(self) -> str:
        return self.source.path

    def copy(self) -> Span:
        """An equal span of its own, for the model to keep: the syntax tree's spans then
        all die together once the model is made, and the allocator gets their memory
        back as whole pools that a run reuses (10,000 jobs: `flowbatch run`'s peak RSS
        55 -> 50 MiB), rather than pools each pinned by a span the model kept."""
        return Span(*self)

    def __repr__(self) -> str:
        return f"Span({self.source.path}:{self.line}:{self.col}-{self.end_line}:{self.end_col})"


class Kind(enum.Enum):
    """Every kind of error flowbatch reports about a pipeline."""

    SYNTAX = "syntax"
    IMPORT = "import"
    IMPORT_CYCLE = "import-cycle"
    UNKNOWN_NAME = "unknown-name"
    DUPLICATE = "duplicate"
    CYCLE = "cycle"
    BAD_VALUE = "bad-value"
    UNKNOWN_ATTRIBUTE = "unknown-attribute"
    MISSING_ATTRIBUTE = "missing-attribute"
    ARRAY_SIZE = "array-size"
    N_TO_N = "n-to-n"
    ARRAY_INDEX = "array-index"
    SEQUENTIAL = "sequential"
    TOO_MANY_DEPS = "too-many-deps"
    RETRY = "retry"
    UNSCHEDULABLE = "unschedulable"
    TEMPLATE = "template"
    PARAM_TYPE = "param-type"
    RESERVED = "reserved"
    TOO_DEEP = "too-deep"  # nesting, import chains or definition chains past their limit
    AWS_LIMIT = "aws-limit"  # fine here, refused by AWS Batch (`aws_limits`)
    CREDENTIALS = "credentials"  # a secret written into a .flow file


class FlowError(FlowbatchError):
    """A problem with a pipeline, located in its source.

    `errors` holds every problem found (at least one); the exception's own `kind`,
    `span` and `detail` are those of the first, so that the common one-error case
    reads naturally.
    """

    def __init__(
        self,
        kind: Kind,
        message: str,
        span: Span | None,
        *,
        hint: str | None = None,
        detail: Mapping[str, Any] | None = None,
        what: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.what = what  # the key of messages.MESSAGES that worded it, if one did
        self._message = message
        self.span = span
        self._hint = hint
        self.detail: Mapping[str, Any] = MappingProxyType(dict(detail or {}))
        self.errors: tuple[FlowError, ...] = (self,)

    @classmethod
    def many(cls, errors: Sequence[FlowError]) -> FlowError:
        """One exception carrying several errors, in source order."""
        ordered = sorted(errors, key=_sort_key)
        first = ordered[0]
        combined = cls(
            first.kind,
            first.message,
            first.span,
            hint=first.hint,
            detail=first.detail,
            what=first.what,
        )
        combined.errors = tuple(ordered)
        return combined

    @property
    def message(self) -> str:
        return self._message

    @property
    def hint(self) -> str | None:
        return self._hint

    def __str__(self) -> str:
        return render(self)


def _sort_key(err: FlowError) -> tuple[str, int, int]:
    if err.span is None:
        return ("", 0, 0)
    return (err.span.path, err.span.line, err.span.col)


def suggest(name: str, known: Iterable[str]) -> str | None:
    """The closest known name to a misspelt one, or None (ninja's SpellcheckString)."""
    import difflib  # on an error only: not every start pays for it

    matches = difflib.get_close_matches(name, sorted(set(known)), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: str, known: Iterable[str], what: str) -> str:
    """A hint for a failed name lookup: a suggestion, else the names that exist."""
    known = sorted(set(known))
    best = suggest(name, known)
    if best is not None:
        return f"did you mean `{best}`?"
    if not known:
        return f"no {what} is defined"
    shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
    return f"defined {what}s: {shown}"


def render(err: FlowError) -> str:
    """Every error carried by `err`, in the one shape: path:line:col, the line, a caret, a hint."""
    return "\n".join(_render_one(e) for e in err.errors)


def _render_one(err: FlowError) -> str:
    if err.span is None:
        head = f"error: {err.message}"
        return head + (f"\n  = help: {err.hint}" if err.hint else "")
    span = err.span
    raw = span.source.line(span.line)
    text = raw.expandtabs(4)
    # Columns count characters of the raw line; map them through tab expansion.
    col = len(raw[: span.col - 1].expandtabs(4)) + 1
    if span.end_line == span.line:
        end = len(raw[: span.end_col - 1].expandtabs(4)) + 1
    else:
        end = len(text.rstrip()) + 1
    width = max(1, end - col)
    number = str(span.line)
    pad = " " * len(number)
    shown, caret = _window(text.rstrip(), col)
    out = [
        f"{span.path}:{span.line}:{col}: error: {err.message}",
        f"{pad} |",
        f"{number} | {shown}",
        f"{pad} | {' ' * (caret - 1)}{'^' * max(1, min(width, len(shown) - caret + 2))}",
    ]
    if err.hint:
        out.append(f"{pad} = help: {err.hint}")
    return "\n".join(out)


# A quoted line longer than this is cut to a window around the caret: a generated
# line of thousands of characters would bury the caret (and the message) in noise.
_MAX_SHOWN = 160
_BEFORE = 40  # columns kept before the caret


def _window(text: str, col: int) -> tuple[str, int]:
    """The part of `text` to show and the caret's column in it."""
    if len(text) <= _MAX_SHOWN:
        return text, col
    start = max(0, min(col - 1 - _BEFORE, len(text) - _MAX_SHOWN))
    stop = start + _MAX_SHOWN
    head = "..." if start > 0 else ""
    tail = "..." if stop < len(text) else ""
    return head + text[start:stop] + tail, col - start + len(head)
