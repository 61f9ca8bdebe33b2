"""The front half: lexical rules, attributes, inheritance, params, templates, the Plan."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flowbatch import FlowError, Kind, load, load_text
from flowbatch.lang.computes import Machine
from flowbatch.lang.model import DepKind
from flowbatch.lang.template import Context, render_command

MACHINE = Machine(vcpus=4, memory=8192)


def plan_of(text: str, **params: str):  # type: ignore[no-untyped-def]
    return load_text(text, "t.flow", params, machine=MACHINE)


def error_of(text: str, **params: str) -> FlowError:
    with pytest.raises(FlowError) as info:
        plan_of(text, **params)
    return info.value


def test_smallest_pipeline_gets_the_implicit_local_and_default() -> None:
    plan = plan_of('job hello {\n  command = "echo hello"\n}\n')
    assert plan.jobs() == ("hello",)
    spec = plan.job("hello")
    assert spec.queue == "default" and (spec.vcpus, spec.memory, spec.gpus) == (1, 1024, 0)
    assert plan.queues["default"].compute == ("local",)
    assert (plan.computes["local"].vcpus, plan.computes["local"].memory) == (4, 8192)


def test_lexical_rules() -> None:
    plan = plan_of(
        '# a comment\n'
        'job a {  # trailing comment\n'
        '  command = "say \\"hi\\"\\tthere\\\\"\n'
        '  memory  = 500MB\n'
        '  timeout = 1h30m\n'
        '  tags    = {\n    team = "render",\n    tier = 2,\n  }\n'
        '  outputs = [\n    "a.txt",\n    "b.txt",\n  ]\n'
        '}\n'
        'job b {\n'
        '  command = """\n'
        '      echo one\n'
        '        echo two\n'
        '      """\n'
        '  vcpus = 0.5\n'
        '}\n'
    )  # fmt: skip
    a, b = plan.job("a"), plan.job("b")
    assert a.command == 'say "hi"\tthere\\'
    assert a.memory == 477  # 500 MB = 476.8 MiB, rounded up
    assert a.timeout == 5400
    assert dict(a.tags) == {"team": "render", "tier": "2"}
    assert a.outputs == ("a.txt", "b.txt")
    assert b.command == "echo one\n  echo two\n"
    assert b.vcpus == 0.5


@pytest.mark.parametrize(
    ("text", "mib"),
    [("512MiB", 512), ("2GiB", 2048), ("2GB", 1908), ("1KiB", 1)],
)
def test_sizes_are_mib(text: str, mib: int) -> None:
    assert plan_of(f'job a {{\n  command = "x"\n  memory = {text}\n}}\n').job("a").memory == mib


def test_names_longer_than_128_characters_are_refused() -> None:
    err = error_of(f'job {"a" * 129} {{\n  command = "x"\n}}\n')
    assert err.kind is Kind.SYNTAX and "129 characters" in err.message


def test_definitions_inherit_and_merge_maps_key_by_key() -> None:
    plan = plan_of(
        'definition base {\n  command = "run"\n  vcpus = 2\n  env = { A = "1", B = "2" }\n'
        "  retry { attempts = 3 }\n}\n"
        'definition child: base {\n  env = { B = "20", C = "30" }\n}\n'
        'job j: child {\n  memory = 2GiB\n  env = { C = "300" }\n'
        '  retry { evaluate_on_exit = [{ on_exit_code = "1", action = "exit" }] }\n}\n'
    )
    spec = plan.job("j")
    assert spec.command == "run" and spec.vcpus == 2 and spec.memory == 2048
    assert dict(spec.env) == {"A": "1", "B": "20", "C": "300"}
    assert spec.retry.attempts == 3 and spec.retry.rules[0].on_exit_code == "1"
    assert spec.definition == "child"


def test_params_are_typed_and_overridable() -> None:
    text = (
        'param n = 4\nparam mem = 1GiB\nparam fast = false\nparam name = "x"\n'
        'job a {\n  command = "echo {{ params.name }} {{ params.fast }}"\n'
        "  array = params.n\n  memory = params.mem\n}\n"
    )
    plan = plan_of(text, n="8", mem="2GiB", fast="true", name="a b")
    spec = plan.job("a")
    assert spec.array_size == 8 and spec.memory == 2048
    assert plan.params == {"n": 8, "mem": 2048, "fast": True, "name": "a b"}


@pytest.mark.parametrize(("name", "value"), [("n", "eight"), ("mem", "lots"), ("fast", "yes")])
def test_a_parameter_of_the_wrong_type_is_an_error(name: str, value: str) -> None:
    err = error_of(
        'param n = 4\nparam mem = 1GiB\nparam fast = false\njob a {\n  command = "x"\n}\n',
        **{name: value},
    )
    assert err.kind is Kind.PARAM_TYPE and err.detail["param"] == name
    assert f"-p {name}={value}" in err.message


def test_an_unknown_override_suggests_the_declared_name() -> None:
    err = error_of('param frames = 4\njob a {\n  command = "x"\n}\n', frame="3")
    assert err.kind is Kind.UNKNOWN_NAME and err.hint == "did you mean `frames`?"


def test_templates_quote_values_unless_raw() -> None:
    plan = plan_of(
        'param evil = "a b; rm -rf ~"\n'
        'job a {\n  command = "echo {{ params.evil }} {{ params.evil | raw }}"\n}\n'
        'job b {\n  command = ["echo", "{{ params.evil }}"]\n}\n'
    )
    ctx = Context(params=plan.params, job_name="a")
    assert render_command(plan.job("a").command, ctx, {}) == "echo 'a b; rm -rf ~' a b; rm -rf ~"
    assert render_command(plan.job("b").command, ctx, {}) == ("echo", "a b; rm -rf ~")


def test_the_sandbox_refuses_unsafe_attributes() -> None:
    err = error_of('job a {\n  command = "{{ params.__class__.__mro__ }}"\n}\n')
    assert err.kind is Kind.TEMPLATE


def test_ref_placeholders_come_from_parameters() -> None:
    plan = plan_of('job a {\n  command = "cat Ref::file"\n  parameters = { file = "my data" }\n}\n')
    ctx = Context(params={}, job_name="a")
    spec = plan.job("a")
    assert render_command(spec.command, ctx, spec.parameters) == "cat 'my data'"


def test_dependency_kinds_compile_to_one_node_per_array() -> None:
    plan = plan_of(
        'job prep {\n  command = "p"\n}\n'
        'job frames {\n  command = "f"\n  array = 10000\n  after = [prep]\n}\n'
        'job thumbs {\n  command = "t"\n  array = 10000\n  after = [n_to_n(frames)]\n}\n'
        'job poster {\n  command = "c"\n  after = [frames[0]]\n}\n'
        'job migrate {\n  command = "m"\n  array = 5\n  sequential = true\n}\n'
    )
    assert len(plan) == 5 and plan.process_count() == 1 + 10000 * 2 + 1 + 5
    assert [d.kind for d in plan.deps("thumbs")] == [DepKind.N_TO_N]
    assert plan.deps("poster")[0].index == 0
    assert plan.dependents("frames") == ("poster", "thumbs")
    assert plan.jobs().index("prep") < plan.jobs().index("frames") < plan.jobs().index("thumbs")
    assert plan.critical_path("prep") == 3 and plan.critical_path("migrate") == 5
    graph = plan.digraph()
    assert graph.number_of_nodes() == 5 and graph.has_edge("frames", "thumbs")


def test_digraph_without_networkx_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # networkx is an optional extra (only Plan.digraph() uses it): without it, the error
    # says how to get it rather than a bare ModuleNotFoundError.
    plan = plan_of('job a {\n  command = "x"\n}\n')
    monkeypatch.setitem(sys.modules, "networkx", None)
    with pytest.raises(ImportError, match=r"pip install 'flowbatch\[networkx\]'"):
        plan.digraph()


def test_a_self_dependency_is_a_cycle() -> None:
    err = error_of('job a {\n  command = "x"\n  after = [a]\n}\n')
    assert err.kind is Kind.CYCLE and err.detail["cycle"] == ("a", "a")


def test_imports_bring_definitions_and_refuse_cycles() -> None:
    files = {
        "lib.flow": 'import "t.flow"\ndefinition d {\n  command = "x"\n}\n',
    }
    with pytest.raises(FlowError) as info:
        load_text('import "lib.flow"\njob a: d {}\n', "t.flow", read=files.__getitem__)
    assert info.value.kind is Kind.IMPORT_CYCLE
    files["lib.flow"] = 'definition d {\n  command = "x"\n}\n'
    plan = load_text('import "lib.flow"\njob a: d {}\n', "t.flow", read=files.__getitem__)
    assert plan.job("a").command == "x" and plan.pipeline.sources == ("t.flow", "lib.flow")


def test_ssh_and_slurm_compute_environments() -> None:
    plan = plan_of(
        'compute farm {\n  type = "ssh"\n  known_hosts = "kh"\n'
        '  hosts = [{ address = "10.0.0.5", port = 2222, user = "u", vcpus = 8, memory = 16GiB },'
        ' "b@10.0.0.6"]\n}\n'
        'compute hpc {\n  type = "slurm"\n  partition = "batch"\n  max_vcpus = 512\n}\n'
        "queue q {\n  compute = [farm, hpc]\n  priority = 10\n}\n"
        'job a {\n  command = "x"\n  queue = q\n}\n'
    )
    farm, hpc = plan.computes["farm"], plan.computes["hpc"]
    assert [h.name for h in farm.hosts] == ["10.0.0.5:2222", "10.0.0.6"]
    assert farm.vcpus == 9 and farm.managed is False and farm.options["known_hosts"] == "kh"
    assert hpc.hosts[0].vcpus == 512 and hpc.options["partition"] == "batch"
    assert plan.queues["q"].compute == ("farm", "hpc") and plan.queues["q"].priority == 10


def test_ssh_without_known_hosts_is_refused() -> None:
    err = error_of('compute farm {\n  type = "ssh"\n  hosts = ["a@b"]\n}\n')
    assert err.kind is Kind.MISSING_ATTRIBUTE and "never trusted silently" in (err.hint or "")


def test_a_bad_override_is_reported_once() -> None:
    err = error_of('param n = 4\njob a {\n  command = "x"\n  array = params.n\n}\n', n="four")
    assert err.kind is Kind.PARAM_TYPE and len(err.errors) == 1


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_a_float_parameter_must_be_finite(value: str) -> None:
    err = error_of('param alpha = 0.5\njob a {\n  command = "x"\n}\n', alpha=value)
    assert err.kind is Kind.PARAM_TYPE


def test_a_broken_compute_environment_is_reported_once() -> None:
    err = error_of(
        'compute far {\n  type = "ssh"\n  hosts = ["u@h"]\n}\n'
        'queue q {\n  compute = [far]\n}\njob a {\n  command = "x"\n  queue = q\n}\n'
    )
    assert [e.kind for e in err.errors] == [Kind.MISSING_ATTRIBUTE]


def test_a_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bin.flow"
    bad.write_bytes(b"\xff\xfejob")
    main = tmp_path / "main.flow"
    main.write_text('import "bin.flow"\njob a {\n  command = "x"\n}\n')
    for path in (bad, main):
        with pytest.raises(FlowError) as info:
            load(path)
        assert info.value.kind is Kind.IMPORT and "not UTF-8" in info.value.message


def test_an_array_template_is_checked_for_its_last_child_too() -> None:
    err = error_of(
        'param names = "a b"\n'
        'job t {\n  command = "echo {{ params.names.split()[array.index] }}"\n  array = 3\n}\n'
    )
    assert err.kind is Kind.TEMPLATE and "array.index = 2" in err.message
    job = 'job t {\n  command = "echo {{ params.names.split()[array.index] }}"\n  array = 3\n}\n'
    assert plan_of('param names = "a b c"\n' + job).job("t").array_size == 3


def test_a_shared_template_is_checked_for_each_job_that_uses_it() -> None:
    # Verdicts are cached per template text; a template that reads the job's name must
    # still be checked for every job, and the error says which job, not only where.
    shared = 'definition d {\n  command = "echo {{ job.name[6] }}"\n}\n'
    err = error_of(shared + "job longername: d {}\njob short: d {}\n")
    assert err.kind is Kind.TEMPLATE and "in job `short`" in err.message
    assert err.span is not None and err.span.line == 2
    assert len(plan_of(shared + "job longername: d {}\njob longest: d {}\n")) == 2


def test_inputs_and_outputs_may_be_templates_and_are_checked() -> None:
    plan = plan_of(
        'job t {\n  command = "x"\n  array = 3\n'
        '  inputs = ["in/{{ array.index }}.txt"]\n  outputs = ["out/{{ array.index }}"]\n}\n'
    )
    assert plan.job("t").inputs == ("in/{{ array.index }}.txt",)  # rendered per child
    err = error_of('job t {\n  command = "x"\n  array = 3\n  inputs = ["in/{{ array.idx }}"]\n}\n')
    assert err.kind is Kind.TEMPLATE and err.span is not None and err.span.line == 4


def test_lines_are_counted_at_newlines_only() -> None:
    # A form feed is whitespace to the lexer; str.splitlines would end a line there and
    # quote the wrong one.
    err = error_of("job a {\n  x = 1 \f\n  y = 2 3\n}\n")
    assert err.span is not None and (err.span.line, err.span.col) == (3, 9)
    assert "3 |   y = 2 3" in str(err)


@pytest.mark.parametrize(
    ("text", "override"),
    [
        ("param m = 1GiB\n", "9" * 400 + "GiB"),
        ("param d = 1h\n", "9" * 400 + "h"),
        ("param n = 1\n", "9" * 5000),
        ("param d = 999999999999999h\n", None),
    ],
)
def test_absurdly_large_values_are_errors_not_crashes(text: str, override: str | None) -> None:
    name = text.split()[1]
    params = {name: override} if override is not None else {}
    err = error_of(text, **params)
    assert err.kind in (Kind.SYNTAX, Kind.PARAM_TYPE), err


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1.00000000000000000001", 1.0), ("0000000000000000001", 1), ("1.12345678901234567GiB", 1151)],
)
def test_long_fractions_and_leading_zeros_are_not_too_large(value: str, expected: float) -> None:
    assert plan_of(f"param x = {value}\n").params["x"] == expected  # sizes: MiB, rounded up
