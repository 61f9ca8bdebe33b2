"""The lexer of the .flow language: one master regular expression, scanned by `re` in C.

Why not lark's lexer: it tries each terminal's pattern in turn at every position and
costs about three times as much per token as one compiled alternation; on a pipeline of
10,000 jobs that was a second of `flowbatch validate`. Tokens are plain tuples rather
than lark's `Token` (a str subclass with eight attributes to set): a tuple is built in
one step, and the parser only ever reads a token's kind. The kinds are the grammar's
terminal names, and `grammar/flow.lark` stays the one description of the language: the
tests hold this lexer to it, its patterns (`PATTERNS`, the units, the keywords) against
the grammar's terminals (tests/test_lalr.py) and its tokens, kinds, text and positions,
against those of lark's own lexer on every pipeline, golden file and fuzz case
(tests/test_fuzz.py).

Context is what lark's contextual lexer gave for free and is kept here by two rules:
a statement keyword (`import`, `param`, `compute`, `queue`, `definition`, `job`) is one
only where a statement starts (top level, after a newline), so `queue = gpu` inside a
block is an attribute; and `true`/`false` are values only where a value starts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# kind, text, line, column, end line, end column (lines and columns from 1, end exclusive)
Token = tuple[str, str, int, int, int, int]


class LexError(Exception):
    """A character that starts no token; `line` and `column` count from 1."""

    def __init__(self, line: int, column: int) -> None:
        super().__init__(f"unexpected character at {line}:{column}")
        self.line = line
        self.column = column


class TooDeep(Exception):
    """An opening bracket nested more than MAX_NESTING deep, at `line` and `column`.

    Everything after the parser (resolving params, merging maps, error messages) walks
    values recursively; the bound here keeps those walks far from Python's recursion
    limit, at the cost of one comparison per opening bracket."""

    def __init__(self, line: int, column: int) -> None:
        super().__init__(f"nested too deep at {line}:{column}")
        self.line = line
        self.column = column


# Brackets, braces and parentheses open at once; no pipeline needs more than a handful.
MAX_NESTING = 100

# The units of sizes and durations, and what each is worth (sizes in MiB, as AWS counts
# memory; durations in seconds): the one list, which the SIZE and DURATION patterns
# below, `syntax` (values, `-p` overrides) and the error hints are made from. The
# grammar's SIZE and DURATION must say the same: tests/test_lalr.py compares them.
SIZE_UNITS = {
    "KiB": 1 / 1024,
    "MiB": 1.0,
    "GiB": 1024.0,
    "TiB": 1024.0**2,
    "KB": 1e3 / 2**20,
    "MB": 1e6 / 2**20,
    "GB": 1e9 / 2**20,
    "TB": 1e12 / 2**20,
}
# One letter each: `1h30m` is a sum, read letter by letter.
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SIZE_UNIT = "(?:" + "|".join(sorted(SIZE_UNITS, key=len, reverse=True)) + ")"
DURATION_UNIT = "[" + "".join(sorted(DURATION_UNITS)) + "]"

# The grammar's terminals that are patterns, and the two it ignores, written as
# grammar/flow.lark writes them (groups here do not capture): tests/test_lalr.py checks
# each against the grammar, and tests/test_fuzz.py the tokens against lark's own lexer.
# Digits are ASCII: `\d` would take any script's digits too.
PATTERNS = {
    "NAME": r"[A-Za-z][A-Za-z0-9_\-]*",
    "WS": r"[\t \f]+",
    "_NL": r"(?:(?:#[^\n]*)?\r?\n[\t ]*)+",
    "LONG_STRING": r'"""(?:.|\n)*?"""',
    "STRING": r'"(?:[^"\\\n]|\\.)*"',
    "SIZE": rf"[0-9]+(?:\.[0-9]+)?{SIZE_UNIT}(?![A-Za-z0-9_])",
    "DURATION": rf"(?:[0-9]+{DURATION_UNIT})+(?![A-Za-z0-9_])",
    "NUMBER": r"[0-9]+(?:\.[0-9]+)?(?![A-Za-z_])",
    "CONTINUATION": r"\\[\t ]*\r?\n",
}

# The commonest tokens come first: `re` tries the alternatives in order. The order
# keeps the grammar's priorities: LONG_STRING before STRING (`"""` starts with the empty
# string `""`), SIZE and DURATION before NUMBER. Brackets and punctuation are one group.
_GROUPS = {**PATTERNS, "PUNCT": r"[{}\[\]()=:,.]", "ERROR": r"[\s\S]"}
_ORDER = ("NAME", "WS", "PUNCT", "_NL", "LONG_STRING", "STRING", "SIZE", "DURATION", "NUMBER",
          "CONTINUATION", "ERROR")  # fmt: skip
_MASTER = re.compile("|".join(f"(?P<{kind}>{_GROUPS[kind]})" for kind in _ORDER))
_PUNCT = {
    "{": "LBRACE",
    "}": "RBRACE",
    "[": "LSQB",
    "]": "RSQB",
    "(": "LPAR",
    ")": "RPAR",
    "=": "EQUAL",
    ":": "COLON",
    ",": "COMMA",
    ".": "DOT",
}
_OPENS = {"LBRACE", "LSQB", "LPAR"}
_CLOSES = {"RBRACE", "RSQB", "RPAR"}
_STATEMENT = {
    "import": "IMPORT",
    "param": "PARAM",
    "compute": "BLOCK_KIND",
    "queue": "BLOCK_KIND",
    "definition": "BLOCK_KIND",
    "job": "BLOCK_KIND",
}
_VALUE_STARTS = {"EQUAL", "LSQB", "COMMA", "LPAR"}
_BOOLEANS = {"true": "TRUE", "false": "FALSE"}


def tokens(text: str) -> Iterator[Token]:
    """The tokens of `text`; raises LexError at a character that starts none, and
    TooDeep at a bracket nested more than MAX_NESTING deep."""
    line, line_start = 1, 0
    brackets: list[str] = []  # the kinds of the brackets and braces open, innermost last
    previous = "_NL"
    for m in _MASTER.finditer(text):
        kind = m.lastgroup
        if kind == "WS":
            continue
        value = m.group()
        pos = m.start()
        column = pos - line_start + 1
        if kind == "NAME":
            if not brackets and previous == "_NL" and value in _STATEMENT:
                kind = _STATEMENT[value]
            elif value in _BOOLEANS and (
                previous in _VALUE_STARTS or (previous == "_NL" and brackets[-1:] == ["LSQB"])
            ):
                kind = _BOOLEANS[value]
        elif kind == "PUNCT":
            kind = _PUNCT[value]
            if kind in _OPENS:
                brackets.append(kind)
                if len(brackets) > MAX_NESTING:
                    raise TooDeep(line, column)
            elif kind in _CLOSES and brackets:
                brackets.pop()
        elif kind in ("_NL", "LONG_STRING", "CONTINUATION"):  # the tokens that span lines
            start_line = line
            line += value.count("\n")
            if line != start_line:
                line_start = pos + value.rindex("\n") + 1
            if kind == "CONTINUATION":
                continue
            yield kind, value, start_line, column, line, m.end() - line_start + 1
            previous = kind
            continue
        elif kind == "ERROR":
            raise LexError(line, column)
        assert kind is not None
        yield kind, value, line, column, line, column + len(value)
        previous = kind
