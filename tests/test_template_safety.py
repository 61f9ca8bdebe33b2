"""Command templates against hostile values and hostile templates: a value never becomes
shell syntax (issue 9, item 1), and a template that would never finish or would exhaust
memory is an error at validate time, within a bounded time and memory (item 16)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from run_helpers import run_for_real

import flowbatch.lang.template_budget as budget
from flowbatch import FlowError, Kind, load
from flowbatch.lang.template import Context, TemplateError, misplaced, render, render_command

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


def test_autoescape_cannot_unquote_a_value(tmp_path: Path) -> None:
    # HTML-escaping a quoted value turns its quotes into `&#39;`: `&`, then a comment
    # that the value's line break ends, then the value's next line as a command.
    text = "{% autoescape true %}echo {{ params.x }}{% endautoescape %}"
    ctx = Context(params={"x": "a\ntouch pwned\n"}, job_name="j")
    out = render(text, ctx, shell=True, parameters={})
    assert out == "echo 'a\ntouch pwned\n'"
    subprocess.run(["/bin/sh", "-c", out], cwd=tmp_path, capture_output=True, timeout=10)
    assert not (tmp_path / "pwned").exists()


def test_a_list_command_is_not_quoted() -> None:
    assert render("--mode=Ref::mode", CTX, shell=False, parameters=PARAMETERS) == (
        "--mode=; touch pwned;"
    )


def test_a_shells_script_in_a_list_command_is_quoted_like_a_string_command(
    tmp_path: Path,
) -> None:
    # `["sh", "-c", SCRIPT]` is a shell after all: its values were inserted unquoted.
    ctx = Context(params={"x": "a; touch pwned"}, job_name="j")
    command = ("env", "A=1", "sh", "-ec", "echo {{ params.x }} Ref::mode", "--", "{{ params.x }}")
    argv = render_command(command, ctx, PARAMETERS)
    assert argv[4] == "echo 'a; touch pwned' '; touch pwned;'"
    assert argv[6] == "a; touch pwned"  # the script's own argument: no shell reads it
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=10)
    assert done.stdout == "a; touch pwned ; touch pwned;\n"
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "wrapper",
    [("nice", "-n", "5"), ("nohup",), ("timeout", "60"), ("setsid",), ("xargs", "-0")],
)
def test_a_shell_behind_a_wrapper_gets_its_values_quoted_too(
    tmp_path: Path, wrapper: tuple[str, ...]
) -> None:
    ctx = Context(params={"x": "a; touch pwned"}, job_name="j")
    argv = render_command((*wrapper, "sh", "-c", "echo {{ params.x }}"), ctx, PARAMETERS)
    done = subprocess.run(
        argv, cwd=tmp_path, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
    )
    assert done.stdout == "a; touch pwned\n"
    assert not (tmp_path / "pwned").exists()
    # and a value in `python3 -c`'s program behind one is refused at load time
    (tmp_path / "c.flow").write_text(
        'param x = "a"\njob a {\n'
        + "  command = "
        + json.dumps([*wrapper, "python3", "-c", "print({{ params.x }})"])
        + "\n}\n"
    )
    with pytest.raises(FlowError) as info:
        load(tmp_path / "c.flow")
    assert "program of `python3 -c`" in info.value.message


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ('["sh", "-c", "echo \'{{ params.x }}\'"]', "is inside single quotes"),
        ('["bash", "-euc", "echo \\"{{ params.x }}\\""]', "is inside double quotes"),
        (
            '["python3", "-c", "print(\'{{ params.x }}\')"]',
            "is inside the program of `python3 -c`, where it would be run as code",
        ),
        ('["perl", "-e", "print Ref::mode"]', "is inside the program of `perl -e`"),
    ],
)
def test_a_value_in_code_a_list_command_runs_is_a_validate_error(
    tmp_path: Path, command: str, message: str
) -> None:
    (tmp_path / "c.flow").write_text(
        f'param x = "a"\njob a {{\n  command = {command}\n  parameters = {{ mode = "m" }}\n}}\n'
    )
    with pytest.raises(FlowError) as info:
        load(tmp_path / "c.flow")
    assert info.value.kind is Kind.TEMPLATE and message in info.value.message
    assert info.value.span is not None and info.value.span.line == 3


def test_values_as_arguments_of_a_list_command_pass(tmp_path: Path) -> None:
    (tmp_path / "c.flow").write_text(
        'param x = "a"\njob a {\n'
        '  command = ["python3", "-c", "import sys; print(sys.argv[1:])", "{{ params.x }}",'
        ' "{{ array.index }}"]\n  array = 2\n}\n'
    )
    load(tmp_path / "c.flow")


def test_an_unresolved_ref_is_still_an_error_on_both_paths() -> None:
    for text in ("echo Ref::nope", "echo {{ params.msg | upper }} Ref::nope"):
        with pytest.raises(TemplateError) as err:
            render(text, CTX, shell=True, parameters=PARAMETERS)
        assert err.value.name == "Ref::nope"


# -- values the author's quotes would expose (issue 9, item 1) -------------------------

_IF = "after an `{% if %}` whose branches leave the shell's quoting in different states"
_FOR = "after a `{% for %}` whose body leaves the shell's quoting in a different state"
_FILTER = "inside a `{% filter %}` block"
_SPLIT = "after `$`, `(` or `<` that a `{% ... %}` tag splits from the text it belongs to"
MISPLACED = [
    ("echo '{{ params.x }}'", "inside single quotes"),
    ('echo "{{ params.x }}"', "inside double quotes"),
    ("echo \"a $(echo '{{ params.x }}')\"", "inside single quotes"),
    ("echo `ls {{ params.x }}`", "inside backticks"),
    ('echo "`ls {{ params.x }}`"', "inside backticks"),
    ("echo `echo $(ls {{ params.x }})`", "inside backticks"),
    ("echo ${v:-{{ params.x }}}", "inside `${...}`"),
    ("echo $(( {{ params.x }} + 1 ))", "inside shell arithmetic"),
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
    # Only one branch of an `{% if %}` runs, and a `{% for %}` body runs again from where
    # it ended: the quotes the scanner sees must be the quotes of every rendering.
    ("echo {% if a %}'{% else %}'{% endif %}{{ params.x }}'", "inside single quotes"),
    ("echo {% if a %}x{% else %}'{% endif %}{{ params.x }}'", _IF),
    ("echo {% for i in r %}'{% endfor %}'{{ params.x }}'", _FOR),
    ("echo {% for i in r %}{{ params.x }}'{% endfor %}", "inside single quotes"),
    ("echo {% for i in r %}a{% else %}'{% endfor %}{{ params.x }}", _FOR),
    # Text a `{% filter %}` block or a `{% call %}` block emits is not the author's text.
    ("{% filter replace('Q', \"'\") %}echo {{ params.x }}{% endfilter %}", _FILTER),
    ("{% filter e %}echo {{ params.x }}{% endfilter %}", _FILTER),
    (
        '{% macro m() %}{{ caller() }}{{ params.x }}{% endmacro %}"{% call m() %}{% endcall %}"',
        "inserted unquoted by `{% call %}`",
    ),
    # What Jinja emits: whitespace control, CR line breaks, tags that render nothing.
    ("echo hi # note\n{{- params.x }}", "inside a shell comment"),
    ("cat <<EOF\r{{ params.x | string }}\nEOF", "inside a here-document"),
    ("cat <{# #}<EOF\n{{ params.x }}\nEOF", "inside a here-document"),
    ("cat <<E{# #}OF\nE\n{{ params.x }}\nEOF", "inside a here-document"),
    ("echo a{% if b %}{% endif %} #{{ params.x }}", "inside a shell comment"),
    ("echo ${% if a %}(({% endif %} {{ params.x }}", _SPLIT),
    ("echo ${% if a %}{v:-{{ params.x }}}{% endif %}", _SPLIT),
    # An unquoted here-document joins `\<newline>` before it looks for its delimiter.
    ("cat <<EOF\na\\\nEOF\n{{ params.x }}\nEOF", "inside a here-document"),
    # bash (the /bin/sh of many images): `$'...'` escapes quotes; arithmetic runs `$(...)`.
    ("echo $'\\'' '{{ params.x }}'", "inside single quotes"),
    ("echo $'{{ params.x }}'", "inside single quotes"),
    ("(( {{ params.x }} ))", "inside shell arithmetic"),
    ("for (( i={{ params.x }}; i<1; i++ )); do :; done", "inside shell arithmetic"),
    ("echo $[ {{ params.x }} ]", "inside shell arithmetic"),
]


@pytest.mark.parametrize(("text", "where"), MISPLACED)
def test_a_value_inside_the_authors_quoting_is_found(text: str, where: str) -> None:
    found = misplaced(text)
    assert [m.where for m in found] == [where]
    bad = found[0]
    assert text[bad.offset : bad.offset + bad.length] == bad.text
    assert bad.text.startswith(("{{", "Ref::", "{% call"))


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
    "echo {% if v %}-v {% endif %}{{ params.x }} {% if q %}'a b'{% else %}\"c\"{% endif %}",
    "{% for f in params.files %}cp {{ f }} out/; {% endfor %}echo {{ params.x }}",
    "{% filter upper %}echo hi{% endfilter %} {{ params.x }}",
    "{% macro m(v) %}--v={{ v }}{% endmacro %}run {{ m(params.x) }}",
    "cat <<'EOF'\na\\\nEOF\necho {{ params.x }}",
    "cat <<EOF {{ params.x }}\nEOF",
    "echo {%- if true %} {% endif -%} {{ params.x }} $'\\n' {{ params.x }}",
    "x=$(( 1 + 2 )) {{ params.x }}; ( (echo a) ) {{ params.x }}",
    # A tag right after `$(`, `$` or `<` is fine when what follows cannot join them.
    "out=$({% if a %}echo 1{% else %}echo 2{% endif %}); echo {{ params.x }}",
    "echo $({% for f in params.l %}cat {{ f }};{% endfor %}) {{ params.x }}",
    "x=${% if a %}HOME{% else %}PWD{% endif %}; cat <{% if a %}in{% endif %} {{ params.x }}",
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
    # Work on a value of the budget's size, repeated: each pass is cheap, the sum is not.
    "{% set s = 'a' * 1000000 %}{% for i in range(99000) %}{% set n = s.upper() %}{% endfor %}",
    "{% set s = 'a' * 1000000 %}{% for i in range(99000) %}{% set n = s.count('b') %}{% endfor %}",
    "{% set s = 'a' * 1000000 %}{% for i in range(99000) %}{% set n = s[1:] %}{% endfor %}",
    "{% set s = 'a' * 1000000 %}{% set u = 'a' * 1000000 %}{% for i in range(400) %}"
    "{% for j in range(400) %}{% if s == u or 'b' in s %}{% endif %}{% endfor %}{% endfor %}",
    "{% set s = range(100000)|list %}{% for i in range(400) %}{% for j in range(400) %}"
    "{% if -1 is in s %}{% endif %}{% endfor %}{% endfor %}",
    # Filters that are slow for each character they read.
    "{{ ('ab' * 500000)|sort|sort|sort|sort|sort|sort|sort|sort|sort|sort|length }}",
    "{% set s = 'a ' * 500000 %}{% for i in range(15) %}{% set t = s|wordwrap(1) %}{% endfor %}",
    "{% set s = 'a' * 1000000 %}{% for i in range(15) %}{% set t = s|max %}{% endfor %}",
    # Template code costs ~20 us a character to compile: 300 KB of it is 7 s.
    "{{ [" + "a," * 150000 + "] }}",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_a_runaway_template_fails_within_its_budget(text: str) -> None:
    ctx = Context(params={"n": 10**9}, job_name="j")
    with pytest.raises(TemplateError) as err:
        render(text, ctx, shell=True, parameters={})
    # Stopped by a limit of the work done, which holds on any machine; the clock is
    # the last resort for what those limits miss.
    assert "seconds" not in err.value.message


@pytest.mark.parametrize(
    "text",
    [
        "{{ 1e400 * 0 }}",
        "{{ 'a'|truncate(-1) }}",
        "{{ 'a'|xmlattr }}",
        "{{ cycler() }}",
    ],
)
def test_a_template_that_fails_inside_jinja_is_an_error_not_a_traceback(text: str) -> None:
    with pytest.raises(TemplateError, match="template failed"):
        render(text, Context(params={}, job_name="j"), shell=True, parameters={})


def test_a_template_cannot_refund_its_budget() -> None:
    # The budget's own hooks are names a template can call.
    text = (
        "{% set s = 'a' * 1000000 %}{% for i in range(99000) %}"
        "{% set n = _fb_charge(-10**9) %}{% set n = s.upper() %}{% endfor %}"
    )
    with pytest.raises(TemplateError, match="characters of text in all"):
        render(text, Context(params={}, job_name="j"), shell=True, parameters={})


def test_a_render_stops_at_its_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "MAX_SECONDS", 0.0)
    with pytest.raises(TemplateError, match="takes more than 0 seconds to render"):
        render(
            "{% for i in range(10) %}{{ i }}{% endfor %}",
            Context(params={}, job_name="j"),
            shell=True,
            parameters={},
        )


@pytest.mark.parametrize(
    "text",
    [
        "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}",
        "{{ " + "+".join(["1"] * 3000) + " }}",
        "{{ params" + ".x" * 5000 + " }}",
        "{{ " + "[" * 2000 + "]" * 2000 + " }}",
        "{% if true %}" * 200 + "x" + "{% endif %}" * 200,
        "{% for i in [1] %}" * 25 + "x" + "{% endfor %}" * 25,
    ],
    ids=["parentheses", "sum", "attributes", "lists", "ifs", "loops"],
)
def test_a_template_nested_too_deeply_to_compile_is_an_error(text: str) -> None:
    # Jinja's parser and Python's compiler recurse per level: a RecursionError or an
    # IndentationError escaped from validate as a traceback.
    with pytest.raises(TemplateError, match="nests too deeply"):
        render(text, Context(params={"x": 1}, job_name="j"), shell=True, parameters={})


def test_a_command_nested_too_deeply_is_a_validate_error(tmp_path: Path) -> None:
    # The quoting check walks `{% if %}` blocks inside each other before Jinja compiles.
    command = "{% if true %}" * 1100 + "echo {{ params.x }}" + "{% endif %}" * 1100
    (tmp_path / "d.flow").write_text(f'param x = "a"\njob a {{\n  command = "{command}"\n}}\n')
    with pytest.raises(FlowError) as info:
        load(tmp_path / "d.flow")
    assert info.value.kind is Kind.TEMPLATE and "nests too deeply" in info.value.message


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
    # not text, and refused before it is parsed (front.py), saying where the byte is.
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
