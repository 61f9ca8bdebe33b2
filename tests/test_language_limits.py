"""Inputs at and past the language's limits are located errors, never tracebacks:
nesting, import chains and definition chains too deep."""

from __future__ import annotations

import sys

import pytest

import flowbatch.lang.syntax as s
from flowbatch import FlowError, Kind, load_text
from flowbatch.lang.analyze import MAX_DEFINITION_DEPTH
from flowbatch.lang.computes import Machine
from flowbatch.lang.lexer import MAX_NESTING
from flowbatch.lang.load import MAX_IMPORT_DEPTH
from flowbatch.lang.parse import parse
from flowbatch.lang.parse_errors import UNITS_OF

MACHINE = Machine(vcpus=4, memory=8192)
JOB = 'job a {\n  command = "x"\n}\n'


def error_of(text: str, read: object = None, **params: str) -> FlowError:
    with pytest.raises(FlowError) as info:
        load_text(text, "t.flow", params, read=read, machine=MACHINE)  # type: ignore[arg-type]
    return info.value


# -- nesting -------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_NESTING, 500, 5000])
@pytest.mark.parametrize(("opener", "closer"), [("[", "]"), ("{ k = ", "}")])
def test_nesting_past_the_limit_is_an_error_at_the_bracket(
    depth: int, opener: str, closer: str
) -> None:
    # The job's own `{` is the first level: the tags' value reaches the limit at the
    # (MAX_NESTING - 1)th opener inside it.
    value = opener * depth + '"v"' * (opener != "[") + closer * depth
    err = error_of(f'job a {{\n  command = "x"\n  tags = {value}\n}}\n')
    assert err.kind is Kind.TOO_DEEP and err.message == f"nested more than {MAX_NESTING} deep"
    col = len("  tags = ") + len(opener) * (MAX_NESTING - 1) + 1
    assert err.span is not None and (err.span.line, err.span.col, err.span.end_col) == (
        3,
        col,
        col + 1,
    )


def test_nesting_up_to_the_limit_is_fine() -> None:
    depth = MAX_NESTING - 1  # with the job's own `{`, exactly MAX_NESTING deep
    value = "{ k = " * depth + '"v"' + "}" * depth
    err = error_of(f'job a {{\n  command = "x"\n  tags = {value}\n}}\n')
    # Not a depth error: `tags` wants strings, and says so at the first nested map.
    assert err.kind is Kind.BAD_VALUE and err.span is not None and err.span.line == 3


def test_a_param_nested_too_deep_is_an_error_not_a_recursion_error() -> None:
    err = error_of("param p = " + "[" * 2000 + "]" * 2000 + "\n" + JOB)
    assert err.kind is Kind.TOO_DEEP and err.span is not None and err.span.col == 11 + 100


def test_deep_nesting_does_not_depend_on_the_recursion_limit() -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(400)  # as if loaded from deep inside a caller
    try:
        value = "{ k = " * (MAX_NESTING - 1) + '"v"' + "}" * (MAX_NESTING - 1)
        err = error_of(f'job a {{\n  command = "x"\n  tags = {value}\n}}\n')
    finally:
        sys.setrecursionlimit(limit)
    assert err.kind is Kind.BAD_VALUE


# -- import chains -------------------------------------------------------------------------


def _chain(length: int) -> dict[str, str]:
    files = {f"f{i}.flow": f'import "f{i + 1}.flow"\n' for i in range(length)}
    files[f"f{length}.flow"] = 'definition d {\n  command = "x"\n}\n'
    return files


@pytest.mark.parametrize("length", [MAX_IMPORT_DEPTH + 1, 1200])
def test_an_import_chain_too_long_is_an_error_at_the_import_past_the_limit(length: int) -> None:
    files = _chain(length)
    err = error_of('import "f0.flow"\njob a: d {}\n', read=files.__getitem__)
    assert err.kind is Kind.TOO_DEEP
    assert err.message.startswith(f"imports nested more than {MAX_IMPORT_DEPTH} deep: ")
    # t.flow imports f0 (depth 1) ... f99 imports f100 (depth 101): the import in f99.
    last = f"f{MAX_IMPORT_DEPTH - 1}.flow"
    assert (
        err.span is not None
        and err.span.path == last
        and (err.span.line, err.span.col)
        == (
            1,
            8,
        )
    )
    assert err.detail["chain"][0] == "t.flow" and len(err.detail["chain"]) == MAX_IMPORT_DEPTH + 2
    assert "..." in err.message and len(str(err).splitlines()[0]) < 200


def test_an_import_chain_at_the_limit_loads() -> None:
    files = _chain(MAX_IMPORT_DEPTH - 1)  # t.flow + f0 .. f99: 100 imports deep
    plan = load_text('import "f0.flow"\njob a: d {}\n', "t.flow", read=files.__getitem__)
    assert len(plan) == 1


# -- definition chains ---------------------------------------------------------------------


def _definitions(count: int, reverse: bool) -> str:
    blocks = ['definition d0 {\n  command = "x"\n}\n'] + [
        f"definition d{i}: d{i - 1} {{}}\n" for i in range(1, count)
    ]
    if reverse:  # the last one first: the builder meets the longest chain at once
        blocks.reverse()
    return "".join(blocks)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("count", [MAX_DEFINITION_DEPTH + 1, 3000])
def test_a_definition_chain_too_long_is_an_error(count: int, reverse: bool) -> None:
    text = _definitions(count, reverse) + f"job a: d{count - 1} {{}}\n"
    err = error_of(text)
    assert err.kind is Kind.TOO_DEEP and len(err.errors) == 1
    assert err.message == f"definitions extend each other more than {MAX_DEFINITION_DEPTH} deep"
    # At `d100: d99`, the definition that makes the chain one too long.
    line = text.splitlines().index(
        f"definition d{MAX_DEFINITION_DEPTH}: d{MAX_DEFINITION_DEPTH - 1} {{}}"
    )
    assert err.span is not None and (err.span.line, err.span.col) == (line + 1, 18)


def test_a_definition_chain_at_the_limit_loads() -> None:
    text = _definitions(MAX_DEFINITION_DEPTH, reverse=True) + "job a: d99 {}\n"
    assert load_text(text, "t.flow", machine=MACHINE).job("a").command == "x"


def test_a_definition_cycle_is_still_reported_as_a_cycle() -> None:
    err = error_of("definition a: b {}\ndefinition b: a {}\njob j: a {}\n")
    assert err.kind is Kind.CYCLE


# -- duplicate keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "what", "second", "first"),
    [
        ('  env = { A = "1", A = "2" }\n', "key `A`", (3, 20), (3, 11)),
        ('  env = { A = "1", "A" = "2" }\n', "key `A`", (3, 20), (3, 11)),
        ("  retry {\n    attempts = 2\n    attempts = 3\n  }\n", "key `attempts`", (5, 5), (4, 5)),
        ("  retry = { evaluate_on_exit = [{ action = \"exit\", action = \"retry\" }] }\n",
         "key `action`", (3, 52), (3, 35)),
        ('  parameters = { x = "1" }\n  parameters = { y = "2" }\n', "attribute `parameters`",
         (4, 3), (3, 3)),
    ],
)  # fmt: skip
def test_a_key_set_twice_is_an_error_at_the_second_naming_the_first(
    body: str, what: str, second: tuple[int, int], first: tuple[int, int]
) -> None:
    err = error_of(f'job a {{\n  command = "x"\n{body}}}\n')
    assert err.kind is Kind.DUPLICATE and err.message == f"{what} is set twice"
    assert err.span is not None and (err.span.line, err.span.col) == second
    assert (err.detail["first"].line, err.detail["first"].col) == first
    assert err.hint is not None and err.hint.startswith(
        f"first set on line {first[0]}, column {first[1]}"
    )


def test_every_key_set_twice_is_reported() -> None:
    err = error_of(
        'compute c {\n  vcpus = 1\n  vcpus = 2\n}\njob a {\n  command = "x"\n'
        '  tags = { t = "1", t = "2", t = "3" }\n}\n'
    )
    assert [(e.kind, e.span.line, e.span.col) for e in err.errors if e.span] == [
        (Kind.DUPLICATE, 3, 3),
        (Kind.DUPLICATE, 7, 21),
        (Kind.DUPLICATE, 7, 30),
    ]


def test_the_same_key_in_different_maps_is_fine() -> None:
    plan = load_text(
        'definition d {\n  command = "x"\n  env = { A = "1" }\n}\n'
        'job a: d {\n  env = { A = "2" }\n  tags = { A = "3" }\n}\n',
        "t.flow",
        machine=MACHINE,
    )
    assert plan.job("a").env["A"] == "2"


# -- `-p` numbers are the language's numbers -----------------------------------------------

NUMBER_CANDIDATES = [
    "0", "7", "0012", "12.5", "0.25", "1.00000000000000000001", "999999999999999",
    "1234567890123456", "9" * 5000, "1_000", "0x10", "0o7", "0b1", "1e5", "1e400", "1E5",
    "nan", "NaN", "inf", "-inf", "+5", "-5", ".5", "1.", "1..2", "", "٣", "١٢", "５",
    "1 000", "12abc", "1h", "2GiB", "true",
]  # fmt: skip


def _in_a_file(text: str, default: str) -> object:
    """What `param n = TEXT` gives when TEXT replaces a default like `default`, or None
    when the file does not load or TEXT is not of the default's type."""
    try:
        plan = load_text(f"param n = {text}\n", "t.flow", machine=MACHINE)
        (param,) = parse(f"param n = {text}\n", "t.flow").statements
    except FlowError:
        return None
    assert isinstance(param, s.Param)
    if not isinstance(param.value, s.Number):  # a size, a duration, a boolean
        return None
    value = plan.params["n"]
    if "." in default:
        return float(value)
    return value if isinstance(value, int) else None


@pytest.mark.parametrize("default", ["4", "0.5"])
@pytest.mark.parametrize("text", NUMBER_CANDIDATES)
def test_p_takes_exactly_the_numbers_a_file_takes(text: str, default: str) -> None:
    expected = _in_a_file(text, default)
    try:
        plan = load_text(f"param n = {default}\n", "t.flow", {"n": text}, machine=MACHINE)
    except FlowError as err:
        assert expected is None, f"-p n={text[:20]} refused but a file takes it"
        assert err.kind is Kind.PARAM_TYPE and err.span is not None and err.span.line == 1
        assert len(err.message) < 120 and "numbers are written as in a .flow file" in (
            err.hint or ""
        )
        return
    assert plan.params["n"] == expected and type(plan.params["n"]) is type(expected)


@pytest.mark.parametrize("text", [" 5", "5 ", "\t5", "5\n"])
def test_p_takes_no_spaces_around_a_number(text: str) -> None:
    err = error_of("param n = 4\n", n=text)
    assert err.kind is Kind.PARAM_TYPE


@pytest.mark.parametrize(
    ("default", "text", "ok"),
    [
        ("1GiB", "2GiB", 2048), ("1GiB", " 2GiB", None), ("1GiB", "١GiB", None),
        ("1GiB", "9" * 20 + "MiB", None), ("1h", "1h30m", 5400.0), ("1h", " 1h", None),
        ("1h", "٣h", None), ("1h", "9" * 5000 + "s", None),
    ],
)  # fmt: skip
def test_p_sizes_and_durations_are_written_as_in_a_file(
    default: str, text: str, ok: float | None
) -> None:
    if ok is None:
        assert error_of(f"param n = {default}\n", n=text).kind is Kind.PARAM_TYPE
    else:
        plan = load_text(f"param n = {default}\n", "t.flow", {"n": text}, machine=MACHINE)
        assert plan.params["n"] == ok


def test_a_p_value_is_quoted_short_and_visible() -> None:
    err = error_of("param n = 4\n", n="\x1b[31m" + "9" * 100)
    assert "\x1b" not in err.message and "\\x1b[31m" in err.message
    assert err.message.startswith("`-p n=\\x1b[31m999") and "…`" in err.message


# -- an unclosed bracket is reported where it opens ----------------------------------------


@pytest.mark.parametrize(
    ("text", "at", "message", "why"),
    [
        ('job a {\n  command = "x"\n\njob b {\n  command = "y"\n}\n', (1, 7),
         "the `{` of job `a` is never closed", "line 4 starts a `job` statement"),
        ('job a {\n  retry {\n    attempts = 2\n}\n\njob b {\n  command = "y"\n}\n', (2, 9),
         "the `{` of `retry` is never closed", "line 6 starts a `job` statement"),
        ('job a {\n  command = "x"\n  after = [b, c\n  memory = 1GiB\n}\n', (3, 11),
         "the `[` of `after` is never closed", "line 4 sets an attribute"),
        ('job a: d {\n  command = "x"\n', (1, 10),
         "the `{` of job `a` is never closed", "the file ends"),
        ('job a {\n  command = "x"\n  env = {\n    A = "1"\n}\n', (3, 9),
         "the `{` of `env` is never closed", "the file ends"),
        ('job a {\n  command = "x"\n\nparam p = 1\n', (1, 7),
         "the `{` of job `a` is never closed", "line 4 starts a `param` statement"),
        ('job a {\n  command = "x"\n  tags = [{ a = "1" }, {\n}\n', (3, 10),
         "the `[` of `tags` is never closed", "the file ends"),
    ],
)  # fmt: skip
def test_an_unclosed_bracket_is_reported_where_it_opens(
    text: str, at: tuple[int, int], message: str, why: str
) -> None:
    err = error_of(text)
    assert err.kind is Kind.SYNTAX and err.message == message
    assert err.span is not None and (err.span.line, err.span.col, err.span.end_col) == (
        *at,
        at[1] + 1,
    )
    assert err.hint is not None and err.hint.startswith(why)


@pytest.mark.parametrize(
    "text",
    [
        'job a {\n  command = "x" y\n}\n',  # an error on the line of the open brace's block
        'job a {\n  command = "x"\n  job = 1 2\n}\n',  # a keyword word as an attribute
        'job a {\n  command = "x"\n    job b\n}\n',  # indented deeper than the block
    ],
)
def test_other_errors_inside_a_block_stay_where_they_are(text: str) -> None:
    err = error_of(text)
    assert err.kind is Kind.SYNTAX and "never closed" not in err.message


# -- a unit the attribute does not take ----------------------------------------------------

SIZE = "`memory` takes a size"
DURATION = "`timeout` takes a duration"


@pytest.mark.parametrize(
    ("value", "message", "span", "hint"),
    [
        ("memory = 12 parsecs", "unknown unit `parsecs` for `memory`", (12, 22), SIZE),
        ("memory = 12parsecs", "unknown unit `parsecs` for `memory`", (12, 21), SIZE),
        ("memory = 1.5 parsecs", "unknown unit `parsecs` for `memory`", (12, 23), SIZE),
        ("memory = 12.5XB", "unknown unit `XB` for `memory`", (12, 18), SIZE),
        ("memory = 12gib", "unknown unit `gib` for `memory`", (12, 17),
         "did you mean `12GiB`? `memory` takes a size"),
        ("timeout = 5 minutes", "unknown unit `minutes` for `timeout`", (13, 22),
         DURATION),
        ("timeout = 5min", "unknown unit `min` for `timeout`", (13, 17), DURATION),
        ("retry { backoff = 2 secs }", "unknown unit `secs` for `backoff`", (21, 27),
         "`backoff` takes a duration"),
        ("memory = 12 GiB", "a space between `12` and its unit `GiB`", (12, 18), "write `12GiB`"),
        ("tags = { a = 5 xs }", "unknown unit `xs` for `a`", (16, 20), "sizes: KiB"),
    ],
)  # fmt: skip
def test_an_unknown_unit_names_the_attribute_and_its_units(
    value: str, message: str, span: tuple[int, int], hint: str
) -> None:
    err = error_of(f'job a {{\n  command = "x"\n  {value}\n}}\n')
    assert err.kind is Kind.SYNTAX and err.message == message
    assert err.span is not None and (err.span.line, err.span.col, err.span.end_col) == (3, *span)
    assert err.hint is not None and err.hint.startswith(hint)


def test_a_param_with_an_unknown_unit_lists_every_unit() -> None:
    err = error_of("param mem = 12 parsecs\n")
    assert err.message == "unknown unit `parsecs` for `mem`" and (err.hint or "").startswith(
        "sizes: KiB"
    )


@pytest.mark.parametrize(("key", "kind"), sorted(UNITS_OF.items()))
def test_the_units_named_are_the_units_taken(key: str, kind: str) -> None:
    good, bad = ("2GiB", "2h") if kind == "size" else ("2h", "2GiB")
    body = f"retry {{ {key} = VALUE }}" if key == "backoff" else f"{key} = VALUE"
    job = f'job a {{\n  command = "x"\n  {body}\n}}\n'
    assert len(load_text(job.replace("VALUE", good), "t.flow", machine=MACHINE)) == 1
    assert error_of(job.replace("VALUE", bad)).kind is Kind.BAD_VALUE


def test_digits_of_other_scripts_are_not_numbers() -> None:
    err = error_of('job a {\n  command = "x"\n  array = ٣\n}\n')
    assert err.message == "unexpected character `٣`" and err.hint == (
        "numbers are written with the digits 0 to 9"
    )


def test_a_number_and_word_in_a_comment_is_not_an_unknown_unit() -> None:
    # Found by test_fuzz (seed 15): the end of line carries the comment before it, and a
    # `3B` in the comment was taken for a value with an unknown unit.
    with pytest.raises(FlowError) as info:
        load_text('job fetch {B#array = 3B\n  command = "x"\n}\n', "c.flow")
    assert "unit" not in info.value.message
    assert info.value.span is not None and (info.value.span.line, info.value.span.col) == (1, 13)
