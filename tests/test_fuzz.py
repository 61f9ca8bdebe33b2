"""Property-based tests: whatever text the parser and checker are fed, they either
return a Plan or raise the project's own FlowError, never another exception; and the
parser's own LALR loop accepts exactly what lark's accepts, failing at the same token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Lark, Token
from lark.exceptions import UnexpectedToken
from lark.lexer import Lexer

from flowbatch import FlowError, load_text
from flowbatch.lang.computes import Machine
from flowbatch.lang.diagnostics import Kind
from flowbatch.lang.lexer import LexError, tokens
from flowbatch.lang.parse import parse

PIPELINES = sorted((Path(__file__).parent.parent / "pipelines").glob("*.flow"))
SEEDS = [p.read_text() for p in PIPELINES] + [
    (Path(__file__).parent / "golden" / "errors" / "cycle.flow").read_text()
]
MACHINE = Machine(vcpus=2, memory=4096)
CHARS = st.sampled_from(list('{}[]()=:,."#\n\\ \t*abcjobqueuparmn_01289GiBMhs|%'))
# Whole tokens as well as characters, so that mutations reach the checker, not just the lexer.
PIECES = st.text(CHARS, max_size=6) | st.sampled_from(
    ["{{", "}}", "job x {", "}", "after = [", "array = 3", "n_to_n(", "params.", "\n"]
)


def mutate(seed: str, cuts: list[tuple[int, int, str]]) -> str:
    text = seed
    for at, width, insert in cuts:
        at %= len(text) + 1
        text = text[:at] + insert + text[at + width :]
    return text


# A seed pipeline with up to four cuts, each replacing some characters by a piece.
MUTANTS = st.builds(
    mutate,
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 40), PIECES), min_size=1, max_size=4),
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(text: str) -> None:
    try:
        load_text(text, "fuzz.flow", read=lambda p: "", machine=MACHINE)
    except FlowError as err:
        assert str(err)  # rendering must not crash either
        assert err.errors


@pytest.mark.slow
@FUZZ
@given(st.text(CHARS, max_size=200))
def test_random_text_raises_only_flow_errors(text: str) -> None:
    check(text)


@pytest.mark.slow
@FUZZ
@given(MUTANTS)
def test_mutated_pipelines_raise_only_flow_errors(text: str) -> None:
    check(text)


class _TupleLexer(Lexer):
    """flowbatch's tokens as lark's, so that lark's own loop can run on them."""

    def __init__(self, conf: object) -> None:
        pass

    def lex(self, text: Any, parser_state: Any = None) -> Iterator[Token]:
        for kind, value, line, col, end_line, end_col in tokens(text):
            yield Token(kind, value, line=line, column=col, end_line=end_line, end_column=end_col)


LARK = Lark.open_from_package(
    "flowbatch", "flow.lark", parser="lalr", lexer=_TupleLexer, maybe_placeholders=False
)


def lark_verdict(text: str) -> tuple[int, int] | None:
    """Where lark's own LALR loop rejects `text` (line, column), or None if it accepts."""
    try:
        LARK.parse(text + "\n")
    except UnexpectedToken as exc:
        if exc.token.type == "$END":
            return (-1, -1)
        return (exc.line, exc.column)
    return None


# Where our parser points elsewhere than lark by design: at the bracket that was never
# closed rather than at the token where that showed.
UNCLOSED = (-2, -2)


def our_verdict(text: str) -> tuple[int, int] | None:
    try:
        parse(text, "fuzz.flow")
    except FlowError as err:
        error = err.errors[0]
        if error.kind is Kind.DUPLICATE:  # the grammar takes it; the value is refused
            return (0, 0)
        assert error.kind is Kind.SYNTAX and len(err.errors) == 1
        if error.message == "unexpected end of file":
            return (-1, -1)
        if error.message.endswith("is never closed"):
            return UNCLOSED
        if error.message.startswith(("unknown unit", "a space between")):
            # at the number the unit follows, which lark took on its own
            assert error.span is not None
            return (error.span.line, -error.span.col)
        assert error.span is not None
        return (error.span.line, error.span.col)
    return None


def agree(text: str) -> None:
    try:
        expected = lark_verdict(text)
    except LexError:
        return  # not a question for the parser
    got = our_verdict(text)
    if got == UNCLOSED:
        assert expected is not None, text  # lark refuses it too, wherever it noticed
        return
    if got is not None and got[1] < 0 and got != (-1, -1):  # a unit, from its number on
        assert expected is not None and expected[0] == got[0] and expected[1] >= -got[1], text
        return
    if expected is None and got is not None:
        # the grammar accepts it; only a token's value may be refused (a bad escape, a name
        # over 128 characters, a number too large), and that is not a syntax error lark sees
        message = parse_error(text).errors[0].message
        assert any(why in message for why in VALUE_ERRORS), message
        return
    assert got == expected, text


VALUE_ERRORS = (
    "escape",
    "characters long",
    "too large",
    "too long",
    "whole number",
    "is set twice",
)


def parse_error(text: str) -> FlowError:
    with pytest.raises(FlowError) as info:
        parse(text, "fuzz.flow")
    return info.value


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: s.split("\n", 1)[0][:30])
def test_parser_agrees_with_lark_on_the_examples(seed: str) -> None:
    assert lark_verdict(seed) is None
    assert our_verdict(seed) is None


@pytest.mark.slow
@FUZZ
@given(MUTANTS)
def test_parser_accepts_exactly_what_lark_accepts(text: str) -> None:
    agree(text)


@pytest.mark.slow
@FUZZ
@given(st.text(CHARS, max_size=200))
def test_parser_agrees_with_lark_on_random_text(text: str) -> None:
    agree(text)
