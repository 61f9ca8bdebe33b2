"""The lexer of the .flow language: one master regular expression, fed to lark's LALR
parser in place of lark's own lexer.

Why not lark's lexer: it tries each terminal's pattern in turn at every position and
costs about three times as much per token as one compiled alternation; on a pipeline of
10,000 jobs that was a second of `flowbatch validate`. The token names are the grammar's
own, so `grammar/flow.lark` stays the one description of the language (its terminal
definitions document the same shapes and are what lark's own lexer would use).

Context is what lark's contextual lexer gave for free and is kept here by two rules:
a statement keyword (`import`, `param`, `compute`, `queue`, `definition`, `job`) is one
only where a statement starts (top level, after a newline), so `queue = gpu` inside a
block is an attribute; and `true`/`false` are values only where a value starts.

Imports: lark (this module and parse are the only ones that may).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from lark import Token
from lark.lexer import Lexer


class LexError(Exception):
    """A character that starts no token; `line` and `column` count from 1."""

    def __init__(self, line: int, column: int) -> None:
        super().__init__(f"unexpected character at {line}:{column}")
        self.line = line
        self.column = column


_MASTER = re.compile(
    r"""
    (?P<LONG_STRING>\"\"\"(?:.|\n)*?\"\"\")
  | (?P<STRING>"(?:[^"\\\n]|\\.)*")
  | (?P<SIZE>\d+(?:\.\d+)?(?:KiB|MiB|GiB|TiB|KB|MB|GB|TB)(?![A-Za-z0-9_]))
  | (?P<DURATION>(?:\d+[dhms])+(?![A-Za-z0-9_]))
  | (?P<NUMBER>\d+(?:\.\d+)?(?![A-Za-z_]))
  | (?P<NAME>[A-Za-z][A-Za-z0-9_\-]*)
  | (?P<_NL>(?:(?:\#[^\n]*)?\r?\n[\t ]*)+)
  | (?P<WS>[\t \f]+|\\[\t ]*\r?\n)
  | (?P<PUNCT>[{}\[\]()=:,.])
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
new_str = str.__new__


def tokens(text: str) -> Iterator[Token]:
    """The tokens of `text`, with lark's positions; raises LexError."""
    match = _MASTER.match
    pos, line, line_start, end = 0, 1, 0, len(text)
    depth = 0  # brackets and braces open
    brackets: list[str] = []
    previous = "_NL"
    while pos < end:
        m = match(text, pos)
        if m is None:
            raise LexError(line, pos - line_start + 1)
        kind = m.lastgroup
        value = m.group()
        column = pos - line_start + 1
        start_line = line
        newlines = value.count("\n")
        if newlines:
            line += newlines
            line_start = pos + value.rindex("\n") + 1
        new_pos = m.end()
        if kind == "WS":
            pos = new_pos
            continue
        if kind == "PUNCT":
            kind = _PUNCT[value]
            if value in "{[(":
                depth += 1
                brackets.append(value)
            elif value in "}])" and brackets:
                depth -= 1
                brackets.pop()
        elif kind == "NAME":
            if depth == 0 and previous == "_NL" and value in _STATEMENT:
                kind = _STATEMENT[value]
            elif value in _BOOLEANS and (
                previous in _VALUE_STARTS or (previous == "_NL" and brackets[-1:] == ["["])
            ):
                kind = _BOOLEANS[value]
        assert kind is not None
        # Token(...) goes through lark's argument-compatibility shim, which costs more
        # than the rest of the lexer; the slots are set directly instead.
        tok = new_str(Token, value)
        tok.type, tok.value, tok.start_pos = kind, value, pos
        tok.line, tok.column = start_line, column
        tok.end_line, tok.end_column, tok.end_pos = line, new_pos - line_start + 1, new_pos
        yield tok
        previous = kind
        pos = new_pos


class FlowLexer(Lexer):
    """Plugs `tokens` into lark (lark passes its lexer configuration, unused here)."""

    def __init__(self, lexer_conf: Any) -> None:
        pass

    def lex(self, text: Any, parser_state: Any = None) -> Iterator[Token]:
        # lark hands a custom lexer the text itself, not a LexerState
        return tokens(text if isinstance(text, str) else text.text)
