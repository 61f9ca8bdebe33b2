"""Text to `syntax.File`: the lexer's tokens, run through the grammar's LALR(1) tables
(`flowbatch.lang.tables`), with a syntax node built at each reduction (`_Build`).

Errors are put into words by `parse_errors`: token names become words, common mistakes
get a hint, and nothing of lark's reaches a user.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import flowbatch.lang.syntax as s
from flowbatch.lang import tables as lalr
from flowbatch.lang.diagnostics import FlowError, Kind, Source, Span
from flowbatch.lang.lexer import MAX_NESTING, LexError, Token, TooDeep, tokens

_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
_MAX_NAME = 128
# Texts up to this long are kept once per file however often they are written (keys,
# block kinds, `"true"`, a queue's name): 10,000 jobs otherwise keep 10,000 copies
# of each in the syntax tree, and of every value in the model made from it.
_SHARED_MAX = 64


def parse(text: str, path: str) -> s.File:
    """The surface tree of `text`; raises FlowError(Kind.SYNTAX) pointing at the problem."""
    source = Source(path, text)
    build = _Build(source)
    try:
        statements: list[s.Statement] = lalr.drive(_tables(), tokens(text + "\n"), build)
    except _Bad as bad:
        raise bad.error(source) from None
    except LexError as exc:
        from flowbatch.lang.parse_errors import bad_character  # on an error only

        raise bad_character(source, exc.line, exc.column) from None
    except TooDeep as exc:
        from flowbatch.lang.messages import flow_error

        at = Span(source, exc.line, exc.column, exc.line, exc.column + 1)
        raise flow_error("nested-too-deep", at, limit=MAX_NESTING) from None
    except lalr.Unexpected as exc:
        from flowbatch.lang.parse_errors import translate  # on an error only

        raise translate(exc.token, exc.expected, source) from None
    if build.repeated:
        raise FlowError.many([e for m, what in build.repeated for e in _repeated_keys(m, what)])
    return s.File(source, tuple(statements))


def _repeated_keys(value: s.Map, what: str) -> list[FlowError]:
    """An error at each key set again in the same block or map, naming the first."""
    from flowbatch.lang.messages import flow_error  # on an error only

    first: dict[str, s.Entry] = {}
    errors = []
    for entry in value.entries:
        earlier = first.setdefault(entry.key, entry)
        if earlier is not entry:
            errors.append(
                flow_error(
                    "key-set-twice",
                    entry.key_span,
                    what=what,
                    key=entry.key,
                    first=earlier.key_span,
                )
            )
    return errors


@functools.lru_cache(maxsize=1)
def _tables() -> lalr.Linked:
    return lalr.link(lalr.load("flowbatch", "flow.lark", _Build), _Build)


# -- building syntax nodes -----------------------------------------------------------------


class _Bad(Exception):
    """A lexically valid token with an invalid value (an over-long name, a bad escape)."""

    def __init__(self, message: str, token: Token, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.token, self.hint = message, token, hint

    def error(self, source: Source) -> FlowError:
        _, _, line, col, end_line, end_col = self.token
        return FlowError(
            Kind.SYNTAX, self.message, Span(source, line, col, end_line, end_col), hint=self.hint
        )


class _Build:
    """One method per grammar rule, named after it (or after its alias), given the rule's
    children: tokens, the values of the rules below, and None for separators. A rule
    with optional parts has one expansion per combination, so a method finds its parts
    by kind (tokens are tuples, lists come from `entries`, `items` and `(...)*`), not
    by position alone."""

    def __init__(self, source: Source) -> None:
        self.source = source
        # Blocks and maps that set a key twice, and what their keys are called;
        # reported once the whole file is parsed, every one of them.
        self.repeated: list[tuple[s.Map, str]] = []
        self._texts: dict[str, str] = {}

    def shared(self, text: str) -> str:
        """`text`, or the equal string met before in this file (see _SHARED_MAX)."""
        if len(text) > _SHARED_MAX:
            return text
        return self._texts.setdefault(text, text)

    def span(self, tok: Token) -> Span:
        return Span(self.source, tok[2], tok[3], tok[4], tok[5])

    def join(self, first: Token, last: Token) -> Span:
        return Span(self.source, first[2], first[3], last[4], last[5])

    def start(self, c: list[Any]) -> list[s.Statement]:
        statements: list[s.Statement] = []
        for item in c:
            if item.__class__ is list:
                statements.extend(item)
            elif item.__class__ is not tuple:  # not a newline
                statements.append(item)
        return statements

    def star(self, c: list[Any]) -> list[Any]:
        """`(sep item)*`, left-recursive: [sep, item] or [list, sep, item]."""
        if len(c) == 2:
            return [c[1]]
        c[0].append(c[2])
        result: list[Any] = c[0]
        return result

    def separator(self, c: list[Any]) -> None:
        return None

    def import_stmt(self, c: list[Any]) -> s.Import:
        span = self.span(c[1])
        return s.Import(span, _unescape(c[1]), span)

    def param_stmt(self, c: list[Any]) -> s.Param:
        _, name, _, value = c
        name_span = self.span(name)
        return s.Param(_join(name_span, value.span), _name(name), name_span, value)

    def block_stmt(self, c: list[Any]) -> s.Block:
        kind, name, body = c[0], c[1], c[-1]
        if self.repeated and self.repeated[-1][0] is body:  # reduced just before
            self.repeated[-1] = (body, "attribute")
        parent: Token | None = c[2] if len(c) == 4 else None
        return s.Block(
            _join(self.span(kind), body.span),
            self.shared(kind[1]),
            _name(name),
            self.span(name),
            _name(parent) if parent is not None else None,
            self.span(parent) if parent is not None else None,
            body,
        )

    def parent(self, c: list[Any]) -> Token:
        name: Token = c[1]
        return name

    def body(self, c: list[Any]) -> s.Map:
        entries = c[-2] if c[-2].__class__ is list else ()
        value = s.Map(self.join(c[0], c[-1]), tuple(entries))
        if len(entries) > 1 and len({e.key for e in entries}) < len(entries):
            self.repeated.append((value, "key"))
        return value

    def entries(self, c: list[Any]) -> list[s.Entry]:
        if len(c) > 1 and c[1].__class__ is list:
            return [c[0], *c[1]]
        return [c[0]]

    items = entries

    def assign(self, c: list[Any]) -> s.Entry:
        key, _, value = c
        key_span = self.span(key)
        return s.Entry(_join(key_span, value.span), self.shared(_key(key)), key_span, value)

    def nested(self, c: list[Any]) -> s.Entry:
        key, body = c
        key_span = self.span(key)
        return s.Entry(_join(key_span, body.span), self.shared(_key(key)), key_span, body)

    def listing(self, c: list[Any]) -> s.List:
        items = c[-2] if c[-2].__class__ is list else ()
        return s.List(self.join(c[0], c[-1]), tuple(items))

    def string(self, c: list[Any]) -> s.Str:
        return s.Str(self.span(c[0]), self.shared(_unescape(c[0])))

    def long_string(self, c: list[Any]) -> s.Str:
        import textwrap  # most pipelines have no long string

        body = c[0][1][3:-3]
        if body.startswith("\n"):
            body = body[1:]
        return s.Str(self.span(c[0]), textwrap.dedent(body))

    def number(self, c: list[Any]) -> s.Number:
        text = _digits(c[0])
        value: int | float = float(text) if "." in text else int(text)
        return s.Number(self.span(c[0]), value)

    def size(self, c: list[Any]) -> s.Size:
        mib = s.size_mib(_digits(c[0]))
        if mib is None:  # the lexer's SIZE guarantees the shape: it is the magnitude
            raise _Bad(f"size `{c[0][1]}` is too large", c[0])
        return s.Size(self.span(c[0]), mib, c[0][1])

    def duration(self, c: list[Any]) -> s.Duration:
        seconds = s.duration_seconds(_digits(c[0], "too long"))
        if seconds is None:  # the lexer's DURATION guarantees the shape: it is the magnitude
            raise _Bad(f"duration `{c[0][1]}` is too long", c[0])
        return s.Duration(self.span(c[0]), seconds, c[0][1])

    def true(self, c: list[Any]) -> s.Bool:
        return s.Bool(self.span(c[0]), True)

    def false(self, c: list[Any]) -> s.Bool:
        return s.Bool(self.span(c[0]), False)

    def dotted(self, c: list[Any]) -> s.Ref:
        names: list[Token] = [c[0], *c[1]] if len(c) == 2 else c
        return s.Ref(self.join(names[0], names[-1]), tuple(_name(n) for n in names))

    def index(self, c: list[Any]) -> s.Index:
        name, _, number, close = c
        if "." in number[1]:
            hint = f"write `{name[1]}[N]`, N a whole number from 0"
            raise _Bad("an array index is a whole number", number, hint=hint)
        index = int(_digits(number))
        return s.Index(self.join(name, close), _name(name), self.span(name), index)

    def call(self, c: list[Any]) -> s.Call:
        func, _, arg, close = c
        return s.Call(self.join(func, close), _name(func), self.span(func), arg)


def _join(start: Span, end: Span) -> Span:
    return Span(start.source, start.line, start.col, end.end_line, end.end_col)


def _name(tok: Token) -> str:
    text = tok[1]
    if len(text) > _MAX_NAME:
        raise _Bad(f"name is {len(text)} characters long; at most {_MAX_NAME} are allowed", tok)
    return text


def _digits(tok: Token, too_large: str = "too large") -> str:
    """The text of a number, size or duration, refused as `syntax.digits_problem` says."""
    text = tok[1]
    problem = s.digits_problem(text)
    if problem is not None:
        shown = text if len(text) <= 20 else text[:20] + "…"
        hint = f"whole numbers have at most {s.MAX_DIGITS} digits"
        why = too_large if problem == "too large" else problem
        raise _Bad(f"`{shown}` is {why}", tok, hint=hint)
    return text


def _key(tok: Token) -> str:
    return _unescape(tok) if tok[0] == "STRING" else _name(tok)


def _unescape(tok: Token) -> str:
    body = tok[1][1:-1]
    if "\\" not in body:
        return body

    def repl(m: re.Match[str]) -> str:
        ch = m.group(1)
        if ch not in _ESCAPES:
            raise _Bad(f"unknown escape `\\{ch}` in string", tok, hint='use \\n, \\t, \\" or \\\\')
        return _ESCAPES[ch]

    return re.sub(r"\\(.)", repl, body)
