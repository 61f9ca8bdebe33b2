"""Resume decisions: which jobs and array children of a plan would run again, and why,
given what the latest run of the same pipeline left behind.

A job (or child) is reused only if it SUCCEEDED last time, its fingerprint is the same
(`flowbatch.run.fingerprint`), its `outputs` still exist, and nothing it waits for runs
again. Whatever runs again makes its dependents run again: whole-job and one-element
dependencies rerun the whole dependent; N_TO_N reruns child i when upstream child i
reruns; in a SEQUENTIAL array child i reruns when child i - 1 does.

The previous run arrives as plain records (`Store.records`), so this module never
touches the store; `run --resume` and `flowbatch plan` both decide through `decide`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import compress, islice
from typing import Any, Final

from flowbatch.lang.compile import Plan
from flowbatch.lang.model import DepKind
from flowbatch.run.fingerprint import Fingerprints, split, templated
from flowbatch.run.state import JobState

NEW: Final = "new"
FAILED: Final = "failed last time"
COMMAND: Final = "command changed"
INPUT: Final = "input changed"
OUTPUT: Final = "output missing"
UPSTREAM: Final = "upstream reruns"
UNCHANGED: Final = "unchanged"
# Reasons in the order they are checked (and listed).
REASONS: Final = (NEW, FAILED, COMMAND, INPUT, OUTPUT, UPSTREAM, UNCHANGED)
EXAMPLES: Final = 10  # children named per reason in an array's summary

# (status, fingerprint) of each job (index None) or array child, per job name.
Records = Mapping[str, Mapping[int | None, tuple[JobState, str | None]]]


@dataclass(slots=True)
class JobPlan:
    """What happens to one job: `reason` for a single job; for an array, counts per
    reason and the first children of each, and `mask` (1 = child reused)."""

    name: str
    size: int | None
    reason: str
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[int]] = field(default_factory=dict)
    mask: bytearray | None = None

    @property
    def reruns(self) -> int:
        """Processes that run again."""
        return sum(n for r, n in self.counts.items() if r != UNCHANGED)

    @property
    def reused(self) -> bool:
        return self.reruns == 0


@dataclass(slots=True)
class Decision:
    pipeline: str
    resume: bool
    previous_run: str | None
    jobs: dict[str, JobPlan]  # in topological order

    @property
    def reason(self) -> str:
        """`Reused from run <id> (unchanged)`: the status reason of what is reused."""
        return f"Reused from run {self.previous_run} (unchanged)"

    def reuse(self) -> dict[str, bytes | None]:
        """For the runner: jobs reused whole (None) and arrays' masks (1 = reused)."""
        out: dict[str, bytes | None] = {}
        for name, job in self.jobs.items():
            if job.size is None:
                if job.reused:
                    out[name] = None
            elif job.mask is not None and any(job.mask):
                out[name] = bytes(job.mask)
        return out

    def as_json(self) -> dict[str, Any]:
        jobs = []
        for job in self.jobs.values():
            item: dict[str, Any] = {
                "name": job.name,
                "arraySize": job.size,
                "action": "reuse" if job.reused else "run",
                "reason": job.reason,
                "processes": job.size or 1,
                "processesRun": job.reruns,
            }
            if job.size is not None:
                item["reasons"] = dict(job.counts)
                item["children"] = {r: list(ix) for r, ix in job.examples.items()}
            jobs.append(item)
        return {
            "pipeline": self.pipeline,
            "resume": self.resume,
            "previousRun": self.previous_run,
            "jobs": jobs,
            "summary": self.summary(),
        }

    def summary(self) -> dict[str, int]:
        """How many jobs and processes there are, and how many of them run."""
        reruns = [j.reruns for j in self.jobs.values()]
        processes = sum(j.size or 1 for j in self.jobs.values())
        return {
            "jobs": len(self.jobs),
            "jobsRun": sum(1 for n in reruns if n),
            "processes": processes,
            "processesRun": sum(reruns),
            "processesReused": processes - sum(reruns),
        }


def decide(
    plan: Plan,
    fingerprints: Fingerprints | None,
    previous_run: str | None,
    records: Records | None,
    *,
    resume: bool = True,
) -> Decision:
    """What runs and why. Without `resume`, or with no previous run, everything is
    `new`; `fingerprints` may then be None."""
    if not resume or previous_run is None or records is None or fingerprints is None:
        jobs = {n: _all(n, plan.job(n).array_size, NEW) for n in plan.jobs()}
        return Decision(plan.path, resume, previous_run if resume else None, jobs)
    reruns: dict[str, bytearray | bool] = {}  # per job: True/False, or per child (1 = runs)
    jobs = {}
    for name in plan.jobs():
        job = _decide_job(plan, fingerprints, name, records.get(name), reruns)
        jobs[name] = job
        if job.mask is None:
            reruns[name] = not job.reused
        else:
            reruns[name] = bytearray(1 - m for m in job.mask)
    return Decision(plan.path, True, previous_run, jobs)


def _all(name: str, size: int | None, reason: str) -> JobPlan:
    n = size or 1
    examples = {reason: list(range(min(n, EXAMPLES)))} if size is not None else {}
    mask = bytearray(size) if size is not None and reason != UNCHANGED else None
    return JobPlan(name, size, reason, {reason: n}, examples, mask)


def _decide_job(
    plan: Plan,
    fps: Fingerprints,
    name: str,
    previous: Mapping[int | None, tuple[JobState, str | None]] | None,
    reruns: Mapping[str, bytearray | bool],
) -> JobPlan:
    spec = plan.job(name)
    size = spec.array_size
    # Whole-job and element dependencies: one rerun upstream reruns all of this job.
    upstream = False
    per_child: list[bytearray] = []
    for dep in spec.after:
        up = reruns[dep.job]
        if dep.kind is DepKind.N_TO_N and isinstance(up, bytearray):
            per_child.append(up)
        elif isinstance(up, bytearray):
            element = dep.kind is DepKind.ELEMENT and dep.index is not None
            upstream |= bool(up[dep.index or 0]) if element else any(up)
        else:
            upstream |= up
    outputs_gone: dict[int | None, bool] = {}  # looked at only when it could matter
    # Templated outputs name each child's own files; plain globs are the job's, looked
    # at once for all of its children.
    per_child_outputs = templated(spec.outputs)

    def outputs_missing(index: int | None = None) -> bool:
        where = index if per_child_outputs else None
        if where not in outputs_gone:
            outputs_gone[where] = bool(fps.outputs_missing(name, where))
        return outputs_gone[where]

    def reason(record: tuple[JobState, str | None] | None, expected: str, index: int | None) -> str:
        if record is None:
            return NEW
        status, stored = record
        if status is not JobState.SUCCEEDED:
            return FAILED
        if stored != expected:
            parts = split(stored)
            if parts is None:
                return NEW  # recorded before fingerprints existed
            return COMMAND if parts[0] != expected.partition(".")[0] else INPUT
        if outputs_missing(index):
            return OUTPUT
        return UPSTREAM if upstream else UNCHANGED

    if size is None:
        why = reason(None if previous is None else previous.get(None), fps.of(name), None)
        return JobPlan(name, None, why, {why: 1})
    if previous is None:
        return _all(name, size, NEW)
    counts: dict[str, int] = {}
    examples: dict[str, list[int]] = {}
    mask = bytearray(size)
    sequential = spec.sequential
    get = previous.get
    expected = fps.children(name)
    # The children whose own N_TO_N dependency's child reruns, all upstreams in one mask.
    upstream_child = bytearray(size)
    for up in per_child:
        upstream_child = bytearray(a | b for a, b in zip(upstream_child, up, strict=True))
    # The common case first, inline: a child that succeeded as it would run now, with
    # nothing upstream rerunning and the job's outputs present. It is only counted here;
    # its examples are taken from the mask afterwards.
    clean = not upstream and not per_child_outputs
    gone: bool | None = None  # the job's outputs missing, looked at once
    for i in range(size):
        record = get(i)
        if (
            clean
            and record is not None
            and record[1] == expected[i]
            and record[0] is JobState.SUCCEEDED
            and not upstream_child[i]
            and not (sequential and i and not mask[i - 1])
        ):
            if gone is None:
                gone = outputs_missing()
            if not gone:
                mask[i] = 1
                continue
        why = reason(record, expected[i], i)
        if why == UNCHANGED and (upstream_child[i] or (sequential and i and not mask[i - 1])):
            why = UPSTREAM
        if why == UNCHANGED:
            mask[i] = 1
            continue
        counts[why] = counts.get(why, 0) + 1
        shown = examples.setdefault(why, [])
        if len(shown) < EXAMPLES:
            shown.append(i)
    reused = mask.count(1)
    if reused:
        counts[UNCHANGED] = reused
        examples[UNCHANGED] = list(islice(compress(range(size), mask), EXAMPLES))
    ordered: dict[str, int] = {r: counts[r] for r in REASONS if r in counts}
    main = next((r for r in ordered if r != UNCHANGED), UNCHANGED)
    return JobPlan(name, size, main, ordered, {r: examples[r] for r in ordered}, mask)
