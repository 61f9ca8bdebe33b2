"""One run as a single self-contained HTML page: `flowbatch report`.

The page holds the pipeline graph coloured by each job's final state (SVG drawn by the
caller, inlined), a timeline of every attempt on every compute slot, a table of jobs
(arrays collapsed to per-state counts, their failed children listed, capped) and the
log tails of failed jobs. It needs nothing from the network: styles are inline, there
is no script, and the only URLs are SVG namespace names. Everything that comes from
users or processes (names, reasons, logs) is HTML-escaped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from html import escape
from typing import Final

from flowbatch.outputs.graph import STATE_LOOK, STATES, memory_text
from flowbatch.outputs.report.data import FailedJob, JobRow, RunReport
from flowbatch.outputs.report.timeline import BAR_COLOURS, timeline_svg
from flowbatch.run.records import RunStatus
from flowbatch.run.state import JobState

__all__ = ["graph_for_html", "report_html"]

_PROLOG: Final = re.compile(r"\A.*?(?=<svg\b)", re.DOTALL)

_CSS: Final = """
:root { --ink: #24292f; --muted: #57606a; --line: #d0d7de; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
  color: var(--ink); margin: 0; background: #fff; }
header { padding: 18px 28px 14px; border-bottom: 1px solid var(--line); background: var(--bg); }
main { padding: 8px 28px 40px; max-width: 1280px; }
h1 { font-size: 20px; margin: 0 0 6px; font-weight: 600; }
h2 { font-size: 16px; margin: 28px 0 10px; padding-bottom: 4px;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 18px 0 6px; }
.meta { color: var(--muted); margin: 0; }
.meta code { color: var(--ink); }
.badge { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 12px;
  font-weight: 600; border: 1px solid; vertical-align: 2px; margin-left: 6px; }
.cards { display: flex; gap: 10px; flex-wrap: wrap; margin-top: 12px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; background: #fff;
  min-width: 96px; }
.card b { display: block; font-size: 18px; }
.card span { color: var(--muted); font-size: 12px; }
.note { background: #fff8c5; border: 1px solid #d4a72c66; border-radius: 6px;
  padding: 8px 12px; margin: 10px 0; }
.scroll { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; padding: 8px;
  background: #fff; }
.graph svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { background: var(--bg); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.reason { max-width: 420px; overflow-wrap: anywhere; }
tr.child td:first-child { padding-left: 26px; }
.state { display: inline-block; padding: 0 7px; border-radius: 4px; border: 1px solid;
  font-size: 12px; font-weight: 600; white-space: nowrap; }
.counts { color: var(--muted); font-size: 12px; }
.missing { color: #8c959f; }
pre.log { background: #0d1117; color: #e6edf3; padding: 10px 12px; border-radius: 6px;
  overflow-x: auto; font: 12px/1.4 ui-monospace, "DejaVu Sans Mono", monospace;
  max-height: 420px; }
details { margin: 6px 0 12px; }
summary { cursor: pointer; }
.timeline .lane { fill: #f6f8fa; }
.timeline .tick { stroke: #d0d7de; stroke-width: 1; }
.timeline .tick-label, .timeline .lane-label { font: 11px system-ui, "DejaVu Sans", sans-serif;
  fill: #57606a; }
.timeline .bar-label { font: 10px system-ui, "DejaVu Sans", sans-serif; fill: #fff;
  pointer-events: none; }
.timeline .bar:hover rect { stroke: #24292f; stroke-width: 1.5; }
.legend { display: flex; gap: 14px; font-size: 12px; color: var(--muted); margin: 6px 0; }
.legend i { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
  vertical-align: -2px; margin-right: 4px; }
"""


def graph_for_html(svg: bytes | str) -> str:
    """Graphviz's SVG output made fit to inline: the XML prolog and DOCTYPE (which
    names a URL) dropped, so the `<svg>` element starts the text."""
    text = svg.decode() if isinstance(svg, bytes) else svg
    return _PROLOG.sub("", text, count=1).strip()


def report_html(report: RunReport) -> str:
    """The whole page for `report`, as one HTML5 document."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>flowbatch run {escape(report.run_id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        _header(report),
        "<main>",
    ]
    parts.extend(f'<p class="note">Missing: {escape(text)}.</p>' for text in report.missing)
    parts.extend(_graph(report))
    parts.extend(_timeline(report))
    parts.extend(_jobs(report.jobs))
    parts.extend(_logs(report.jobs))
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


# -- sections ------------------------------------------------------------------------------


def _header(report: RunReport) -> str:
    singles = [j for j in report.jobs if j.size is None]
    arrays = [j for j in report.jobs if j.size is not None]
    units = len(singles) + sum(j.size or 0 for j in arrays)
    failed = sum(1 for j in singles if j.status is JobState.FAILED) + sum(
        j.counts.get(JobState.FAILED, 0) for j in arrays
    )
    succeeded = sum(1 for j in singles if j.status is JobState.SUCCEEDED) + sum(
        j.counts.get(JobState.SUCCEEDED, 0) for j in arrays
    )
    attempts = sum(j.attempts for j in report.jobs)
    duration = None
    if report.created_at is not None and report.ended_at is not None:
        duration = report.ended_at - report.created_at
    cards = [
        (str(len(report.jobs)), "jobs in the pipeline"),
        (f"{units:,}", "jobs and array children"),
        (f"{succeeded:,}", "succeeded"),
        (f"{failed:,}", "failed"),
        (f"{attempts:,}", "attempts"),
        ("—" if duration is None else _duration_text(duration), "wall time"),
    ]
    return (
        f"<header><h1>Run <code>{escape(report.run_id)}</code>"
        f"{_state(report.status, badge=True)}</h1>"
        f'<p class="meta">Pipeline <code>{escape(report.pipeline)}</code>'
        f" · started {escape(_when(report.created_at))}"
        f" · ended {escape(_when(report.ended_at))}</p>"
        '<div class="cards">'
        + "".join(
            f"<div class=card><b>{escape(v)}</b><span>{escape(k)}</span></div>" for v, k in cards
        )
        + "</div></header>"
    )


def _graph(report: RunReport) -> list[str]:
    out = ['<section id="graph"><h2>Pipeline graph</h2>']
    if report.graph_svg:
        out.append(f'<div class="scroll graph">{report.graph_svg}</div>')
    else:
        note = report.graph_note or "the graph could not be drawn"
        out.append(f'<p class="note">No graph: {escape(note)}.</p>')
    out.append("</section>")
    return out


def _timeline(report: RunReport) -> list[str]:
    out = ['<section id="timeline"><h2>Timeline</h2>']
    svg = timeline_svg(report.attempts, end=report.ended_at)
    if not svg:
        out.append('<p class="note">No attempt of this run started.</p>')
    else:
        legend = "".join(
            f'<span><i style="background:{colour}"></i>{state.lower()}</span>'
            for state, colour in BAR_COLOURS.items()
        )
        out.append(
            f'<p class="meta">One lane per slot of each host; {len(report.attempts):,} attempts.'
            " Hover a bar for the job, attempt and state; attempts less than a pixel apart"
            " are drawn as one bar.</p>"
        )
        out.append(f'<div class="legend">{legend}</div>')
        out.append(f'<div class="scroll">{svg}</div>')
    out.append("</section>")
    return out


def _jobs(jobs: Iterable[JobRow]) -> list[str]:
    out = [
        '<section id="jobs"><h2>Jobs</h2><div class="scroll"><table>',
        "<thead><tr><th>Job</th><th>State</th><th class=num>Duration</th>"
        "<th class=num>Attempts</th><th class=num>Exit code</th>"
        "<th class=num>Peak memory</th><th>Compute</th><th>Status reason</th></tr></thead><tbody>",
    ]
    for job in jobs:
        name = escape(job.name)
        if job.size is not None:
            name += f' <span class="counts">array of {job.size:,}</span>'
        state = _state(job.status)
        if job.size is not None:
            state += f'<div class="counts">{escape(_counts(job.counts))}</div>'
        out.append(
            f"<tr><td>{name}</td><td>{state}</td>"
            f"<td class=num>{_duration(job.duration)}</td><td class=num>{job.attempts:,}</td>"
            f"<td class=num>{_code(job.exit_code)}</td>"
            f"<td class=num>{_memory(job.peak_memory)}</td><td>{escape(job.compute)}</td>"
            f'<td class="reason">{escape(job.reason)}</td></tr>'
        )
        for child in job.failed_children:
            out.append(
                f'<tr class="child"><td>{escape(child.label)}</td>'
                f"<td>{_state(JobState.FAILED)}</td>"
                f"<td class=num></td><td class=num>{child.attempts}</td>"
                f"<td class=num>{_code(child.exit_code)}</td><td class=num></td><td></td>"
                f'<td class="reason">{escape(child.reason)}</td></tr>'
            )
        hidden = job.failed_total - len(job.failed_children)
        if hidden > 0:
            out.append(
                f'<tr class="child"><td colspan=8 class="counts">… and {hidden:,} more failed'
                f" children of {escape(job.name)} (see <code>flowbatch jobs --status FAILED"
                "</code>)</td></tr>"
            )
    out.append("</tbody></table></div></section>")
    return out


def _logs(jobs: Iterable[JobRow]) -> list[str]:
    """Failed jobs whose last attempt's log was read (those that ran, children capped)."""
    failures: list[FailedJob] = []
    for job in jobs:
        if job.failure is not None:
            failures.append(job.failure)
        failures.extend(job.failed_children)
    shown = [f for f in failures if f.log_tail is not None]
    if not shown:
        return []
    out = ['<section id="failures"><h2>Logs of failed jobs</h2>']
    for failure in shown:
        why = f"exit code {failure.exit_code}" if failure.exit_code is not None else "failed"
        if failure.reason:
            why += f": {failure.reason}"
        tries = "1 attempt" if failure.attempts == 1 else f"{failure.attempts} attempts"
        out.append(f'<h3 class="failed-job">{escape(failure.label)}</h3>')
        out.append(f'<p class="meta">{escape(why)} · {tries}</p>')
        if failure.log_tail:
            out.append(
                "<details open><summary>stderr and stdout of the last attempt</summary>"
                f'<pre class="log">{escape(failure.log_tail)}</pre></details>'
            )
        else:
            out.append('<p class="meta missing">Its log files are empty or gone.</p>')
    out.append("</section>")
    return out


# -- small pieces --------------------------------------------------------------------------


# A run's status is painted as the job state of the same name (RUNNING, SUCCEEDED,
# FAILED); one no job has (INTERRUPTED, INCOMPLETE, UNKNOWN) in grey.
_LOOK_BY_NAME: Final = {state.value: look for state, look in STATE_LOOK.items()}


def _state(status: JobState | RunStatus, *, badge: bool = False) -> str:
    name = status.value
    look = _LOOK_BY_NAME.get(name)
    fill, border = (look.fill, look.border) if look else ("#eeeeee", "#666666")
    cls = "badge" if badge else "state"
    return (
        f'<span class="{cls} s-{escape(name.lower())}" style="background:{fill};'
        f'border-color:{border}">{escape(name)}</span>'
    )


def _counts(counts: Mapping[JobState, int]) -> str:
    shown = [f"{counts[s]:,} {s.value.lower()}" for s in STATES if counts.get(s, 0)]
    return ", ".join(shown) or "no children"


def _duration(seconds: float | None) -> str:
    """Markup: the duration, or a grey dash when it is unknown."""
    return '<span class="missing">—</span>' if seconds is None else _duration_text(seconds)


def _duration_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m"


def _code(code: int | None) -> str:
    return '<span class="missing">—</span>' if code is None else str(code)


def _memory(mib: int | None) -> str:
    return '<span class="missing">—</span>' if mib is None else escape(memory_text(mib))


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "—"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
