"""CLI commands: reports on recorded runs.

`flowbatch report RUN_ID` writes one self-contained HTML page about a run: the graph
coloured by each job's final state, a timeline of attempts per compute slot, the jobs
and the failed jobs' log tails. The store is read here and handed to report_data as
records; the pipeline file recorded with the run is loaded again to draw the graph,
and only if it still describes the jobs the run recorded.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from flowbatch.cli.common import open_existing_store, state_dir_option
from flowbatch.cli.common import state_dir as resolve_state_dir
from flowbatch.cli.reporting import CommandError, fail
from flowbatch.outputs.jobview import visible

if TYPE_CHECKING:
    from flowbatch.lang.compile import Plan
    from flowbatch.outputs.report.data import Describe, RunReport
    from flowbatch.run.records import JobRecord, RunRecord
    from flowbatch.store.jobstore import Store


def _fail(message: str, code: int = 2) -> NoReturn:
    fail(CommandError(message, code))


@click.command("report")
@click.argument("run_id", metavar="RUN_ID")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("report.html"), show_default=True,
              help="The HTML file to write.")  # fmt: skip
@state_dir_option
def report(run_id: str, output: Path, state_dir: Path | None) -> None:
    """Write one run (RUN_ID, or `latest`) as a self-contained HTML page."""
    from flowbatch.outputs.report.html import report_html

    started = time.perf_counter()
    found = build_report(state_dir, run_id)
    page = report_html(found)
    try:
        output.write_text(page, encoding="utf-8")
    except OSError as err:
        _fail(f"cannot write `{output}`: {err.strerror or err}")
    took = time.perf_counter() - started
    click.echo(
        f"wrote {visible(str(output))} ({len(page.encode()) / 1024:,.0f} KiB) for run "
        f"{found.run_id} in {took:.1f} s",
        err=True,
    )
    if found.graph_svg is None:
        click.echo(visible(f"note: no graph: {found.graph_note}"), err=True)


def build_report(state_dir: Path | None, run_id: str) -> RunReport:
    """The `report_data.RunReport` of run `run_id` (or `latest`) in `state_dir` (None:
    the default one); StoreError for a missing database or run."""
    from flowbatch.outputs.report.data import collect

    store = open_existing_store(state_dir)
    state_dir = resolve_state_dir(state_dir)
    try:
        run = _find_run(store, run_id)
        jobs = store.job_records(run_id=run.run_id)
        svg, note = graph_of(run, jobs, store.job, launched_in=state_dir.parent)
        return collect(
            run,
            jobs,
            children=lambda job_id, status: store.job_records(parent=job_id, status=status),
            describe=store.job,
            log_root=state_dir.parent,
            graph_svg=svg,
            graph_note=note,
        )
    finally:
        store.close()


def _find_run(store: Store, run_id: str) -> RunRecord:
    from flowbatch.store.schema import UnknownRun

    runs = store.run_records()
    if run_id == "latest":
        if not runs:
            raise UnknownRun(str(store.path), None, ())
        return runs[0]
    for run in runs:
        if run.run_id == run_id:
            return run
    raise UnknownRun(str(store.path), run_id, [r.run_id for r in runs])


def graph_of(
    run: RunRecord,
    jobs: Sequence[JobRecord],
    describe: Describe,
    *,
    launched_in: Path | None = None,
) -> tuple[str | None, str]:
    """The run's pipeline drawn as inline SVG coloured by each job's final state, or
    None and why not: the file is gone or no longer loads, it changed since the run
    (other jobs, commands or array sizes), or Graphviz failed.

    Runs record their file's absolute path; one recorded relative (by an older
    flowbatch) is looked for from here and from `launched_in`, the directory the state
    directory sits in (where `flowbatch run` was started by default). When the recorded
    path is gone, the checkout may have moved with its state directory: the longest end
    of it found below `launched_in` is taken (a different pipeline of the same name is
    then reported as changed, below)."""
    from flowbatch.lang.diagnostics import FlowError
    from flowbatch.lang.load import load
    from flowbatch.outputs.dot import to_dot
    from flowbatch.outputs.graph import RenderError, StateView, dot_to_image
    from flowbatch.outputs.report.html import graph_for_html

    path = run.pipeline
    params = {str(k): str(v) for k, v in run.params.items()}
    candidates = [Path(path)]
    if path and launched_in is not None and not Path(path).is_absolute():
        candidates.append(launched_in / path)
    moved: list[Path] = []
    if path and launched_in is not None and Path(path).is_absolute():
        parts = Path(path).parts[1:]
        moved = [launched_in.joinpath(*parts[i:]) for i in range(len(parts))]
    found = next((c for c in [*candidates, *moved] if c.is_file()), None) if path else None
    if found is None:
        looked = ", ".join(f"`{os.path.abspath(c)}`" for c in candidates)
        if launched_in is not None and moved:
            looked += f" and any end of it below `{os.path.abspath(launched_in)}`"
        return None, f"the pipeline file `{path}` is gone (looked for {looked})"
    path = str(found)
    try:
        plan = load(path, params)
    except FlowError as err:
        return None, f"the pipeline file `{path}` no longer loads ({err.message})"
    changed = _changes(plan, jobs, describe)
    if changed:
        return None, f"the pipeline file `{path}` changed since the run ({changed})"
    states = {job.name: StateView(job.status, job.status_summary or {}) for job in jobs}
    try:
        svg = dot_to_image(to_dot(plan, states=states, run=run.run_id), "svg")
    except RenderError as err:
        return None, str(err)
    return graph_for_html(svg), ""


def _changes(plan: Plan, jobs: Sequence[JobRecord], describe: Describe) -> str:
    """'' when `plan` has the jobs the run recorded with the same commands and array
    sizes; else a short account of the first differences."""
    recorded = {j.name: j for j in jobs}
    names = set(plan.jobs())
    if names != set(recorded):
        added, gone = sorted(names - set(recorded)), sorted(set(recorded) - names)
        parts = []
        if added:
            parts.append("new jobs: " + ", ".join(added[:5]))
        if gone:
            parts.append("jobs no longer there: " + ", ".join(gone[:5]))
        return "; ".join(parts)
    from flowbatch.lang.template import Context, TemplateError, render_command

    differ = []
    for name in sorted(names):
        spec = plan.job(name)
        found = describe(recorded[name].job_id)
        detail = found.detail
        # describe shows what ran (rendered, as argv); render this file's command alike.
        command: str | tuple[str, ...] = spec.command
        if spec.array_size is None:
            ctx = Context(
                params=plan.params,
                job_name=name,
                job_id=found.job_id,
                attempt=max(len(detail.attempts) if detail else 0, 1),
            )
            with contextlib.suppress(TemplateError):
                command = render_command(spec.command, ctx, spec.parameters)
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        ran = None if detail is None else detail.command
        if ran != argv or found.array_size != spec.array_size:
            differ.append(name)
    return ("jobs defined differently: " + ", ".join(differ[:5])) if differ else ""


COMMANDS: list[click.Command] = [report]
