"""Property-based tests: whatever text the parser and checker are fed, they either
return a Plan or raise the project's own FlowError, never another exception; the
parser's own LALR loop accepts exactly what lark's accepts, failing at the same token;
and the hand lexer gives exactly the tokens lark's own lexer makes from the grammar's
terminals (kind, text, position), so that the lexer and `flow.lark` cannot drift."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Lark
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from flowbatch import FlowError, load_text
from flowbatch.lang.computes import Machine
from flowbatch.lang.diagnostics import Kind
from flowbatch.lang.lexer import LexError, Token, TooDeep, tokens
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


# lark's own LALR parser and contextual lexer on the one grammar: the reference that the
# hand lexer's tokens and the parser's verdicts are held to.
LARK = Lark.open_from_package("flowbatch", "flow.lark", parser="lalr", maybe_placeholders=False)


class LarkRun(NamedTuple):
    tokens: list[Token]  # what lark's lexer gave its parser, as our tuples
    stop: UnexpectedInput | None  # where it stopped, None if it accepted the text


def lark_run(text: str) -> LarkRun:
    """`text` lexed and parsed by lark alone, the .lark patterns included."""
    interactive = LARK.parse_interactive(text + "\n")
    seen: list[Token] = []
    try:
        for tok in interactive.iter_parse():
            seen.append((tok.type, str(tok), tok.line, tok.column, tok.end_line, tok.end_column))
        interactive.feed_eof()
    except (UnexpectedToken, UnexpectedCharacters) as exc:
        return LarkRun(seen, exc)
    return LarkRun(seen, None)


def same_tokens(text: str, run: LarkRun) -> None:
    """Our lexer gives lark's parser the tokens lark's lexer gives it, kinds, text and
    positions, as far as lark went; where lark's lexer finds no token, ours finds none."""
    ours: list[Token] = []
    stuck: LexError | None = None
    try:
        ours.extend(tokens(text + "\n"))
    except TooDeep:  # a bound of ours that lark does not have: compared up to there
        assert ours == run.tokens[: len(ours)], text
        return
    except LexError as exc:
        stuck = exc
    assert ours[: len(run.tokens)] == run.tokens, text
    if isinstance(run.stop, UnexpectedCharacters):
        assert stuck is not None and len(ours) == len(run.tokens), text
        assert (stuck.line, stuck.column) == (run.stop.line, run.stop.column), text
    elif run.stop is None or run.stop.token.type == "$END":
        assert stuck is None and len(ours) == len(run.tokens), text
    else:
        # The token lark's parser refused. If lark's lexer found it only by falling back to
        # its lexer without context (none of the state's terminals fit), it is not among
        # the tokens above: ours there has its text and place; its kind may differ.
        bad = run.stop.token
        refused = (str(bad), bad.line, bad.column, bad.end_line, bad.end_column)
        if not run.tokens or run.tokens[-1][1:] != refused:
            assert len(ours) > len(run.tokens), text
            assert ours[len(run.tokens)][1:] == refused, text


def lark_verdict(run: LarkRun) -> tuple[int, int] | None:
    """Where lark rejects the text (line, column), or None if it accepts."""
    if isinstance(run.stop, UnexpectedToken):
        if run.stop.token.type == "$END":
            return (-1, -1)
        return (run.stop.line, run.stop.column)
    assert run.stop is None
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
    run = lark_run(text)
    same_tokens(text, run)
    if isinstance(run.stop, UnexpectedCharacters):
        return  # not a question for the parser
    expected = lark_verdict(run)
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
    if got is not None and expected is not None and got < expected:
        # a token's value refused (a bad escape...) before lark reaches a later syntax
        # error: values are checked as they are read, so the earlier error wins (seed 127)
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
    run = lark_run(seed)
    assert run.stop is None
    same_tokens(seed, run)
    assert our_verdict(seed) is None


# Where a hand lexer and the grammar's patterns part most easily: keywords as the start of
# a name, units, the context of `true` and statement keywords, line ends and breaks.
EDGES = [
    "definitions x {\n}",
    "jobs {\n}",
    'imports "x"',
    "param_x = 1",
    "job-x a {\n}",
    "param x = trueish",
    "param x = [true, false, true_]",
    "job a {\n  true = false\n  job = 1\n  queue = gpu\n}",
    "param t = [\ntrue\n]",
    "param m = 2GiB\nparam d = 1h30m\nparam n = 12.5\nparam u = 12parsecs",
    "param m = 2gib",
    "param s = 10sx",
    'param l = """\n  two\n  lines\n"""',
    'param e = "a\\"b"',
    "param c = 1 \\\n",
    "job a {\r\n  x = 1\r\n}\r\n",
    "job a {\f\n  x = 1 # note\n\n  # alone\n}",
    "param p = " + "[" * 101 + "]" * 101,
    "param q = x.y.z\nparam r = f(a)\nparam i = a[3]",
    "param w = 'x'",
]


@pytest.mark.parametrize("text", EDGES)
def test_lexer_gives_lark_tokens_on_the_edges(text: str) -> None:
    same_tokens(text, lark_run(text))


GOLDEN = sorted((Path(__file__).parent / "golden").glob("**/*.flow"))


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_lexer_gives_lark_tokens_on_the_golden_files(path: Path) -> None:
    """Every golden file, good and bad: the tokens, and where lexing stops, are lark's."""
    text = path.read_text()
    same_tokens(text, lark_run(text))


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
