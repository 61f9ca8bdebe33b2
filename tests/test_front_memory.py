"""What the front half keeps while it loads a large pipeline (issue 13: the peak memory
of `flowbatch run` of 10,000 jobs): the syntax tree is gone before compile adds its
own, and a text written once per job is kept once."""

from __future__ import annotations

import gc
from typing import Any

import pytest

import flowbatch.lang.load as load_module
import flowbatch.lang.syntax as s
from flowbatch.lang.computes import Machine
from flowbatch.lang.load import load_text
from flowbatch.lang.parse import parse

MACHINE = Machine(vcpus=2, memory=4096)


def _jobs(n: int) -> str:
    return "".join(f'job j{i} {{\n  command = "true"\n  queue = "default"\n}}\n' for i in range(n))


def test_compile_runs_without_the_syntax_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    compile_pipeline = load_module.compile_pipeline
    before = {id(o) for o in gc.get_objects() if isinstance(o, s.File)}  # other tests'

    def counting(pipeline: Any) -> Any:
        seen.append(sum(isinstance(o, s.File) and id(o) not in before for o in gc.get_objects()))
        return compile_pipeline(pipeline)

    monkeypatch.setattr(load_module, "compile_pipeline", counting)
    plan = load_text(_jobs(3), "p.flow", machine=MACHINE)
    assert seen == [0]
    assert len(plan) == 3
    assert plan.pipeline.jobs["j2"].span is not None  # what errors need is kept


def test_a_text_written_in_every_job_is_kept_once() -> None:
    tree = parse(_jobs(3), "p.flow")
    blocks = [st for st in tree.statements if isinstance(st, s.Block)]
    entries = [e for b in blocks for e in b.body.entries]
    assert len({id(b.kind) for b in blocks}) == 1
    assert len({id(e.key) for e in entries if e.key == "command"}) == 1
    values = [e.value for e in entries if e.key == "command"]
    assert all(isinstance(v, s.Str) and v.value == "true" for v in values)
    assert len({id(v.value) for v in values if isinstance(v, s.Str)}) == 1

    plan = load_text(_jobs(3), "p.flow", machine=MACHINE)
    specs = list(plan.pipeline.jobs.values())
    assert len({id(spec.command) for spec in specs}) == 1
    assert len({id(spec.retry) for spec in specs}) == 1


def test_long_texts_are_not_pooled_and_stay_equal() -> None:
    long = "x" * 200
    text = "".join(f'job j{i} {{\n  command = "{long}"\n}}\n' for i in range(2))
    plan = load_text(text, "p.flow", machine=MACHINE)
    assert [spec.command for spec in plan.pipeline.jobs.values()] == [long, long]


def test_the_model_keeps_spans_of_its_own_not_the_trees() -> None:
    # The tree's spans die together once the model is made (their memory goes back as
    # whole pools); the model's are equal copies, and errors point where they did.
    text = (
        'compute c {\n  type = "local"\n}\nqueue q {\n  compute = [c]\n}\n'
        'job a {\n  command = "true"\n  queue = "q"\n}\n'
        'job b {\n  command = "true"\n  after = [a]\n}\n'
    )
    tree = parse(text, "p.flow")
    tree_spans = {
        id(span)
        for st in tree.statements
        if isinstance(st, s.Block)
        for span in (st.name_span, *(e.value.span for e in st.body.entries))
    }
    tree_spans |= {
        id(item.span)
        for st in tree.statements
        if isinstance(st, s.Block)
        for e in st.body.entries
        if isinstance(e.value, s.List)
        for item in e.value.items
    }
    kept: list[Any] = []
    pipeline = load_module.analyze([tree], overrides={}, machine=MACHINE, aws=None)
    kept += [spec.span for spec in pipeline.jobs.values()]
    kept += [dep.span for spec in pipeline.jobs.values() for dep in spec.after]
    kept += [pipeline.queues["q"].span, pipeline.computes["c"].span]
    assert all(span is not None for span in kept)
    assert not {id(span) for span in kept} & tree_spans
    assert (pipeline.jobs["b"].span.line, pipeline.jobs["b"].span.col) == (11, 5)
    assert (pipeline.jobs["b"].after[0].span.line, pipeline.jobs["b"].after[0].span.col) == (13, 12)
