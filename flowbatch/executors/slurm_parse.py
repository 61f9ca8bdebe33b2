"""Reading SLURM's answers: squeue rows, wait statuses, array index ranges, and what a
finished SLURM job means as an `ExecResult`.

Pure and synchronous, so that every mapping is unit-tested without a cluster.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from flowbatch.executors.base import (
    REASON_ESSENTIAL_EXITED,
    REASON_HOST_LOST,
    REASON_SPOT,
    REASON_TIMEOUT,
    ExecResult,
)

# One squeue call per poll answers for every watched job: state, reason, node and the
# raw wait status (`exit_code` in --Format is the wait(2) status, e.g. 1280 = exit 5),
# so finished jobs need no second call to scontrol or sacct.
SQUEUE_FORMAT = "JobID:|,ArrayJobID:|,ArrayTaskID:|,State:|,Reason:|,exit_code:|,NodeList:|"

REASON_SCANCEL = "Job cancelled by SLURM (scancel)"
REASON_OOM = "OutOfMemoryError: Container killed due to memory usage"
REASON_GONE = "SLURM no longer knows job {job} (purged after MinJobAge) and it left no exit status"

# States after which SLURM will not run the job again.
TERMINAL = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "TIMEOUT",
        "CANCELLED",
        "NODE_FAIL",
        "BOOT_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "DEADLINE",
    }
)
RUNNING = frozenset({"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT"})


@dataclass(frozen=True, slots=True)
class SqueueRow:
    """One line of `squeue -O SQUEUE_FORMAT`.

    `tasks` is set for a compressed record of array tasks that SLURM has not split off
    yet (all still pending); `task` is set for one array task; both are None for a
    single job.
    """

    job_id: str
    array_job_id: str
    task: int | None
    tasks: frozenset[int] | None
    state: str
    reason: str
    wait_status: int | None
    node: str

    @property
    def key(self) -> str:
        """flowbatch's name for the SLURM job: `A_i` for an array task, else `A`."""
        return f"{self.array_job_id}_{self.task}" if self.task is not None else self.array_job_id


def slurm_key(slurm_id: str, index: int | None) -> str:
    return f"{slurm_id}_{index}" if index is not None else slurm_id


def scancel_ids(keys: Iterable[str]) -> list[str]:
    """scancel arguments for these jobs, with the tasks of one array as `A_[ranges]`
    (so that terminating 10,000 children is one short argument, not 10,000)."""
    singles: list[str] = []
    tasks: dict[str, list[int]] = {}
    for key in keys:
        base, _, task = key.partition("_")
        if task.isdigit():
            tasks.setdefault(base, []).append(int(task))
        else:
            singles.append(key)
    return sorted(set(singles)) + [
        f"{base}_[{format_indices(indices)}]" for base, indices in sorted(tasks.items())
    ]


def format_indices(indices: Iterable[int]) -> str:
    """`--array` syntax for a set of indices, with runs collapsed: [0,1,2,5] -> "0-2,5"."""
    ordered = sorted(set(indices))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


_RANGE = re.compile(r"^(\d+)(?:-(\d+))?(?::(\d+))?$")


def parse_indices(text: str) -> frozenset[int]:
    """The inverse of `format_indices`, also accepting SLURM's `:step` and `%throttle`."""
    text = text.split("%", 1)[0].strip("[]")
    out: set[int] = set()
    for part in filter(None, text.split(",")):
        m = _RANGE.match(part)
        if m is None:
            raise ValueError(f"not an array index range: {part!r}")
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        out.update(range(lo, hi + 1, int(m.group(3) or 1)))
    return frozenset(out)


def exit_code_of(wait_status: int | None) -> int | None:
    """A wait(2) status as a shell would report it: the exit code, or 128 + signal."""
    if wait_status is None:
        return None
    if wait_status & 0x7F:
        return 128 + (wait_status & 0x7F)
    return (wait_status >> 8) & 0xFF


def parse_squeue(text: str) -> list[SqueueRow]:
    """Rows of `squeue -h -O SQUEUE_FORMAT`; lines that do not fit are skipped."""
    rows: list[SqueueRow] = []
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < 7:
            continue
        job_id, array_job_id, task_text, state, reason, status, node = (
            f.strip() for f in fields[:7]
        )
        task: int | None = None
        tasks: frozenset[int] | None = None
        if task_text.isdigit():
            task = int(task_text)
        elif task_text not in ("", "N/A"):
            try:
                tasks = parse_indices(task_text)
            except ValueError:
                continue
        rows.append(
            SqueueRow(
                job_id=job_id,
                array_job_id=array_job_id or job_id,
                task=task,
                tasks=tasks,
                # "CANCELLED by 0" in some versions' long forms
                state=state.split()[0] if state else "",
                reason=reason,
                wait_status=int(status) if status.lstrip("-").isdigit() else None,
                node=node,
            )
        )
    return rows


def time_limit_minutes(timeout: float) -> int:
    """SLURM's --time in whole minutes, rounded up (flowbatch enforces the exact timeout)."""
    return max(1, math.ceil(timeout / 60))


def result_of(row: SqueueRow, *, host: str | None) -> ExecResult | None:
    """How a SLURM job ended, or None while it has not ended."""
    if row.state not in TERMINAL:
        return None
    info = {"slurm_job_id": row.key, "slurm_state": row.state}
    if row.node and row.node not in ("(null)", "N/A"):
        info["slurm_node"] = row.node
    code = exit_code_of(row.wait_status)
    node = info.get("slurm_node", "unknown")
    match row.state:
        case "COMPLETED":
            return ExecResult(exit_code=code or 0, host=host, extra=info)
        case "FAILED":
            return ExecResult(exit_code=code, host=host, extra=info)
        case "TIMEOUT" | "DEADLINE":
            return ExecResult(
                exit_code=None, status_reason=REASON_TIMEOUT, retryable=False, host=host, extra=info
            )
        case "CANCELLED":
            # Someone ran scancel behind flowbatch's back (flowbatch's own cancels never
            # get here): like AWS's TerminateJob, it is final.
            return ExecResult(
                exit_code=None,
                status_reason=REASON_SCANCEL,
                reason=f"SLURM job {row.key} CANCELLED",
                retryable=False,
                host=host,
                extra=info,
            )
        case "OUT_OF_MEMORY":
            return ExecResult(
                exit_code=137,
                status_reason=REASON_ESSENTIAL_EXITED,
                reason=REASON_OOM,
                host=host,
                extra=info,
            )
        case "PREEMPTED":
            return ExecResult(
                exit_code=None,
                status_reason=REASON_SPOT.format(instance=node),
                host=host,
                extra=info,
            )
        case _:  # NODE_FAIL, BOOT_FAIL
            return ExecResult(
                exit_code=None,
                status_reason=REASON_HOST_LOST.format(instance=node),
                reason=f"SLURM {row.state} on node {node}",
                host=host,
                host_lost=True,
                extra=info,
            )


def result_of_gone(key: str, exit_file_text: str | None, *, host: str | None) -> ExecResult:
    """A job SLURM has forgotten: trust the exit status the batch script wrote, if any."""
    info = {"slurm_job_id": key, "slurm_state": "UNKNOWN"}
    if exit_file_text is not None and exit_file_text.strip().isdigit():
        return ExecResult(exit_code=int(exit_file_text.strip()), host=host, extra=info)
    return ExecResult(
        exit_code=None,
        status_reason=REASON_GONE.format(job=key),
        retryable=True,
        host=host,
        extra=info,
    )
