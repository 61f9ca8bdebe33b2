"""One run as a GitHub step summary: Markdown for `$GITHUB_STEP_SUMMARY`.

A heading with the outcome, jobs (and array children) per state, a table of the failed
jobs with their exit codes and reasons, the slowest jobs, and the pipeline as a Mermaid
graph coloured by each job's final state. Text that comes from users or processes
(reasons, names) is escaped so that it cannot break a table or open HTML.

The module takes the Plan and records (`Store.job_records`, plus an optional callback
for an array's failed children), so it never reads the store itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from flowbatch.lang.compile import Plan
from flowbatch.outputs.graph import STATES, StateView, title
from flowbatch.outputs.jobview import visible
from flowbatch.outputs.junit import ChildrenOf
from flowbatch.outputs.mermaid import to_mermaid
from flowbatch.run.records import JobRecord, RunStatus
from flowbatch.run.state import JobState

__all__ = ["format_duration", "outcome", "step_summary"]

SLOWEST: Final = 5
FAILED_ROWS: Final = 30  # failed jobs listed before "... and N more"
_MARK: Final = {
    RunStatus.SUCCEEDED: "✅",
    RunStatus.FAILED: "❌",
    RunStatus.INTERRUPTED: "⏹️",
    RunStatus.INCOMPLETE: "⏸️",
}
_CELL: Final = str.maketrans(
    {"|": "\\|", "<": "&lt;", ">": "&gt;", "&": "&amp;", "\n": " ", "\r": " ", "`": "\\`"}
)


def cell(text: object) -> str:
    """`text` safe inside one Markdown table cell, control characters written out."""
    return visible(str(text).translate(_CELL).strip())


# Outside a code span, what would make a value a link, an image or emphasis.
_PROSE: Final = str.maketrans({c: "\\" + c for c in "\\[]*_~"})


def prose(text: object) -> str:
    """`text` as plain words in a heading or table cell: `cell`, and no Markdown of its
    own (an image fetched from elsewhere, a link, emphasis)."""
    return cell(str(text).translate(_PROSE))


def outcome(jobs: Sequence[JobRecord]) -> RunStatus:
    """SUCCEEDED if every job did, FAILED if one failed, else INCOMPLETE."""
    states = {j.status for j in jobs}
    if JobState.FAILED in states:
        return RunStatus.FAILED
    if states <= {JobState.SUCCEEDED}:
        return RunStatus.SUCCEEDED
    return RunStatus.INCOMPLETE


def format_duration(seconds: float) -> str:
    """`0.42 s`, `12 s`, `3 min 05 s`, `2 h 01 min`."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def step_summary(
    plan: Plan,
    jobs: Sequence[JobRecord],
    *,
    run_id: str,
    status: RunStatus | None = None,
    children: ChildrenOf | None = None,
) -> str:
    """The Markdown summary of run `run_id` of `plan`. `jobs` are the run's top-level
    jobs (`Store.job_records(run_id=...)`); `status` is the run's status if known (else
    it is read off the jobs); `children` lists an array's children by status, to name
    the failed ones."""
    result = status or outcome(jobs)
    name = title(plan)
    out = [
        f"## {_MARK.get(result, '•')} {prose(name)}: run {result.value.lower()}",
        "",
        f"Run `{cell(run_id)}` · {len(jobs)} jobs · {_children_total(jobs)} array children",
        "",
    ]
    out += _counts_table(jobs)
    out += _failed_table(jobs, children)
    out += _slowest_table(jobs)
    out += ["### Pipeline", "", "```mermaid", to_mermaid(plan, states=views(jobs)).rstrip(), "```"]
    return "\n".join(out) + "\n"


def views(jobs: Sequence[JobRecord]) -> dict[str, StateView]:
    """Each job's final state, as the renderers take it."""
    return {job.name: StateView(job.status, job.status_summary or {}) for job in jobs}


def _children_total(jobs: Sequence[JobRecord]) -> int:
    return sum(j.array_size or 0 for j in jobs)


def _counts_table(jobs: Sequence[JobRecord]) -> list[str]:
    per_job: dict[JobState, int] = {}
    per_child: dict[JobState, int] = {}
    for job in jobs:
        per_job[job.status] = per_job.get(job.status, 0) + 1
        for state, n in (job.status_summary or {}).items():
            per_child[state] = per_child.get(state, 0) + n
    rows = ["| State | Jobs | Array children |", "| --- | ---: | ---: |"]
    for state in STATES:
        if per_job.get(state) or per_child.get(state):
            jobs_n, children_n = per_job.get(state, 0), per_child.get(state, 0)
            rows.append(f"| {state.value} | {jobs_n} | {children_n} |")
    return [*rows, ""]


def _failed_table(jobs: Sequence[JobRecord], children: ChildrenOf | None) -> list[str]:
    failed: list[JobRecord] = []
    for job in jobs:
        if job.status is not JobState.FAILED:
            continue
        failed.append(job)
        if children is not None and job.array_size is not None:
            failed.extend(children(job.job_id, JobState.FAILED))
    if not failed:
        return []
    # Jobs that broke first, then those that only waited on them.
    failed.sort(key=lambda job: job.never_ran)
    rows = [
        f"### Failed ({len(failed)})",
        "",
        "| Job | Exit code | Reason |",
        "| --- | ---: | --- |",
    ]
    for job in failed[:FAILED_ROWS]:
        code = job.exit_code
        reason = job.status_reason or ""
        rows.append(f"| `{cell(job.label)}` | {'' if code is None else code} | {prose(reason)} |")
    if len(failed) > FAILED_ROWS:
        rows.append(f"| … and {len(failed) - FAILED_ROWS} more | | |")
    return [*rows, ""]


def _slowest_table(jobs: Sequence[JobRecord]) -> list[str]:
    timed = [(d, job) for job in jobs if (d := job.duration) is not None]
    if not timed:
        return []
    timed.sort(key=lambda pair: (-pair[0], pair[1].label))
    rows = ["### Slowest jobs", "", "| Job | Duration | State |", "| --- | ---: | --- |"]
    for seconds, job in timed[:SLOWEST]:
        state = job.status.value
        rows.append(f"| `{cell(job.label)}` | {format_duration(seconds)} | {state} |")
    return [*rows, ""]
