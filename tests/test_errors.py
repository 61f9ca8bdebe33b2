"""Every error of the language page's list, at two levels (as just does): the kind and
span of the FlowError, and the exact rendered text in tests/golden/errors/*.err."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowbatch import FlowError, Kind, load

ERRORS = Path(__file__).parent / "golden" / "errors"

# file -> (kind of the first error, its line, its column, how many errors in all)
EXPECTED: dict[str, tuple[Kind, int, int, int]] = {
    "syntax_missing_equals": (Kind.SYNTAX, 2, 11, 1),
    "syntax_unclosed_brace": (Kind.SYNTAX, 1, 11, 1),
    "syntax_unclosed_block": (Kind.SYNTAX, 3, 9, 1),
    "syntax_unterminated_string": (Kind.SYNTAX, 2, 13, 1),
    "syntax_bad_unit": (Kind.SYNTAX, 3, 13, 1),
    "unknown_unit": (Kind.SYNTAX, 3, 13, 1),
    "syntax_number_too_large": (Kind.SYNTAX, 2, 16, 1),
    "syntax_index_not_whole": (Kind.SYNTAX, 8, 21, 1),
    "unknown_job": (Kind.UNKNOWN_NAME, 9, 21, 1),
    "unknown_definition": (Kind.UNKNOWN_NAME, 5, 13, 1),
    "unknown_queue": (Kind.UNKNOWN_NAME, 7, 13, 1),
    "unknown_compute": (Kind.UNKNOWN_NAME, 7, 14, 1),
    "unknown_param": (Kind.UNKNOWN_NAME, 5, 13, 1),
    "unknown_attribute": (Kind.UNKNOWN_ATTRIBUTE, 2, 3, 1),
    "duplicate_job": (Kind.DUPLICATE, 5, 5, 1),
    "cycle": (Kind.CYCLE, 3, 14, 1),
    "definition_cycle": (Kind.CYCLE, 1, 15, 1),
    "array_size": (Kind.ARRAY_SIZE, 3, 13, 1),
    "n_to_n_sizes": (Kind.N_TO_N, 9, 21, 1),
    "n_to_n_not_array": (Kind.N_TO_N, 8, 21, 1),
    "index_out_of_range": (Kind.ARRAY_INDEX, 8, 14, 1),
    "index_not_array": (Kind.ARRAY_INDEX, 7, 14, 1),
    "sequential_not_array": (Kind.SEQUENTIAL, 3, 16, 1),
    "too_many_deps": (Kind.TOO_MANY_DEPS, 66, 105, 1),
    "retry_attempts": (Kind.RETRY, 4, 16, 1),
    "retry_rules": (Kind.RETRY, 6, 24, 1),
    "unschedulable": (Kind.UNSCHEDULABLE, 13, 13, 1),
    "template_undefined": (Kind.TEMPLATE, 4, 34, 1),
    "template_syntax": (Kind.TEMPLATE, 2, 13, 1),
    "template_not_array": (Kind.TEMPLATE, 2, 30, 1),
    "ref_unresolved": (Kind.TEMPLATE, 2, 24, 1),
    "template_quoted": (Kind.TEMPLATE, 3, 26, 1),
    "template_budget": (Kind.TEMPLATE, 2, 13, 1),
    "attribute_type": (Kind.BAD_VALUE, 5, 13, 1),
    "reserved_env": (Kind.RESERVED, 3, 15, 1),
    "several_errors": (Kind.UNKNOWN_NAME, 3, 14, 3),
    "import_missing": (Kind.IMPORT, 1, 8, 1),
    "nested_too_deep": (Kind.TOO_DEEP, 3, 604, 1),
    "duplicate_key": (Kind.DUPLICATE, 6, 5, 2),
}


def _error_of(path: Path) -> FlowError:
    with pytest.raises(FlowError) as info:
        load(path)
    return info.value


def test_every_golden_error_file_has_an_expectation() -> None:
    assert sorted(p.stem for p in ERRORS.glob("*.flow")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_error_kind_and_span(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ERRORS)
    err = _error_of(Path(f"{name}.flow"))
    kind, line, col, count = EXPECTED[name]
    assert err.kind is kind
    assert err.span is not None and (err.span.line, err.span.col) == (line, col)
    assert len(err.errors) == count


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_error_text(name: str, golden: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ERRORS)  # paths in the messages are as the user typed them
    err = _error_of(Path(f"{name}.flow"))
    golden(str(err) + "\n", ERRORS / f"{name}.err")  # type: ignore[operator]


def test_every_failed_name_lookup_suggests() -> None:
    for name in ("unknown_job", "unknown_definition", "unknown_queue", "unknown_compute",
                 "unknown_param", "unknown_attribute"):  # fmt: skip
        err = _error_of(ERRORS / f"{name}.flow")
        assert err.hint is not None and err.hint.startswith("did you mean"), name


def test_cycle_names_the_loop() -> None:
    err = _error_of(ERRORS / "cycle.flow")
    assert err.detail["cycle"] == ("fetch", "report", "align", "fetch")


def test_a_raw_lark_message_never_reaches_a_user() -> None:
    for path in ERRORS.glob("syntax_*.flow"):
        text = str(_error_of(path))
        assert "Expected one of" not in text and "__ANON" not in text and "_NL" not in text
