"""Text to `syntax.File`: the only module that imports lark.

The grammar (`grammar/flow.lark`, installed as `flowbatch/flow.lark`) is loaded from
the installed package. Lark's errors are translated here, at the boundary: token
names become words, common mistakes get a hint, and a raw lark message never reaches
a user.

Imports: syntax, diagnostics; lark.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import textwrap
from typing import Any, cast

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedEOF, UnexpectedInput, UnexpectedToken

import flowbatch.syntax as s
from flowbatch.diagnostics import FlowError, Kind, Source, Span
from flowbatch.lexer import FlowLexer, LexError

TOKEN_WORDS = {
    "NAME": "a name",
    "STRING": "a string",
    "LONG_STRING": "a string",
    "NUMBER": "a number",
    "SIZE": "a size",
    "DURATION": "a duration",
    "BLOCK_KIND": "`compute`, `queue`, `definition` or `job`",
    "_NL": "end of line",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "EQUAL": "`=`",
    "COLON": "`:`",
    "COMMA": "`,`",
    "DOT": "`.`",
    "IMPORT": "`import`",
    "PARAM": "`param`",
    "TRUE": "`true`",
    "FALSE": "`false`",
    "$END": "end of file",
}

_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
_MAX_NAME = 128


def parse(text: str, path: str) -> s.File:
    """The surface tree of `text`; raises FlowError(Kind.SYNTAX) pointing at the problem."""
    source = Source(path, text)
    parser = _parser()
    _building.append(source)
    try:
        statements = cast(list[s.Statement], parser.parse(text + "\n"))
    except _Bad as bad:
        raise bad.error(source) from None
    except LexError as exc:
        raise _bad_character(source, exc.line, exc.column) from None
    except UnexpectedInput as exc:
        raise _translate(exc, source) from None
    finally:
        _building.pop()
    return s.File(source, tuple(statements))


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark.open_from_package(
        "flowbatch",
        "flow.lark",
        parser="lalr",
        propagate_positions=False,  # spans are built from tokens (see _Build)
        maybe_placeholders=False,
        lexer=FlowLexer,
        transformer=_Build(),
        cache=_cache_path(),
    )


def _cache_path() -> str | bool:
    """Where lark keeps the grammar's LALR tables between runs: building them costs about
    50 ms of every start, loading them 8. Lark checks the grammar's hash before using the
    file. It is a pickle, so it lives in this user's own cache directory, not in /tmp,
    where another user could plant one."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    directory = os.path.join(base, "flowbatch")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError:
        return False
    major, minor = sys.version_info[:2]
    return os.path.join(directory, f"grammar-py{major}{minor}.lark-cache")


class _Bad(Exception):
    """A lexically valid token with an invalid value (an over-long name, a bad escape)."""

    def __init__(self, message: str, token: Token, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.token, self.hint = message, token, hint

    def error(self, source: Source) -> FlowError:
        span = _token_span(self.token, source)
        return FlowError(Kind.SYNTAX, self.message, span, hint=self.hint)


# Spans need the Source, which lark's inline transformer (built once, cached) cannot be
# handed per call: `parse` pushes it here for the duration of one parse.
_building: list[Source] = []


def _token_span(tok: Token, source: Source | None = None) -> Span:
    src = source or _building[-1]
    return Span(src, tok.line or 1, tok.column or 1, tok.end_line or 1, tok.end_column or 1)


def _name(tok: Token) -> str:
    if len(tok) > _MAX_NAME:
        raise _Bad(f"name is {len(tok)} characters long; at most {_MAX_NAME} are allowed", tok)
    return str(tok)


def _unescape(tok: Token) -> str:
    body = tok[1:-1]
    if "\\" not in body:
        return str(body)

    def repl(m: re.Match[str]) -> str:
        ch = m.group(1)
        if ch not in _ESCAPES:
            raise _Bad(f"unknown escape `\\{ch}` in string", tok, hint='use \\n, \\t, \\" or \\\\')
        return _ESCAPES[ch]

    return re.sub(r"\\(.)", repl, body)


def _join(start: Span, end: Span) -> Span:
    return Span(start.source, start.line, start.col, end.end_line, end.end_col)


def _span_of(item: Token | s.Node) -> Span:
    return _token_span(item) if isinstance(item, Token) else item.span


@v_args(inline=True)
class _Build(Transformer[Token, Any]):
    """Builds syntax nodes while lark parses (no intermediate tree). Lark's inline
    transformer gets no rule positions, so each node's span is joined from its first
    and last child (braces and brackets are named terminals for that reason)."""

    @v_args(inline=False)
    def start(self, children: list[s.Statement]) -> list[s.Statement]:
        return children

    def import_stmt(self, path: Token) -> s.Import:
        span = _token_span(path)
        return s.Import(span, _unescape(path), span)

    def param_stmt(self, name: Token, value: s.Value) -> s.Param:
        name_span = _token_span(name)
        return s.Param(_join(name_span, value.span), _name(name), name_span, value)

    @v_args(inline=False)
    def block_stmt(self, children: list[Any]) -> s.Block:
        kind, name = children[0], children[1]
        parent: Token | None = children[2] if len(children) == 4 else None
        body: s.Map = children[-1]
        return s.Block(
            _join(_token_span(kind), body.span),
            str(kind),
            _name(name),
            _token_span(name),
            _name(parent) if parent is not None else None,
            _token_span(parent) if parent is not None else None,
            body,
        )

    def parent(self, name: Token) -> Token:
        return name

    @v_args(inline=False)
    def body(self, children: list[Any]) -> s.Map:
        entries: tuple[s.Entry, ...] = children[1] if len(children) == 3 else ()
        return s.Map(_join(_token_span(children[0]), _token_span(children[-1])), entries)

    @v_args(inline=False)
    def entries(self, children: list[s.Entry]) -> tuple[s.Entry, ...]:
        return tuple(children)

    def assign(self, key: Token, value: s.Value) -> s.Entry:
        key_span = _token_span(key)
        return s.Entry(_join(key_span, value.span), _key(key), key_span, value)

    def nested(self, key: Token, body: s.Map) -> s.Entry:
        key_span = _token_span(key)
        return s.Entry(_join(key_span, body.span), _key(key), key_span, body)

    @v_args(inline=False)
    def listing(self, children: list[Any]) -> s.List:
        items: tuple[s.Value, ...] = children[1] if len(children) == 3 else ()
        return s.List(_join(_token_span(children[0]), _token_span(children[-1])), items)

    @v_args(inline=False)
    def items(self, children: list[s.Value]) -> tuple[s.Value, ...]:
        return tuple(children)

    def string(self, tok: Token) -> s.Str:
        return s.Str(_token_span(tok), _unescape(tok))

    def long_string(self, tok: Token) -> s.Str:
        body = tok[3:-3]
        if body.startswith("\n"):
            body = body[1:]
        return s.Str(_token_span(tok), textwrap.dedent(body))

    def number(self, tok: Token) -> s.Number:
        value: int | float = float(tok) if "." in tok else int(tok)
        return s.Number(_token_span(tok), value)

    def size(self, tok: Token) -> s.Size:
        mib = s.size_mib(tok)
        assert mib is not None  # the grammar's SIZE guarantees the shape
        return s.Size(_token_span(tok), mib, str(tok))

    def duration(self, tok: Token) -> s.Duration:
        seconds = s.duration_seconds(tok)
        assert seconds is not None  # the grammar's DURATION guarantees the shape
        return s.Duration(_token_span(tok), seconds, str(tok))

    def true(self, tok: Token) -> s.Bool:
        return s.Bool(_token_span(tok), True)

    def false(self, tok: Token) -> s.Bool:
        return s.Bool(_token_span(tok), False)

    @v_args(inline=False)
    def dotted(self, names: list[Token]) -> s.Ref:
        span = _join(_token_span(names[0]), _token_span(names[-1]))
        return s.Ref(span, tuple(_name(n) for n in names))

    def index(self, name: Token, number: Token, close: Token) -> s.Index:
        name_span = _token_span(name)
        span = _join(name_span, _token_span(close))
        return s.Index(span, _name(name), name_span, int(number))

    def call(self, func: Token, arg: s.Value, close: Token) -> s.Call:
        func_span = _token_span(func)
        return s.Call(_join(func_span, _token_span(close)), _name(func), func_span, arg)


def _key(tok: Token) -> str:
    return _unescape(tok) if tok.type == "STRING" else _name(tok)


# -- lark errors, in words ---------------------------------------------------------------


def _translate(exc: UnexpectedInput, source: Source) -> FlowError:
    line = getattr(exc, "line", -1)
    col = getattr(exc, "column", -1)
    if (isinstance(exc, UnexpectedToken) and exc.token.type == "$END") or isinstance(
        exc, UnexpectedEOF
    ):
        return _at_end(source)
    if line is None or line < 1:
        return _at_end(source)
    assert isinstance(exc, UnexpectedToken)
    tok = exc.token
    span = Span(source, line, col, tok.end_line or line, tok.end_column or col + 1)
    if tok.type == "_NL":  # underline the end of the line, not the newline itself
        width = len(source.line(line))
        span = Span(source, line, max(1, col), line, max(col, width) + 1)
    expected = _expected_words(exc.expected)
    got = _describe(tok)
    message = f"unexpected {got}"
    if expected:
        message += f"; expected {expected}"
    return FlowError(Kind.SYNTAX, message, span, hint=_hint(tok, exc.expected, source))


def _describe(tok: Token) -> str:
    if tok.type == "_NL":
        return "end of line"
    if tok.type in ("NAME", "BLOCK_KIND", "NUMBER", "SIZE", "DURATION", "TRUE", "FALSE"):
        word = {"BLOCK_KIND": "keyword", "TRUE": "keyword", "FALSE": "keyword"}.get(
            tok.type, TOKEN_WORDS.get(tok.type, "text").split(" ", 1)[-1]
        )  # "a name" -> "name `x`"
        return f"{word} `{tok}`"
    if tok.type in ("STRING", "LONG_STRING"):
        return "string"
    known = TOKEN_WORDS.get(tok.type)
    return known if known else f"`{tok}`"


def _expected_words(expected: set[str] | frozenset[str]) -> str:
    if "BLOCK_KIND" in expected:
        return "a statement (`import`, `param`, `compute`, `queue`, `definition` or `job`)"
    words = sorted({TOKEN_WORDS.get(t, f"`{t.lower()}`") for t in expected if t != "_NL"})
    if "_NL" in expected:
        words.append("end of line")
    if len(words) > 5:
        return ""
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


def _hint(tok: Token, expected: set[str] | frozenset[str], source: Source) -> str | None:
    if "EQUAL" in expected and tok.type != "EQUAL":
        if tok.type == "COLON":
            return "attributes are written `name = value`, not `name: value`"
        return "attributes are written `name = value`, one per line"
    if tok.type == "NAME" and "BLOCK_KIND" in expected:
        return (
            "a file holds `import`, `param`, `compute`, `queue`, `definition` and `job` statements"
        )
    if tok.type in ("NAME", "STRING", "NUMBER") and "_NL" in expected:
        return "put each attribute on its own line, or separate list items with `,`"
    if tok.type == "RBRACE":
        return "a value is missing before `}`"
    return None


def _at_end(source: Source) -> FlowError:
    lines = source.text.rstrip("\n").splitlines() or [""]
    line = len(lines)
    opened = source.text.count("{") - source.text.count("}")
    hint = "a `{` is not closed" if opened > 0 else None
    if source.text.count("[") > source.text.count("]"):
        hint = "a `[` is not closed"
    span = Span(source, line, max(1, len(lines[-1]) + 1), line, len(lines[-1]) + 2)
    return FlowError(Kind.SYNTAX, "unexpected end of file", span, hint=hint)


def _bad_character(source: Source, line: int, col: int) -> FlowError:
    text = source.line(line)
    ch = text[col - 1] if 0 < col <= len(text) else ""
    span = Span(source, line, col, line, col + 1)
    if ch == '"':
        return FlowError(
            Kind.SYNTAX,
            "unterminated string",
            Span(source, line, col, line, len(text) + 1),
            hint='close it with `"` on the same line, or use """...""" for multi-line text',
        )
    if ch.isdigit():
        m = re.match(r"\d+(\.\d+)?([A-Za-z_]\w*)", text[col - 1 :])
        if m:
            unit = m.group(2)
            end = col + len(m.group(0))
            return FlowError(
                Kind.SYNTAX,
                f"unknown unit `{unit}`",
                Span(source, line, col, line, end),
                hint="sizes: KiB, MiB, GiB, TiB, KB, MB, GB, TB; durations: s, m, h, d "
                "(e.g. 512MiB, 1h30m)",
            )
    if ch == "'":
        return FlowError(
            Kind.SYNTAX,
            "unexpected character `'`",
            span,
            hint='strings are written with double quotes: "..."',
        )
    shown = repr(ch)[1:-1] if ch else "end of line"
    return FlowError(Kind.SYNTAX, f"unexpected character `{shown}`", span)
