"""flowbatch: a workflow language and pipeline runner modelled on AWS Batch.

The public API: `load` and `load_text` turn `.flow` files into a `Plan`; `FlowError`
is the one error they raise; `run_plan` runs a Plan (imported lazily: it needs anyio).

Where things live (imports go down this list only; CONTRIBUTING.md has the long form):

    cli/          the command line, the composition root (one module per command group)
    outputs/      what a Plan or a run is shown as: progress line, graph, junit, report/
    store/        the SQLite job store (jobstore.Store), its schema, rows and views
    run/          running a Plan: the pure Frontier, the state table, records, the runner
    executors/    one per compute type (local, container, ssh, slurm) behind base.Executor
    lang/         .flow text -> Plan, pure: lexer, tables, parse, analyze, compile, load
    errors.py     FlowbatchError, the base every error a user may see derives from
"""

from __future__ import annotations

from typing import Any

from flowbatch.lang.compile import Plan
from flowbatch.lang.diagnostics import FlowError, Kind
from flowbatch.lang.load import load, load_text

__all__ = ["FlowError", "Kind", "Plan", "load", "load_text", "run_plan"]


def __getattr__(name: str) -> Any:
    if name == "run_plan":
        from flowbatch.run.runner import run_plan

        return run_plan
    raise AttributeError(f"module 'flowbatch' has no attribute {name!r}")
