"""CLI command: plan — what `flowbatch run` would run and why, job by job, without
running anything (with `--resume`, against the latest run of the same pipeline).

Also home of `resume_decision`, which `run --resume` shares so that the two never
disagree.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from flowbatch.cli.common import load_plan, params_option, state_dir_option
from flowbatch.cli.common import state_dir as resolve_state_dir
from flowbatch.cli.github import json_text
from flowbatch.outputs.jobview import visible

if TYPE_CHECKING:
    from flowbatch.lang.compile import Plan
    from flowbatch.run.resume import Decision, JobPlan
    from flowbatch.store.jobstore import Store


def resume_decision(store: Store, plan: Plan, *, resume: bool) -> Decision:
    """What would run (and why) if `plan` ran now, with `resume` against its latest run."""
    from flowbatch.run.fingerprint import Fingerprints
    from flowbatch.run.resume import decide

    if not resume:
        return decide(plan, None, None, None, resume=False)
    # The same file, however it was spelled on the command line last time.
    spellings = (os.path.abspath(plan.path), os.path.realpath(plan.path))
    previous = store.latest_run(plan.path, aliases=spellings)
    records = None if previous is None else store.records(previous)
    # InputsError (a job's `inputs` over the limits) is bad input: the CLI's handler.
    return decide(plan, Fingerprints(plan), previous, records)


@click.command("plan")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@params_option
@click.option("--resume", is_flag=True, help="Plan as `flowbatch run --resume` would run.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document (sorted keys).")
@state_dir_option
@click.pass_context
def plan_command(
    ctx: click.Context,
    file: Path,
    params: tuple[str, ...],
    resume: bool,
    as_json: bool,
    state_dir: Path | None,
) -> None:
    """Show what `flowbatch run FILE` would run and why, without running anything."""
    from flowbatch.store.jobstore import Store

    plan = load_plan(ctx, file, params)
    state = resolve_state_dir(state_dir)
    store: Store | None = None
    if resume and not (state / "jobs.db").exists():
        click.echo(
            f"note: no job database at `{os.path.abspath(state / 'jobs.db')}`: no run to "
            "resume from there (--state-dir or FLOWBATCH_STATE_DIR point elsewhere)",
            err=True,
        )
    if resume and (state / "jobs.db").exists():
        store = Store.open(state, create=False)
    try:
        if store is None:
            from flowbatch.run.resume import decide

            # Nothing has run here: everything is new, whatever --resume says.
            decision = decide(plan, None, None, None, resume=resume)
        else:
            decision = resume_decision(store, plan, resume=True)
    finally:
        if store is not None:
            store.close()
    if as_json:
        click.echo(json_text(decision.as_json()))
    else:
        click.echo("\n".join(render_text(decision)))


def render_text(decision: Decision) -> list[str]:
    """The plan as lines for a terminal: a header, one line per job, a total."""
    return [visible(line) for line in _lines(decision)]


def _lines(decision: Decision) -> list[str]:
    if not decision.resume:
        head = f"{decision.pipeline}: without --resume every job runs (new)"
    elif decision.previous_run is None:
        head = f"{decision.pipeline}: no previous run, every job runs (new)"
    else:
        head = f"{decision.pipeline}: resuming from run {decision.previous_run}"
    jobs = list(decision.jobs.values())
    labels = [j.name if j.size is None else f"{j.name}[{j.size}]" for j in jobs]
    width = max((len(label) for label in labels), default=0)
    lines = [head]
    for label, job in zip(labels, jobs, strict=True):
        lines.append(f"  {label:<{width}}  {_action(job):<9}  {_why(job)}")
    summary = decision.summary()
    lines.append(
        f"{summary['jobsRun']} of {summary['jobs']} jobs run; "
        f"{summary['processesRun']} of {summary['processes']} processes run, "
        f"{summary['processesReused']} reused"
    )
    return lines


def _action(job: JobPlan) -> str:
    if job.reused:
        return "reuse"
    if job.size is None or job.reruns == job.size:
        return "run"
    return f"run {job.reruns}"


def _why(job: JobPlan) -> str:
    if job.size is None:
        return job.reason
    parts = []
    for reason, n in job.counts.items():
        shown = job.examples.get(reason, [])
        if reason == "unchanged" or n == job.size:
            parts.append(f"{reason} {n}" if n != job.size else reason)
            continue
        more = ", ..." if n > len(shown) else ""
        parts.append(f"{reason} {n} ({', '.join(map(str, shown))}{more})")
    return "; ".join(parts)


COMMANDS: list[click.Command] = [plan_command]
