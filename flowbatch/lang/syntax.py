"""The surface tree: what the user wrote, every part with its span.

`parse` builds it; `analyze` reads it. Nothing here knows what an attribute means.
The nodes are read-only by convention, not frozen: a frozen dataclass pays for
`object.__setattr__` on every field, and a pipeline of 10,000 jobs has ~100,000 nodes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flowbatch.lang.diagnostics import Source, Span
from flowbatch.lang.lexer import DURATION_UNIT, DURATION_UNITS, SIZE_UNIT, SIZE_UNITS


@dataclass(slots=True)
class Node:
    """Every node: where in the source it was written."""

    span: Span = field(repr=False, compare=False)


@dataclass(slots=True)
class Str(Node):
    """A string literal, its escapes resolved."""

    value: str


@dataclass(slots=True)
class Number(Node):
    """An integer or a decimal number."""

    value: int | float


@dataclass(slots=True)
class Size(Node):
    """A size such as `8GiB`."""

    mib: float  # sizes are stored in MiB, as AWS does
    text: str


@dataclass(slots=True)
class Duration(Node):
    """A duration such as `1h30m`."""

    seconds: float
    text: str


@dataclass(slots=True)
class Bool(Node):
    """`true` or `false`."""

    value: bool


@dataclass(slots=True)
class List(Node):
    """`[a, b, c]`."""

    items: tuple[Value, ...]


@dataclass(slots=True)
class Entry(Node):
    """`key = value` in a block or a map."""

    key: str
    key_span: Span = field(repr=False, compare=False)
    value: Value


@dataclass(slots=True)
class Map(Node):
    """A `{ ... }` body: a block's attributes or a map value (the same thing)."""

    entries: tuple[Entry, ...]

    def get(self, key: str) -> Entry | None:
        for entry in self.entries:
            if entry.key == key:
                return entry
        return None


@dataclass(slots=True)
class Ref(Node):
    """A bare or dotted name: `frames`, `params.frames`."""

    parts: tuple[str, ...]

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


@dataclass(slots=True)
class Index(Node):
    """`frames[7]`: one element of an array job."""

    name: str
    name_span: Span = field(repr=False, compare=False)
    index: int


@dataclass(slots=True)
class Call(Node):
    """`n_to_n(frames)`."""

    func: str
    func_span: Span = field(repr=False, compare=False)
    arg: Value


Value = Str | Number | Size | Duration | Bool | List | Map | Ref | Index | Call


@dataclass(slots=True)
class Import(Node):
    """`import "other.flow"`."""

    path: str
    path_span: Span = field(repr=False, compare=False)


@dataclass(slots=True)
class Param(Node):
    """`param NAME = VALUE`."""

    name: str
    name_span: Span = field(repr=False, compare=False)
    value: Value


@dataclass(slots=True)
class Block(Node):
    """`compute|queue|definition|job NAME [: PARENT] { ... }`."""

    kind: str
    name: str
    name_span: Span = field(repr=False, compare=False)
    parent: str | None
    parent_span: Span | None = field(repr=False, compare=False)
    body: Map


Statement = Import | Param | Block


@dataclass(slots=True)
class File:
    """One parsed file: its source and its statements in order."""

    source: Source
    statements: tuple[Statement, ...]


def describe(value: Value) -> str:
    """What kind of value this is, in words, for error messages."""
    return _WORDS[type(value)]


_WORDS: dict[type, str] = {
    Str: "a string",
    Number: "a number",
    Size: "a size",
    Duration: "a duration",
    Bool: "a boolean",
    List: "a list",
    Map: "a map",
    Ref: "a name",
    Index: "an array element",
    Call: "a call",
}


# The units are the lexer's: one list for the tokens, the values and `-p NAME=VALUE`.
# ASCII digits only, as the lexer takes them (`\d` would take any script's digits).
_SIZE = re.compile(rf"([0-9]+(?:\.[0-9]+)?)({SIZE_UNIT})")
_DURATION = re.compile(rf"(?:[0-9]+{DURATION_UNIT})+")
_DURATION_PART = re.compile(rf"([0-9]+)({DURATION_UNIT})")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")

MAX_DIGITS = 15
_MAX_TEXT = 100
# A whole part (not a fraction) with more than MAX_DIGITS significant digits.
_TOO_LARGE = re.compile(rf"(?<![0-9.])0*[1-9][0-9]{{{MAX_DIGITS},}}")


def digits_problem(text: str) -> str | None:
    """ "too long" or "too large" for the text of a number, size or duration whose whole
    part has more than MAX_DIGITS significant digits (no count, size or duration comes
    near) or that is absurdly long (Python's int() refuses 4,300 digits, leading zeros
    included); None when it is fine."""
    if len(text) <= MAX_DIGITS:
        return None
    if len(text) > _MAX_TEXT:
        return "too long"
    return "too large" if _TOO_LARGE.search(text) else None


def number_value(text: str) -> int | float | None:
    """The value of `text` if it is a number exactly as the language writes one (`12`,
    `0.5`: no sign, exponent, `_`, spaces, `nan` or `inf`), else None."""
    if not _NUMBER.fullmatch(text) or digits_problem(text):
        return None
    return float(text) if "." in text else int(text)


# No size or duration comes near this; past it float() overflows to inf or raises.
_LIMIT = 1e15


def size_mib(text: str) -> float | None:
    """`2GiB` -> 2048.0 (MiB); None if `text` is not a size (or an absurdly large one)."""
    m = _SIZE.fullmatch(text)
    if not m or digits_problem(m.group(1)):
        return None
    mib = float(m.group(1)) * SIZE_UNITS[m.group(2)]
    return mib if mib < _LIMIT else None


def duration_seconds(text: str) -> float | None:
    """`1h30m` -> 5400.0; None if `text` is not a duration (or an absurdly long one)."""
    if not _DURATION.fullmatch(text) or digits_problem(text):
        return None
    seconds = sum(int(n) * DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))
    return float(seconds) if seconds < _LIMIT else None
