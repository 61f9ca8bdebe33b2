"""What a finished run leaves for CI besides its exit code: a JUnit XML file
(`--junit PATH`) and, under GitHub Actions, a Markdown step summary appended to
`$GITHUB_STEP_SUMMARY`. Both read the run back from the store, so they show what was
recorded, not what the runner believed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from flowbatch.outputs.jobview import visible

if TYPE_CHECKING:
    from flowbatch.lang.compile import Plan
    from flowbatch.run.records import JobRecord, RunStatus
    from flowbatch.run.state import JobState
    from flowbatch.store.jobstore import Store


def write_reports(
    store: Store, plan: Plan, run_id: str, status: RunStatus | str, *, junit: Path | None
) -> None:
    """Write the JUnit file and the step summary that were asked for; a failure to
    write one is reported on stderr and does not change the run's exit code. `status`
    is how the run ended (a RunStatus or its name)."""
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
    if junit is None and not summary_path:
        return
    from flowbatch.outputs.junit import junit_xml, log_tail_via
    from flowbatch.outputs.step_summary import step_summary
    from flowbatch.run.records import RunStatus

    jobs = store.job_records(run_id=run_id)

    def children(job_id: str, state: JobState | None) -> list[JobRecord]:
        return store.job_records(parent=job_id, status=state)

    if junit is not None:
        xml = junit_xml(
            run_id, plan.path, jobs, log_tail=log_tail_via(store.job), children=children
        )
        try:
            junit.parent.mkdir(parents=True, exist_ok=True)
            junit.write_text(xml, encoding="utf-8")
        except OSError as err:
            click.echo(
                visible(f"warning: cannot write JUnit file `{junit}`: {err.strerror}"), err=True
            )
    if summary_path:
        ended = RunStatus(status)
        markdown = step_summary(plan, jobs, run_id=run_id, status=ended, children=children)
        try:
            with open(summary_path, "a", encoding="utf-8") as f:
                f.write(markdown + "\n")
        except OSError as err:
            click.echo(f"warning: cannot append the step summary: {err.strerror}", err=True)


def prune(store: Store, state_dir: Path, keep_days: float) -> None:
    """Forget runs that ended more than `keep_days` ago, with their logs."""
    import shutil

    for run_id in store.prune_runs(keep_days):
        shutil.rmtree(state_dir / "logs" / run_id, ignore_errors=True)
