"""Command templates against hostile values and hostile templates: a value never becomes
shell syntax (issue 9, item 1), and a template that would never finish or would exhaust
memory is an error at validate time, within a bounded time and memory (item 16)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from run_helpers import run_for_real

from flowbatch import FlowError, load
from flowbatch.lang.template import Context, TemplateError, misplaced, render

REF_FLOW = """\
param msg  = "hello"
param mode = "fast"
job a {
  command    = "printf '[%s]\\\\n' {{ params.msg }} Ref::mode > out.txt"
  parameters = { mode = params.mode }
}
"""


@pytest.mark.slow
def test_a_ref_inside_a_param_value_is_not_expanded_again(tmp_path: Path) -> None:
    # The issue's exact reproduction: before the fix, `msg`'s `Ref::mode` was expanded
    # after rendering, and the quotes of the two values flipped so `touch pwned` ran.
    (tmp_path / "ref.flow").write_text(REF_FLOW)
    done = subprocess.run(
        [sys.executable, "-m", "flowbatch", "run", "ref.flow", "--state-dir", "state",
         "-p", "mode=; touch pwned;", "-p", "msg=x Ref::mode"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "pwned").exists()
    assert (tmp_path / "out.txt").read_text() == "[x Ref::mode]\n[; touch pwned;]\n"


CTX = Context(params={"msg": "x Ref::mode", "q": "it's"}, job_name="j")
PARAMETERS = {"mode": "; touch pwned;", "other": "Ref::mode"}


@pytest.mark.parametrize(
    "text",
    [
        "printf '%s' {{ params.msg }} Ref::mode",  # the fast path
        "printf '%s' {{ params.msg | string }} Ref::mode",  # through Jinja
        "{% if true %}printf '%s' {{ params.msg }} Ref::mode{% endif %}",
    ],
)
def test_refs_are_filled_in_one_pass_over_the_authors_text(text: str) -> None:
    assert render(text, CTX, shell=True, parameters=PARAMETERS) == (
        "printf '%s' 'x Ref::mode' '; touch pwned;'"
    )


def test_a_parameter_that_names_a_ref_is_not_expanded() -> None:
    assert render("echo Ref::other", CTX, shell=True, parameters=PARAMETERS) == ("echo Ref::mode")
    assert render("{{ 'a' }} Ref::other", CTX, shell=False, parameters=PARAMETERS) == (
        "a Ref::mode"
    )


def test_a_list_command_is_not_quoted() -> None:
    assert render("--mode=Ref::mode", CTX, shell=False, parameters=PARAMETERS) == (
        "--mode=; touch pwned;"
    )


def test_an_unresolved_ref_is_still_an_error_on_both_paths() -> None:
    for text in ("echo Ref::nope", "echo {{ params.msg | upper }} Ref::nope"):
        with pytest.raises(TemplateError) as err:
            render(text, CTX, shell=True, parameters=PARAMETERS)
        assert err.value.name == "Ref::nope"


# -- values the author's quotes would expose (issue 9, item 1) -------------------------

MISPLACED = [
    ("echo '{{ params.x }}'", "inside single quotes"),
    ('echo "{{ params.x }}"', "inside double quotes"),
    ("echo \"a $(echo '{{ params.x }}')\"", "inside single quotes"),
    ("echo `ls {{ params.x }}`", "inside backticks"),
    ('echo "`ls {{ params.x }}`"', "inside backticks"),
    ("echo `echo $(ls {{ params.x }})`", "inside backticks"),
    ("echo ${v:-{{ params.x }}}", "inside `${...}`"),
    ("echo $(( {{ params.x }} + 1 ))", "inside `$((...))`"),
    ("echo hi # {{ params.x }}", "inside a shell comment"),
    ("cat <<EOF\n{{ params.x }}\nEOF", "inside a here-document"),
    ("cat <<-'EOF'\n\t{{ params.x }}\n\tEOF", "inside a here-document"),
    ("cat <<EOF; echo {{ params.y }}\nx {{ params.x }}\nEOF", "inside a here-document"),
    ("echo \\{{ params.x }}", "right after a backslash"),
    ("echo ${{ params.x }}", "right after `$`"),
    ("echo 'Ref::mode'", "inside single quotes"),
    ('echo "{{ params.x | upper }}"', "inside double quotes"),
    ('echo "{% if true %}{{ params.x }}{% endif %}"', "inside double quotes"),
    ("echo '{% raw %}Ref::mode{% endraw %}'", "inside single quotes"),
]


@pytest.mark.parametrize(("text", "where"), MISPLACED)
def test_a_value_inside_the_authors_quoting_is_found(text: str, where: str) -> None:
    found = misplaced(text)
    assert [m.where for m in found] == [where]
    bad = found[0]
    assert text[bad.offset : bad.offset + bad.length] == bad.text
    assert bad.text.startswith(("{{", "Ref::"))


INERT = [
    "echo {{ params.x }} Ref::mode",
    'echo \'a\'{{ params.x }}"b" "$HOME/"{{ params.x }}"/out"',
    'out=$(basename {{ params.x }}) && echo "$(cat {{ params.x }})"',
    "echo '{{ params.x | raw }}' \"{{ params.glob|raw }}\"",  # `| raw`: the author's call
    "echo \"child {{ array.index + 1 }} of {{ array.size }}\" '{{ job.name }}'",
    "echo \"it's\" {{ params.x }} 'a \"b' {{ params.x }} \\' {{ params.x }}",
    "cat <<EOF\nplain\nEOF\necho {{ params.x }}",
    "cat <<< {{ params.x }}",
    "echo a#b {{ params.x }} # a comment\necho {{ params.x }}",
    "echo {# '{{ params.x }}' #} {{ '}}' }} {{ params.x }}",
    "awk '{ n += $2 } END { print n }' {{ params.x }}",
    "(cd d && echo {{ params.x }}) ; echo $((1 + 2)) {{ params.x }}",
    "echo ${HOME} {{ params.x }}",
]


@pytest.mark.parametrize("text", INERT)
def test_a_value_the_shell_reads_as_one_word_passes(text: str) -> None:
    assert misplaced(text) == ()


def test_a_misplaced_value_is_a_validate_error_at_the_expression(tmp_path: Path) -> None:
    (tmp_path / "q.flow").write_text(
        'param x = "a"\njob a {\n  command = """\n    echo hi\n'
        '    echo \'{{ params.x }}\' {{ params.x }} "{{ params.x }}"\n    """\n}\n'
    )
    with pytest.raises(FlowError) as info:
        load(tmp_path / "q.flow")
    spans = [(e.span.line, e.span.col, e.span.end_col) for e in info.value.errors if e.span]
    assert spans == [(5, 11, 25), (5, 43, 57)]
    assert "inside single quotes" in info.value.errors[0].message
    assert info.value.errors[0].hint is not None and "| raw" in info.value.errors[0].hint


# -- the render budget (issue 9, item 16) ----------------------------------------------

SLOW = pytest.mark.slow
HOSTILE = [
    pytest.param(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        marks=SLOW,
        id="nested-ranges",
    ),
    pytest.param(
        "{% for i in range(100000) %}{% for j in range(100000) if false %}{% endfor %}{% endfor %}",
        marks=SLOW,
        id="nested-filtered-ranges",
    ),
    pytest.param(
        "{% for x in range(100000) recursive %}{% if loop.depth < 3 %}"
        "{{ loop(range(100000)) }}{% endif %}{% endfor %}",
        marks=SLOW,
        id="recursive-loop",
    ),
    pytest.param(
        "{% for i in range(100000) %}{% set x %}{% for j in range(100000) %}"
        + "x" * 50
        + "{% endfor %}{% endset %}{% endfor %}",
        marks=SLOW,
        id="literal-text",
    ),
    "{{ 'a' * 10**9 }}",
    "{{ 'a' * params.n }}",
    "{{ ['aaaa'] * 10**8 }}",
    "{{ (range(1000)|list) * 100000 }}",
    "{{ '%0999999999d' % 1 }}",
    "{{ '%.999999999f' % 1.0 }}",
    "{{ '%*d' % (999999999, 1) }}",
    "{{ '%0999999999d'|format(1) }}",
    "{{ '{:0999999999}'.format(1) }}",
    "{{ '{:{w}}'.format(1, w=999999999) }}",
    "{{ '{0:{1}}'.format_map([1, 999999999]) }}",
    "{{ 9**(9**9) }}",
    "{{ 10**(10**8) }}",
    "{{ (2**16000) * (2**16000) }}",
    "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
    "{{ range(100000)|join('x' * 100000) }}",
    pytest.param(
        "{{ ('x' * 100000).join(range(100000)|map('string')) }}", marks=SLOW, id="str-join"
    ),
    "{{ range(100000)|map('center', 1000000)|join }}",
    "{{ 'a'|center(10**9) }}",
    "{{ 'a'.center(10**9) }}",
    "{{ 'a'.zfill(10**9) }}",
    "{{ 'a'|indent(10**9, true) }}",
    "{{ ('a' * 10000)|replace('', 'b' * 10000) }}",
    "{{ [1]|batch(10**9, 0)|list }}",
    "{{ [1]|slice(10**9)|list }}",
    "{{ [1, 2]|tojson(indent=10**9) }}",
    "{{ ([[1]] * 300000)|sum(start=[]) }}",
    "{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}",
    "{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}",
    "{% set ns = namespace(s='x' * 1000000) %}{{ [ns] * 50000 }}",
    "{% set d = {'a': 'x' * 1000000} %}{{ [d.items()] * 50000 }}",
    "{% set ns = namespace(x=3) %}{% for i in range(99) %}{% set ns.x = ns.x * ns.x %}{% endfor %}",
    "{{ lipsum(10**9) }}",
    "{{ 'abc'.translate({97: 'x' * 1000000}) }}",
    "{{ 'a'.expandtabs(10**9) }}",
    "{{ (1).to_bytes(10**9, 'big') }}",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_a_runaway_template_fails_within_its_budget(text: str) -> None:
    ctx = Context(params={"n": 10**9}, job_name="j")
    with pytest.raises(TemplateError):
        render(text, ctx, shell=True, parameters={})


def test_ordinary_templates_are_within_the_budget() -> None:
    text = (
        "{{ 'a' ~ 'b' }} {{ '%04d' % 3 }} {{ '{:>5}'.format(1) }} {{ [1, 2]|join(',') }}"
        " {% for i in range(3) %}{{ i }}{% endfor %} {{ 2**64 }} {{ 'x' * 3 }}"
    )
    out = render(text, Context(params={}, job_name="j"), shell=True, parameters={})
    assert out == "ab 0003 '    1' 1,2 012 18446744073709551616 xxx"


BUDGET_FLOW = """\
param n = 3
job a {
  command = "echo {{ 'a' * params.n }}"
}
"""


@pytest.mark.slow
def test_over_budget_is_exit_2_at_validate_and_run_with_the_commands_place(
    tmp_path: Path,
) -> None:
    (tmp_path / "b.flow").write_text(BUDGET_FLOW.replace("params.n", "10**9"))
    (tmp_path / "p.flow").write_text(BUDGET_FLOW)
    for args in (
        ["validate", "b.flow"],
        ["run", "p.flow", "--state-dir", "state", "-p", "n=1000000000"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "flowbatch", *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert ".flow:3:13: error: template error: template makes a value of more" in done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "state").exists() or not list((tmp_path / "state").rglob("*.log"))


def test_a_nul_in_a_command_is_a_validate_error(tmp_path: Path) -> None:
    # A string has no escape for NUL, so a NUL can only be written raw: the file is then
    # not text, and refused before it is parsed (lang/load.py), saying where the byte is.
    (tmp_path / "n.flow").write_text('job a {\n  command = "echo a\0b"\n}\n')
    with pytest.raises(FlowError) as info:
        load(tmp_path / "n.flow")
    assert "NUL" in info.value.message and "byte offset 27" in info.value.message


def test_a_nul_in_a_rendered_value_is_an_error() -> None:
    ctx = Context(params={"x": "a\0b"}, job_name="j")
    with pytest.raises(TemplateError, match="NUL"):
        render("echo {{ params.x }}", ctx, shell=True, parameters={})


RUN_TIME_FLOW = """\
job a {
  command = "echo {{ 'a' * (job.id | length * 100000) }}"
}
"""


@pytest.mark.slow
def test_over_budget_at_run_time_fails_the_attempt_with_the_reason(tmp_path: Path) -> None:
    # validate renders `job.id` as a 6-character stand-in (600,000 characters: within
    # the budget); the run's id is a 36-character uuid, so only the run's render fails.
    store, run_id = run_for_real(tmp_path, RUN_TIME_FLOW, exit_code=1)
    try:
        (job,) = store.jobs(run_id=run_id)
        assert job["status"] == "FAILED", job
        assert "template makes a value of more than" in job["statusReason"]
    finally:
        store.close()
