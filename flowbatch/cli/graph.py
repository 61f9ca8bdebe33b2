"""CLI commands: graph — draw a pipeline, optionally coloured by one run's job states.

`flowbatch graph FILE` prints DOT on stdout; `-o` picks the format by extension
(.dot, .svg, .png through Graphviz's `dot`, .mmd for Mermaid, .json). `--run` reads
job states from the store and passes them to the renderers as `StateView`s, so the
renderers never touch the database.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import click

from flowbatch.cli.common import (
    open_existing_store,
    params_option,
    parse_params,
    state_dir_option,
)
from flowbatch.lang.compile import Plan
from flowbatch.lang.load import load
from flowbatch.outputs.dot import to_dot
from flowbatch.outputs.graph import StateView, dot_to_image, to_json
from flowbatch.outputs.jobview import visible
from flowbatch.outputs.mermaid import to_mermaid

FORMATS = {".dot": "dot", ".svg": "svg", ".png": "png", ".mmd": "mermaid", ".json": "json"}


def run_states(
    state_dir: Path | None, run_id: str, pipeline: str
) -> tuple[str, dict[str, StateView]]:
    """The run's id (resolving `latest`) and each top-level job's state in it, read from
    the store in `state_dir` (None: the default one); raises StoreError for a missing
    database or run."""
    from flowbatch.store.schema import UnknownRun

    store = open_existing_store(state_dir)
    try:
        if run_id == "latest":
            spellings = (os.path.abspath(pipeline), os.path.realpath(pipeline))
            found = store.latest_run(pipeline, aliases=spellings) or store.latest_run()
            if found is None:
                raise UnknownRun(str(store.path), None, ())
            run_id = found
        runs = [r.run_id for r in store.run_records()]
        if run_id not in runs:
            raise UnknownRun(str(store.path), run_id, runs)
        jobs = store.job_records(run_id=run_id)
    finally:
        store.close()
    return run_id, {job.name: StateView(job.status, job.status_summary or {}) for job in jobs}


@click.command("graph")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@params_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write .dot, .svg, .png (Graphviz), .mmd (Mermaid) or .json.")  # fmt: skip
@click.option("--group-by-queue", is_flag=True, help="Draw each queue's jobs in a box.")
@click.option("--run", "run_id", metavar="RUN_ID",
              help="Colour jobs by their state in this run (`latest` for the newest).")  # fmt: skip
@state_dir_option
def graph(
    file: Path,
    params: tuple[str, ...],
    output: Path | None,
    group_by_queue: bool,
    run_id: str | None,
    state_dir: Path | None,
) -> None:
    """Draw the pipeline FILE: DOT on stdout, or the file given with -o."""
    fmt = "dot"
    if output is not None:
        if output.suffix.lower() not in FORMATS:
            raise click.UsageError(
                f"cannot tell what to write from `{visible(output.name)}`: use one of "
                + ", ".join(FORMATS)
            )
        fmt = FORMATS[output.suffix.lower()]
    plan = load(file, parse_params(params))
    states: dict[str, StateView] | None = None
    if run_id is not None:
        run_id, states = run_states(state_dir, run_id, plan.path)
    data = draw(plan, fmt, group_by_queue=group_by_queue, states=states, run=run_id)
    if output is None:
        click.echo(data.decode(), nl=False)
    else:
        output.write_bytes(data)


def draw(
    plan: Plan,
    fmt: str,
    *,
    group_by_queue: bool = False,
    states: Mapping[str, StateView] | None = None,
    run: str | None = None,
) -> bytes:
    """The plan drawn in `fmt` (a value of FORMATS); RenderError when `dot` fails."""
    if fmt == "json":
        return to_json(plan, states).encode()
    if fmt == "mermaid":
        return to_mermaid(plan, group_by_queue=group_by_queue, states=states, run=run).encode()
    dot_text = to_dot(plan, group_by_queue=group_by_queue, states=states, run=run)
    if fmt in ("svg", "png"):
        return dot_to_image(dot_text, "svg" if fmt == "svg" else "png")
    return dot_text.encode()


COMMANDS: list[click.Command] = [graph]
