"""The lexer of the .flow language: one master regular expression, scanned by `re` in C.

Why not lark's lexer: it tries each terminal's pattern in turn at every position and
costs about three times as much per token as one compiled alternation; on a pipeline of
10,000 jobs that was a second of `flowbatch validate`. Tokens are plain tuples rather
than lark's `Token` (a str subclass with eight attributes to set): a tuple is built in
one step, and the parser only ever reads a token's kind. The kinds are the grammar's
terminal names, so `grammar/flow.lark` stays the one description of the language (its
terminal definitions document the same shapes and are what lark's own lexer would use).

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

# The commonest tokens come first: `re` tries the alternatives in order. LONG_STRING
# must come before STRING (`"""` starts with the empty string `""`).
_MASTER = re.compile(
    r"""
    (?P<NAME>[A-Za-z][A-Za-z0-9_\-]*)
  | (?P<WS>[\t \f]+)
  | (?P<PUNCT>[{}\[\]()=:,.])
  | (?P<_NL>(?:(?:\#[^\n]*)?\r?\n[\t ]*)+)
  | (?P<LONG_STRING>\"\"\"(?:.|\n)*?\"\"\")
  | (?P<STRING>"(?:[^"\\\n]|\\.)*")
  | (?P<SIZE>[0-9]+(?:\.[0-9]+)?(?:KiB|MiB|GiB|TiB|KB|MB|GB|TB)(?![A-Za-z0-9_]))
  | (?P<DURATION>(?:[0-9]+[dhms])+(?![A-Za-z0-9_]))
  | (?P<NUMBER>[0-9]+(?:\.[0-9]+)?(?![A-Za-z_]))
  | (?P<CONTINUATION>\\[\t ]*\r?\n)
  | (?P<ERROR>[\s\S])
    """,
    re.VERBOSE,
)
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
