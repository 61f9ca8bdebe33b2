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

    def counting(pipeline: Any) -> Any:
        seen.append(sum(isinstance(o, s.File) for o in gc.get_objects()))
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
