"""CLI commands: validate — check pipelines without running anything.

Errors go to stderr in the one shape (file:line:col, the line, a caret, a hint); under
GitHub Actions (`GITHUB_ACTIONS=true`) each is also printed as an `::error` workflow
command so that it shows on the pull request's diff.
"""

from __future__ import annotations

import sys

import click

from flowbatch.cli.common import params_option, parse_params
from flowbatch.cli.reporting import report_error
from flowbatch.lang.aws_limits import AwsTarget
from flowbatch.lang.diagnostics import FlowError
from flowbatch.lang.load import load


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@params_option
@click.option(
    "--target",
    type=click.Choice(["aws"]),
    help="Also hold every job to the limits of this target (aws: AWS Batch's), as a run "
    "that sends it there would; jobs aimed at an aws_batch environment always are.",
)
def validate(files: tuple[str, ...], params: tuple[str, ...], target: str | None) -> None:
    """Check FILES: exit 0 when every one is valid, 2 when any has errors (on stderr)."""
    overrides = parse_params(params)
    aws = AwsTarget(every_job=True) if target == "aws" else None
    failed = False
    for path in files:
        try:
            plan = load(path, overrides, aws=aws)
        except FlowError as err:
            report_error(err)  # and on to the next file
            failed = True
            continue
        shown = str(path)
        if not shown.isprintable():
            # Every character `visible` writes out is unprintable; a plain name (the
            # usual case) skips importing it, which `validate`'s start-up would pay for.
            from flowbatch.outputs.jobview import visible

            shown = visible(shown)
        arrays = sum(1 for name in plan.jobs() if plan.job(name).is_array)
        click.echo(
            f"{shown}: ok ({_count(len(plan), 'job')}, {_count(arrays, 'array')}, "
            f"{_count(plan.process_count(), 'process', 'processes')})",
            err=True,
        )
    sys.exit(2 if failed else 0)


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


COMMANDS: list[click.Command] = [validate]
