"""One run as JUnit XML, for CI systems that show test reports (GitHub, GitLab, Jenkins).

Each job is a `<testcase>`; an array's children are cases of their own (`frames[7]`)
while the array has at most `max_children` of them, else the array is one case whose
failure lists its failed children, so a report stays readable for 10,000 children.
A job that failed only because a dependency failed never ran: it is `<skipped>`, so
that the failures a report counts are the jobs that actually broke. A job a run left
unfinished (interrupted) is skipped too; every other failure is a `<failure>` with the
exit code, the status reason and the tail of the attempt's log.

The module takes plain data: the job summaries of `Store.jobs`, and callbacks for the
children of an array and for a job's log tail (`log_tail_via` builds one from
`Store.describe`), so it never reads the store itself.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from flowbatch.outputs.jobview import duration_seconds, exit_code, label, never_ran, tail_of

__all__ = [
    "ChildrenOf",
    "duration_seconds",
    "exit_code",
    "junit_xml",
    "label",
    "log_tail_via",
    "never_ran",
    "tail_of",
]

ChildrenOf = Callable[[str, "str | None"], Sequence[Mapping[str, Any]]]
"""(array job id, status or None) -> that array's child summaries, in index order:
`lambda job_id, status: store.jobs(parent=job_id, status=status)`."""

LISTED_CHILDREN: Final = 50  # failed children named in one array's failure text
TAILED_CHILDREN: Final = 3  # of those, how many carry their log tail
# Characters XML 1.0 cannot hold at all (ElementTree would write them and produce a
# file no parser reads): logs carry ANSI escapes and the odd NUL.
_NOT_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean(text: str) -> str:
    """`text` with the characters XML 1.0 forbids replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def failure_message(job: Mapping[str, Any]) -> str:
    """`exit code 3: Essential container in task exited`, or the reason alone."""
    reason = str(job.get("statusReason") or "").strip()
    code = exit_code(job)
    if code is None:
        return reason or "failed"
    return f"exit code {code}" + (f": {reason}" if reason else "")


# -- logs ----------------------------------------------------------------------------------


def log_tail_via(
    describe: Callable[[str], Mapping[str, Any]], lines: int = 30
) -> Callable[[Mapping[str, Any]], str]:
    """A `log_tail` callback for `junit_xml`: the last `lines` of stderr and of stdout
    of the job's last attempt, found through `describe` (e.g. `Store.describe`)."""

    def log_tail(job: Mapping[str, Any]) -> str:
        found = describe(str(job["jobId"]))
        log_dir = (found.get("container") or {}).get("logStreamName")
        if not log_dir:
            return ""
        parts = []
        for stream in ("stderr", "stdout"):
            tail = tail_of(Path(log_dir) / stream, lines)
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
    jobs: Sequence[Mapping[str, Any]],
    *,
    log_tail: Callable[[Mapping[str, Any]], str],
    children: ChildrenOf | None = None,
    max_children: int = 200,
) -> str:
    """The run `run_id` of `pipeline` as a JUnit XML document.

    `jobs` are the run's top-level summaries (`Store.jobs(run_id=...)`); `children`
    lists an array's children (without it an array is one case); `log_tail(job)` is
    the text to show under a failed job that ran. Times are seconds."""
    suite_name = Path(pipeline).stem or pipeline
    counts = _Counts()
    suite = ET.Element("testsuite", name=clean(suite_name))
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="flowbatch.run_id", value=clean(run_id))
    ET.SubElement(props, "property", name="flowbatch.pipeline", value=clean(pipeline))
    for job in jobs:
        size = (job.get("arrayProperties") or {}).get("size")
        if size is not None and children is not None:
            _array_cases(
                suite, counts, suite_name, job, int(size), children, log_tail, max_children
            )
        else:
            _case(suite, counts, suite_name, job, log_tail)
    span = _span_seconds(jobs)
    suite.attrib.update(counts.attrs())
    suite.set("time", f"{span:.3f}")
    stamp = _first(jobs, "createdAt")
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
    job: Mapping[str, Any],
    log_tail: Callable[[Mapping[str, Any]], str],
) -> ET.Element:
    seconds = duration_seconds(job) or 0.0
    case = ET.SubElement(
        suite, "testcase", name=clean(label(job)), classname=clean(classname), time=f"{seconds:.3f}"
    )
    counts.tests += 1
    status = str(job.get("status") or "SUBMITTED")
    if status == "SUCCEEDED":
        return case
    if never_ran(job):
        counts.skipped += 1
        ET.SubElement(case, "skipped", message=clean(str(job.get("statusReason"))))
    elif status != "FAILED":
        counts.skipped += 1
        ET.SubElement(case, "skipped", message=f"did not finish: {status}")
    else:
        counts.failures += 1
        message = failure_message(job)
        failure = ET.SubElement(case, "failure", message=clean(message), type=_failure_type(job))
        failure.text = clean(_details(job, log_tail))
    return case


def _failure_type(job: Mapping[str, Any]) -> str:
    code = exit_code(job)
    return "JobFailed" if code is None else f"ExitCode{code}"


def _details(job: Mapping[str, Any], log_tail: Callable[[Mapping[str, Any]], str]) -> str:
    lines = [
        f"job: {label(job)} ({job.get('jobId')})",
        f"status: {job.get('status')}",
        f"status reason: {job.get('statusReason') or ''}",
        f"exit code: {'' if exit_code(job) is None else exit_code(job)}",
        f"attempts: {job.get('attempts')}",
    ]
    tail = log_tail(job) if job.get("startedAt") is not None else ""
    if tail:
        lines += ["", tail]
    return "\n".join(lines)


def _array_cases(
    suite: ET.Element,
    counts: _Counts,
    pipeline: str,
    job: Mapping[str, Any],
    size: int,
    children: ChildrenOf,
    log_tail: Callable[[Mapping[str, Any]], str],
    max_children: int,
) -> None:
    job_id = str(job["jobId"])
    if size > max_children:
        case = _case(suite, counts, pipeline, job, log_tail)
        failure = case.find("failure")
        if failure is not None:
            failed = children(job_id, "FAILED")
            failure.text = clean(_children_text(job, failed, log_tail))
        return
    by_index = {
        int(c["arrayProperties"]["index"]): c
        for c in children(job_id, None)
        if _index(c) is not None
    }
    classname = f"{pipeline}.{job['jobName']}"
    for index in range(size):
        child = by_index.get(index)
        if child is None:  # never created: the array stopped (or never started) first
            child = {
                "jobId": f"{job_id}:{index}",
                "jobName": job["jobName"],
                "status": job.get("status"),
                "statusReason": job.get("statusReason") or "never started",
                "arrayProperties": {"index": index},
                "container": {"exitCode": None},
            }
            _case_never_started(suite, counts, classname, child)
            continue
        _case(suite, counts, classname, child, log_tail)


def _case_never_started(
    suite: ET.Element, counts: _Counts, classname: str, child: Mapping[str, Any]
) -> None:
    case = ET.SubElement(
        suite, "testcase", name=clean(label(child)), classname=clean(classname), time="0.000"
    )
    counts.tests += 1
    counts.skipped += 1
    reason = f"never started ({child.get('status')}): {child.get('statusReason')}"
    ET.SubElement(case, "skipped", message=clean(reason))


def _index(child: Mapping[str, Any]) -> int | None:
    index = (child.get("arrayProperties") or {}).get("index")
    return None if index is None else int(index)


def _children_text(
    job: Mapping[str, Any],
    failed: Sequence[Mapping[str, Any]],
    log_tail: Callable[[Mapping[str, Any]], str],
) -> str:
    lines = [
        f"job: {job.get('jobName')} ({job.get('jobId')})",
        f"status reason: {job.get('statusReason') or ''}",
        f"failed children: {len(failed)}",
    ]
    for child in failed[:LISTED_CHILDREN]:
        lines.append(f"  {label(child)}: {failure_message(child)}")
    if len(failed) > LISTED_CHILDREN:
        lines.append(f"  ... and {len(failed) - LISTED_CHILDREN} more")
    for child in [c for c in failed if c.get("startedAt") is not None][:TAILED_CHILDREN]:
        tail = log_tail(child)
        if tail:
            lines += ["", f"=== {label(child)} ===", tail]
    return "\n".join(lines)


def _first(jobs: Sequence[Mapping[str, Any]], key: str) -> int | None:
    values = [j[key] for j in jobs if j.get(key) is not None]
    return min(values) if values else None


def _span_seconds(jobs: Sequence[Mapping[str, Any]]) -> float:
    """The run's wall time as its jobs saw it: first creation to last stop."""
    begun = _first(jobs, "createdAt")
    stops = [j["stoppedAt"] for j in jobs if j.get("stoppedAt") is not None]
    if begun is None or not stops:
        return 0.0
    return max(float(max(stops)) - float(begun), 0.0) / 1000


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
