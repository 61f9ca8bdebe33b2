"""The front half in one call: read `.flow` files, parse, analyze, compile.

`load(path)` reads the file and its imports; `load_text(text, path)` takes the text
(and a `read` function for imports) and does no I/O of its own. Neither starts an
event loop.

Imports: parse, analyze, compile, model, diagnostics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from flowbatch.compile import Plan


def load(path: str | Path, params: Mapping[str, str] | None = None) -> Plan:
    """The Plan of the pipeline in `path`; raises FlowError with every problem found.
    `params` are `-p NAME=VALUE` overrides as strings, converted to each param's type."""
    raise NotImplementedError


def load_text(
    text: str,
    path: str = "<string>",
    params: Mapping[str, str] | None = None,
    *,
    read: Callable[[str], str] | None = None,
) -> Plan:
    """Like `load`, from text; `read(path)` supplies imported files (none by default)."""
    raise NotImplementedError
