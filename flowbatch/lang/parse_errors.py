"""Syntax errors in words, for `parse`: where the LALR loop stopped (or the lexer found
a character that starts no token), said as a user would say it, with a hint for the
common mistakes: a bracket never closed (reported where it opens), a unit an attribute
does not take, single quotes, `:` for `=`.

Only the error path comes here; some of it lexes the text again to see what was open.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from flowbatch.lang.diagnostics import FlowError, Kind, Source, Span
from flowbatch.lang.lexer import DURATION_UNITS, SIZE_UNITS, LexError, Token, TooDeep, tokens

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


def translate(tok: Token, expected_kinds: set[str], source: Source) -> FlowError:
    kind, _, line, col, end_line, end_col = tok
    unclosed = _unclosed(tok, source)
    if unclosed is not None:
        return unclosed
    # `12 parsecs`, `12 GiB`, `12.5XB` (the lexer takes `12`, then `.`): a number and a
    # word that is not its unit, around the token that could not come there.
    text = source.line(line)
    if kind == "_NL" and tok[1].startswith("#"):
        # The end of line carries the comment before it: a number in a comment is text.
        text = text[: col - 1]
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


def bad_character(source: Source, line: int, col: int) -> FlowError:
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
_KNOWN_UNITS = frozenset({*SIZE_UNITS, *DURATION_UNITS})
_NUMBER_AND_WORD = re.compile(r"(?<![\w.])([0-9]+(?:\.[0-9]+)?)([ \t]*)([A-Za-z_][\w]*)")
# What the attributes that take units take (the others take plain numbers); only for
# saying so when a unit is wrong. tests/test_language_limits.py checks it against what
# the attributes accept.
UNITS_OF = {"memory": "size", "timeout": "duration", "backoff": "duration"}
_SIZES, _DURATIONS = list(SIZE_UNITS), list(DURATION_UNITS)
_UNIT_WORDS = {
    "size": f"a size: a number with {', '.join(_SIZES[:-1])} or {_SIZES[-1]} (e.g. 512MiB); "
    "a plain number is MiB",
    "duration": f"a duration: a number with {', '.join(_DURATIONS[:-1])} or {_DURATIONS[-1]}, "
    "or a sum such as 1h30m; a plain number is seconds",
}
_ANY_UNIT = f"sizes: {', '.join(_SIZES)}; durations: {', '.join(_DURATIONS)} (e.g. 512MiB, 1h30m)"
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
    known = {*SIZE_UNITS, *DURATION_UNITS}
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
    return set(SIZE_UNITS) if kind == "size" else set(DURATION_UNITS)
