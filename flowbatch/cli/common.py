"""What every CLI command shares: `-p NAME=VALUE` options, loading a pipeline, and
printing FlowErrors.

Imports: diagnostics; click.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from flowbatch.diagnostics import FlowError, render

if TYPE_CHECKING:
    from flowbatch.compile import Plan

F = TypeVar("F", bound=Callable[..., Any])


def params_option(func: F) -> F:
    """The `-p NAME=VALUE` option, repeatable, as a tuple of strings named `params`."""
    return click.option(
        "-p",
        "--param",
        "params",
        multiple=True,
        metavar="NAME=VALUE",
        help="Override a pipeline parameter (repeatable).",
    )(func)


def parse_params(values: tuple[str, ...]) -> dict[str, str]:
    """`-p NAME=VALUE` options as a mapping; click.BadParameter (exit 2) for a bad one."""
    params: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got `{item}`", param_hint="'-p'")
        params[name.strip()] = value
    return params


def load_plan(
    ctx: click.Context, file: str | Path, params: tuple[str, ...], **options: Any
) -> Plan:
    """The Plan of FILE with `-p` overrides, or its errors on stderr and exit 2."""
    from flowbatch.front import load

    try:
        return load(file, parse_params(params), **options)
    except FlowError as err:
        print_errors(err)
        ctx.exit(2)


def print_errors(err: FlowError) -> None:
    """Every error of `err` on stderr; also as GitHub annotations under GitHub Actions."""
    click.echo(render(err), err=True)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for one in err.errors:
            click.echo(github_annotation(one), err=True)


def github_annotation(err: FlowError) -> str:
    """`::error file=F,line=L,col=C::message` (GitHub's workflow command syntax)."""
    message = err.message + (f" ({err.hint})" if err.hint else "")
    message = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if err.span is None:
        return f"::error::{message}"
    path = err.span.path.replace("%", "%25").replace(",", "%2C").replace(":", "%3A")
    return f"::error file={path},line={err.span.line},col={err.span.col}::{message}"
