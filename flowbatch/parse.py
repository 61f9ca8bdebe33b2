"""Text to `syntax.File`: the lexer's tokens, run through the grammar's LALR(1) tables
(`flowbatch.lalr`), with a syntax node built at each reduction (`_Build`).

Errors are put into words here: token names become words, common mistakes get a hint,
and nothing of lark's reaches a user.

Imports: syntax, diagnostics, lexer, lalr.
"""

from __future__ import annotations

import functools
import re
import textwrap
from typing import Any, NamedTuple

import flowbatch.syntax as s
from flowbatch import lalr
from flowbatch.diagnostics import FlowError, Kind, Source, Span
from flowbatch.lexer import MAX_NESTING, LexError, Token, TooDeep, tokens

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
    build = _Build(source)
    try:
        statements: list[s.Statement] = lalr.drive(_tables(), tokens(text + "\n"), build)
    except _Bad as bad:
        raise bad.error(source) from None
    except LexError as exc:
        raise _bad_character(source, exc.line, exc.column) from None
    except TooDeep as exc:
        raise FlowError(
            Kind.TOO_DEEP,
            f"nested more than {MAX_NESTING} deep",
            Span(source, exc.line, exc.column, exc.line, exc.column + 1),
            hint=f"lists and maps may be nested at most {MAX_NESTING} deep",
        ) from None
    except lalr.Unexpected as exc:
        raise _translate(exc.token, exc.expected, source) from None
    if build.repeated:
        raise FlowError.many([e for m, what in build.repeated for e in _repeated_keys(m, what)])
    return s.File(source, tuple(statements))


def _repeated_keys(value: s.Map, what: str) -> list[FlowError]:
    """An error at each key set again in the same block or map, naming the first."""
    first: dict[str, s.Entry] = {}
    errors = []
    for entry in value.entries:
        earlier = first.setdefault(entry.key, entry)
        if earlier is not entry:
            where = earlier.key_span
            errors.append(
                FlowError(
                    Kind.DUPLICATE,
                    f"{what} `{entry.key}` is set twice",
                    entry.key_span,
                    hint=f"first set on line {where.line}, column {where.col}; "
                    f"a {'block' if what == 'attribute' else 'map'} sets each key once",
                    detail={"key": entry.key, "first": where},
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
            kind[1],
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
        return s.Entry(_join(key_span, value.span), _key(key), key_span, value)

    def nested(self, c: list[Any]) -> s.Entry:
        key, body = c
        key_span = self.span(key)
        return s.Entry(_join(key_span, body.span), _key(key), key_span, body)

    def listing(self, c: list[Any]) -> s.List:
        items = c[-2] if c[-2].__class__ is list else ()
        return s.List(self.join(c[0], c[-1]), tuple(items))

    def string(self, c: list[Any]) -> s.Str:
        return s.Str(self.span(c[0]), _unescape(c[0]))

    def long_string(self, c: list[Any]) -> s.Str:
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


# -- syntax errors, in words -------------------------------------------------------------


def _translate(tok: Token, expected_kinds: set[str], source: Source) -> FlowError:
    kind, _, line, col, end_line, end_col = tok
    unclosed = _unclosed(tok, source)
    if unclosed is not None:
        return unclosed
    # `12 parsecs`, `12 GiB`, `12.5XB` (the lexer takes `12`, then `.`): a number and a
    # word that is not its unit, around the token that could not come there.
    text = source.line(line)
    for m in _NUMBER_AND_WORD.finditer(text):
        spaced = m.group(2) != ""
        if (
            m.start() < col - 1 + len(tok[1])
            and m.end() > col - 1
            and text[: m.start()].rstrip().endswith(("=", "[", ",", "("))  # starts a value
            and (spaced or m.group(3) not in _KNOWN_UNITS)  # not a size or duration
        ):
            return _unit_error(source, line, m.start() + 1, m.group(3), m.end() + 1, spaced=spaced)
    if kind == "$END":
        return _at_end(source)
    span = Span(source, line, col, end_line, end_col)
    if kind == "_NL":  # underline the end of the line, not the newline itself
        width = len(source.line(line))
        span = Span(source, line, max(1, col), line, max(col, width) + 1)
    expected = _expected_words(expected_kinds)
    message = f"unexpected {_describe(tok)}"
    if expected:
        message += f"; expected {expected}"
    return FlowError(Kind.SYNTAX, message, span, hint=_hint(kind, expected_kinds))


def _describe(tok: Token) -> str:
    kind, text = tok[0], tok[1]
    if kind == "_NL":
        return "end of line"
    if kind in ("NAME", "BLOCK_KIND", "NUMBER", "SIZE", "DURATION", "TRUE", "FALSE"):
        word = {"BLOCK_KIND": "keyword", "TRUE": "keyword", "FALSE": "keyword"}.get(
            kind, TOKEN_WORDS.get(kind, "text").split(" ", 1)[-1]
        )  # "a name" -> "name `x`"
        return f"{word} `{text}`"
    if kind in ("STRING", "LONG_STRING"):
        return "string"
    known = TOKEN_WORDS.get(kind)
    return known if known else f"`{text}`"


def _expected_words(expected: set[str]) -> str:
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


def _hint(kind: str, expected: set[str]) -> str | None:
    if "EQUAL" in expected and kind != "EQUAL":
        if kind == "COLON":
            return "attributes are written `name = value`, not `name: value`"
        return "attributes are written `name = value`, one per line"
    if kind == "NAME" and "BLOCK_KIND" in expected:
        return (
            "a file holds `import`, `param`, `compute`, `queue`, `definition` and `job` statements"
        )
    if kind in ("NAME", "STRING", "NUMBER") and "_NL" in expected:
        return "put each attribute on its own line, or separate list items with `,`"
    if kind == "RBRACE":
        return "a value is missing before `}`"
    return None


class _Open(NamedTuple):
    """A bracket still open at the point of an error."""

    kind: str  # LBRACE, LSQB or LPAR
    line: int
    col: int
    label: str | None  # what it opens: "job `a`", "`retry`", "`after`"
    indent: int  # the indentation of the line it is on


_CLOSING = {"LBRACE": "}", "LSQB": "]", "LPAR": ")"}
_OPENING = {"LBRACE": "{", "LSQB": "[", "LPAR": "("}
_STATEMENT_WORDS = {"import", "param", "compute", "queue", "definition", "job"}


def _unclosed(tok: Token, source: Source) -> FlowError | None:
    """An error at the bracket that was never closed, when that is what went wrong:
    the file ended inside it, or a line inside it starts a new statement at its own
    indentation or less (`job b {` after a `job a {` that lacks its `}`), or, inside a
    list, an `=` starts an attribute. None when the error is something else."""
    kind, _, line, col, _, _ = tok
    at_end = kind == "$END"
    stack, suspect = _open_before(source, None if at_end else (line, col))
    if not stack:
        return None
    inner = stack[-1]
    if at_end:
        why = "the file ends before it is closed"
    elif inner.line == line:
        return None
    elif inner.kind == "LSQB" and kind == "EQUAL":
        why = f"line {line} sets an attribute before it is closed"
    else:
        text = source.line(line)
        words = text.split(None, 1)
        indent = len(text) - len(text.lstrip())
        if not words or words[0] not in _STATEMENT_WORDS or indent > inner.indent:
            return None
        why = f"line {line} starts a `{words[0]}` statement before it is closed"
    # A `}` indented less than the line of the `{` it closed was probably meant for an
    # outer block: the `}` missing is then that inner block's.
    target = suspect if suspect is not None and inner.kind == "LBRACE" else inner
    what = f"`{_OPENING[target.kind]}`" + (f" of {target.label}" if target.label else "")
    closing = _CLOSING[target.kind]
    return FlowError(
        Kind.SYNTAX,
        f"the {what} is never closed",
        Span(source, target.line, target.col, target.line, target.col + 1),
        hint=f"{why}; add `{closing}` where it should end",
    )


def _open_before(source: Source, limit: tuple[int, int] | None) -> tuple[list[_Open], _Open | None]:
    """The brackets open before `limit` (line, column; None: the end), innermost last,
    and the first `{` closed by a `}` indented less than the line the `{` is on, while
    something is still open. Lexes the text again: this runs only for an error."""
    stack: list[_Open] = []
    suspect: _Open | None = None
    recent: list[Token] = []
    try:
        for tok in tokens(source.text + "\n"):
            kind, _, line, col = tok[0], tok[1], tok[2], tok[3]
            if limit is not None and (line, col) >= limit:
                break
            if kind in _CLOSING:
                stack.append(_Open(kind, line, col, _label(recent), _indent(source, line)))
            elif kind in ("RBRACE", "RSQB", "RPAR") and stack:
                opened = stack.pop()
                if not stack:
                    suspect = None  # balanced again: whatever came before was fine
                elif (
                    suspect is None
                    and kind == "RBRACE"
                    and opened.line != line
                    and _indent(source, line) < opened.indent
                ):
                    suspect = opened
            recent = [*recent[-3:], tok]
    except (LexError, TooDeep):
        pass
    return stack, suspect


def _indent(source: Source, line: int) -> int:
    text = source.line(line).expandtabs(4)
    return len(text) - len(text.lstrip())


def _label(recent: list[Token]) -> str | None:
    """What a bracket opens, from the tokens before it on its line."""
    kinds = [t[0] for t in recent]
    if kinds[-2:] == ["BLOCK_KIND", "NAME"]:
        return f"{recent[-2][1]} `{recent[-1][1]}`"
    if kinds[-4:] == ["BLOCK_KIND", "NAME", "COLON", "NAME"]:
        return f"{recent[-4][1]} `{recent[-3][1]}`"
    if kinds[-1:] == ["NAME"] or kinds[-1:] == ["STRING"]:
        return f"`{recent[-1][1].strip(chr(34))}`"
    if kinds[-2:] in (["NAME", "EQUAL"], ["STRING", "EQUAL"]):
        return f"`{recent[-2][1].strip(chr(34))}`"
    return None


def _at_end(source: Source) -> FlowError:
    lines = [line.removesuffix("\r") for line in source.text.rstrip("\r\n").split("\n")]
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
    if ch in _ASCII_DIGITS:
        # The lexer stops inside `12parsecs` (it takes `1` as a number): from the start.
        start = col
        while start > 1 and text[start - 2] in _ASCII_DIGITS:
            start -= 1
        m = re.match(r"[0-9]+(?:\.[0-9]+)?([A-Za-z_]\w*)", text[start - 1 :])
        if m:
            end = start + len(m.group(0))
            return _unit_error(source, line, start, m.group(1), end, spaced=False)
    if ch.isdigit():
        return FlowError(
            Kind.SYNTAX,
            f"unexpected character `{ch}`",
            span,
            hint="numbers are written with the digits 0 to 9",
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


_ASCII_DIGITS = frozenset("0123456789")
_KNOWN_UNITS = frozenset({*s.SIZE_UNITS, *s.DURATION_UNITS})
_NUMBER_AND_WORD = re.compile(r"(?<![\w.])([0-9]+(?:\.[0-9]+)?)([ \t]*)([A-Za-z_][\w]*)")
# What the attributes that take units take (the others take plain numbers); only for
# saying so when a unit is wrong. tests/test_language_limits.py checks it against what
# the attributes accept.
UNITS_OF = {"memory": "size", "timeout": "duration", "backoff": "duration"}
_UNIT_WORDS = {
    "size": "a size: a number with KiB, MiB, GiB, TiB, KB, MB, GB or TB (e.g. 512MiB); "
    "a plain number is MiB",
    "duration": "a duration: a number with s, m, h or d, or a sum such as 1h30m; "
    "a plain number is seconds",
}
_ANY_UNIT = "sizes: KiB, MiB, GiB, TiB, KB, MB, GB, TB; durations: s, m, h, d (e.g. 512MiB, 1h30m)"
_ATTRIBUTE_BEFORE = re.compile(r'(?:^|[{,\s])(?:param\s+)?([A-Za-z][\w-]*|"[^"]*")\s*=\s*$')


def _unit_error(
    source: Source, line: int, col: int, unit: str, end: int, *, spaced: bool
) -> FlowError:
    """A number followed by a word that is not one of its units: `12parsecs`, or
    `12 parsecs` (`spaced`); `col` is where the number starts, `end` where the word
    ends. Names the attribute and what it takes."""
    text = source.line(line)
    number = re.match(r"[0-9.]+", text[col - 1 :])
    digits = number.group() if number else ""
    m = _ATTRIBUTE_BEFORE.search(text[: col - 1])
    key = m.group(1).strip('"') if m else None
    span = Span(source, line, col, line, end)
    known = {*s.SIZE_UNITS, *s.DURATION_UNITS}
    if spaced and unit in known:
        return FlowError(
            Kind.SYNTAX,
            f"a space between `{digits}` and its unit `{unit}`",
            span,
            hint=f"write `{digits}{unit}`",
        )
    kind = UNITS_OF.get(key or "")
    what = f"`{key}` takes {_UNIT_WORDS[kind]}" if kind else _ANY_UNIT
    same = [u for u in sorted(known) if u.lower() == unit.lower()]
    if same and (kind is None or same[0] in _units(kind)):
        what = f"did you mean `{digits}{same[0]}`? " + what
    return FlowError(
        Kind.SYNTAX,
        f"unknown unit `{unit}`" + (f" for `{key}`" if key else ""),
        span,
        hint=what,
        detail={"unit": unit, "attribute": key},
    )


def _units(kind: str) -> set[str]:
    return set(s.SIZE_UNITS) if kind == "size" else set(s.DURATION_UNITS)
