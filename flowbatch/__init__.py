"""flowbatch: a workflow language and pipeline runner modelled on AWS Batch.

The public API: `load` and `load_text` turn `.flow` files into a `Plan`; `FlowError`
is the one error they raise; `run_plan` runs a Plan (imported lazily: it needs anyio).
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
