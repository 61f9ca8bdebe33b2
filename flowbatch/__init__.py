"""flowbatch: a workflow language and pipeline runner modelled on AWS Batch.

The public API: `load` and `load_text` turn `.flow` files into a `Plan`; `FlowError`
is the one error they raise; `run_plan` runs a Plan. Each is imported on first use.

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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowbatch.lang.compile import Plan
    from flowbatch.lang.diagnostics import FlowError, Kind
    from flowbatch.lang.load import load, load_text
    from flowbatch.run.runner import run_plan

__all__ = ["FlowError", "Kind", "Plan", "load", "load_text", "run_plan"]

# Each public name is imported on first use: the command line starts through this
# package (`flowbatch.cli`), and imports the front half only once a command needs it.
_HOMES = {
    "FlowError": "flowbatch.lang.diagnostics",
    "Kind": "flowbatch.lang.diagnostics",
    "Plan": "flowbatch.lang.compile",
    "load": "flowbatch.lang.load",
    "load_text": "flowbatch.lang.load",
    "run_plan": "flowbatch.run.runner",  # needs anyio
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'flowbatch' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
