"""One run as JUnit XML, for CI systems that show test reports (GitHub, GitLab, Jenkins).

Each job is a `<testcase>`; an array's children are cases of their own (`frames[7]`)
while the array has at most `max_children` of them, else the array is one case whose
failure lists its failed children, so a report stays readable for 10,000 children.
A job that failed only because a dependency failed never ran: it is `<skipped>`, so
that the failures a report counts are the jobs that actually broke. A job a run left
unfinished (interrupted) is skipped too; every other failure is a `<failure>` with the
exit code, the status reason and the tail of the attempt's log.

The module takes records (`flowbatch.run.records`): the job listing of
`Store.job_records`, and callbacks for the children of an array and for a job's log
tail (`log_tail_via` builds one from `Store.job`), so it never reads the store itself.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from flowbatch.executors import logfiles
from flowbatch.outputs.jobview import tail_of
from flowbatch.run.records import JobRecord
from flowbatch.run.state import JobState

__all__ = ["ChildrenOf", "junit_xml", "log_tail_via", "tail_of"]

ChildrenOf = Callable[[str, "JobState | None"], Sequence[JobRecord]]
"""(array job id, state or None) -> that array's children, in index order:
`lambda job_id, state: store.job_records(parent=job_id, status=state)`."""

LISTED_CHILDREN: Final = 50  # failed children named in one array's failure text
TAILED_CHILDREN: Final = 3  # of those, how many carry their log tail
# Characters XML 1.0 cannot hold at all (ElementTree would write them and produce a
# file no parser reads): logs carry ANSI escapes and the odd NUL.
_NOT_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean(text: str) -> str:
    """`text` with the characters XML 1.0 forbids replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def failure_message(job: JobRecord) -> str:
    """`exit code 3: Essential container in task exited`, or the reason alone."""
    reason = (job.status_reason or "").strip()
    code = job.exit_code
    if code is None:
        return reason or "failed"
    return f"exit code {code}" + (f": {reason}" if reason else "")


# -- logs ----------------------------------------------------------------------------------


def log_tail_via(
    describe: Callable[[str], JobRecord], lines: int = 30
) -> Callable[[JobRecord], str]:
    """A `log_tail` callback for `junit_xml`: the last `lines` of stderr and of stdout
    of the job's last attempt, found through `describe` (e.g. `Store.job`)."""

    def log_tail(job: JobRecord) -> str:
        detail = describe(job.job_id).detail
        log_path = None if detail is None else detail.log_path
        if not log_path:
            return ""
        parts = []
        for stream in ("stderr", "stdout"):
            tail = tail_of(logfiles.recorded_file(log_path, stream), lines)
            if tail:
                parts.append(f"--- {stream} (last {lines} lines) ---\n{tail}")
        return "\n".join(parts)

    return log_tail


# -- the document --------------------------------------------------------------------------


class _Counts:
    def __init__(self) -> None:
        self.tests = 0
        self.failures = 0
        self.skipped = 0

    def attrs(self) -> dict[str, str]:
        return {
            "tests": str(self.tests),
            "failures": str(self.failures),
            "errors": "0",
            "skipped": str(self.skipped),
        }


def junit_xml(
    run_id: str,
    pipeline: str,
    jobs: Sequence[JobRecord],
    *,
    log_tail: Callable[[JobRecord], str],
    children: ChildrenOf | None = None,
    max_children: int = 200,
) -> str:
    """The run `run_id` of `pipeline` as a JUnit XML document.

    `jobs` are the run's top-level jobs (`Store.job_records(run_id=...)`); `children`
    lists an array's children (without it an array is one case); `log_tail(job)` is
    the text to show under a failed job that ran. Times are seconds."""
    suite_name = Path(pipeline).stem or pipeline
    counts = _Counts()
    suite = ET.Element("testsuite", name=clean(suite_name))
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="flowbatch.run_id", value=clean(run_id))
    ET.SubElement(props, "property", name="flowbatch.pipeline", value=clean(pipeline))
    for job in jobs:
        size = job.array_size
        if size is not None and children is not None:
            _array_cases(suite, counts, suite_name, job, size, children, log_tail, max_children)
        else:
            _case(suite, counts, suite_name, job, log_tail)
    span = _span_seconds(jobs)
    suite.attrib.update(counts.attrs())
    suite.set("time", f"{span:.3f}")
    stamp = _first([j.created_at for j in jobs])
    if stamp is not None:
        suite.set("timestamp", _iso(stamp))
    root = ET.Element("testsuites", name=clean(f"flowbatch {suite_name} {run_id}"))
    root.attrib.update(counts.attrs())
    root.set("time", f"{span:.3f}")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _case(
    suite: ET.Element,
    counts: _Counts,
    classname: str,
    job: JobRecord,
    log_tail: Callable[[JobRecord], str],
) -> ET.Element:
    seconds = job.duration or 0.0
    case = ET.SubElement(
        suite, "testcase", name=clean(job.label), classname=clean(classname), time=f"{seconds:.3f}"
    )
    counts.tests += 1
    if job.status is JobState.SUCCEEDED:
        return case
    if job.never_ran:
        counts.skipped += 1
        ET.SubElement(case, "skipped", message=clean(str(job.status_reason)))
    elif job.status is not JobState.FAILED:
        counts.skipped += 1
        ET.SubElement(case, "skipped", message=f"did not finish: {job.status.value}")
    else:
        counts.failures += 1
        message = failure_message(job)
        failure = ET.SubElement(case, "failure", message=clean(message), type=_failure_type(job))
        failure.text = clean(_details(job, log_tail))
    return case


def _failure_type(job: JobRecord) -> str:
    code = job.exit_code
    return "JobFailed" if code is None else f"ExitCode{code}"


def _details(job: JobRecord, log_tail: Callable[[JobRecord], str]) -> str:
    lines = [
        f"job: {job.label} ({job.job_id})",
        f"status: {job.status.value}",
        f"status reason: {job.status_reason or ''}",
        f"exit code: {'' if job.exit_code is None else job.exit_code}",
        f"attempts: {job.attempts}",
    ]
    tail = log_tail(job) if job.started_at is not None else ""
    if tail:
        lines += ["", tail]
    return "\n".join(lines)


def _array_cases(
    suite: ET.Element,
    counts: _Counts,
    pipeline: str,
    job: JobRecord,
    size: int,
    children: ChildrenOf,
    log_tail: Callable[[JobRecord], str],
    max_children: int,
) -> None:
    job_id = job.job_id
    if size > max_children:
        case = _case(suite, counts, pipeline, job, log_tail)
        failure = case.find("failure")
        if failure is not None:
            failed = children(job_id, JobState.FAILED)
            failure.text = clean(_children_text(job, failed, log_tail))
        return
    by_index = {c.array_index: c for c in children(job_id, None) if c.array_index is not None}
    classname = f"{pipeline}.{job.name}"
    for index in range(size):
        child = by_index.get(index)
        if child is None:  # never created: the array stopped (or never started) first
            _case_never_started(suite, counts, classname, job, index)
            continue
        _case(suite, counts, classname, child, log_tail)


def _case_never_started(
    suite: ET.Element, counts: _Counts, classname: str, parent: JobRecord, index: int
) -> None:
    case = ET.SubElement(
        suite, "testcase", name=clean(f"{parent.name}[{index}]"), classname=clean(classname),
        time="0.000",
    )  # fmt: skip
    counts.tests += 1
    counts.skipped += 1
    reason = f"never started ({parent.status.value}): {parent.status_reason or 'never started'}"
    ET.SubElement(case, "skipped", message=clean(reason))


def _children_text(
    job: JobRecord, failed: Sequence[JobRecord], log_tail: Callable[[JobRecord], str]
) -> str:
    lines = [
        f"job: {job.name} ({job.job_id})",
        f"status reason: {job.status_reason or ''}",
        f"failed children: {len(failed)}",
    ]
    for child in failed[:LISTED_CHILDREN]:
        lines.append(f"  {child.label}: {failure_message(child)}")
    if len(failed) > LISTED_CHILDREN:
        lines.append(f"  ... and {len(failed) - LISTED_CHILDREN} more")
    for child in [c for c in failed if c.started_at is not None][:TAILED_CHILDREN]:
        tail = log_tail(child)
        if tail:
            lines += ["", f"=== {child.label} ===", tail]
    return "\n".join(lines)


def _first(values: Sequence[int | None]) -> int | None:
    found = [v for v in values if v is not None]
    return min(found) if found else None


def _span_seconds(jobs: Sequence[JobRecord]) -> float:
    """The run's wall time as its jobs saw it: first creation to last stop."""
    begun = _first([j.created_at for j in jobs])
    stops = [j.stopped_at for j in jobs if j.stopped_at is not None]
    if begun is None or not stops:
        return 0.0
    return max(float(max(stops)) - float(begun), 0.0) / 1000


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
