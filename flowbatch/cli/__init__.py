"""The command line: the composition root, the only place that prints diagnostics to
stderr and chooses exit codes (0 ok, 1 a job failed, 2 bad input or usage, 130
interrupted).

Each group of commands lives in its own module and is registered here. Heavy modules
(anyio, sqlite3, networkx) are imported inside the commands that need them, so that
`flowbatch validate` starts fast.

Imports: anything in flowbatch; click.
"""

from __future__ import annotations

import click

from flowbatch.cli import front, graph, inspect, reports, running


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flowbatch")
def app() -> None:
    """flowbatch: pipelines of batch jobs, with AWS Batch's semantics."""


for _module in (front, graph, running, inspect, reports):
    for _command in _module.COMMANDS:
        app.add_command(_command)


def main() -> None:
    app(prog_name="flowbatch")
