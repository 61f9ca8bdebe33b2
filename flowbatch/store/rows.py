"""Turning what the store is told into table rows: a job's static facts, and a batch of
JobEvents folded into one row per event, per job and per attempt.

Folding is pure and checks every state change against the transition table
(`state.can`), so the store applies only legal changes. It runs once per flush over
tens of thousands of events, which is why it works on lists rather than dicts.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Final

from flowbatch.lang.dependencies import depends_on
from flowbatch.lang.model import JobSpec
from flowbatch.run.state import (
    ARRAY_STATES,
    ARRAY_TRANSITIONS,
    Event,
    JobEvent,
    JobState,
    advance,
    can,
)

_S = JobState
JOB_MOVES: Final = frozenset(
    (state, advance(state, event)) for state in JobState for event in Event if can(state, event)
)
# Array parents have their own, smaller table.
PARENT_MOVES: Final = frozenset(
    (state, after) for (state, _event), after in ARRAY_TRANSITIONS.items()
)
_RUNNING: Final = _S.RUNNING
_ACTIVE: Final = frozenset({_S.STARTING, _S.RUNNING})
_DONE: Final = frozenset({_S.SUCCEEDED, _S.FAILED})


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a row the fold builds: its name, its value in a new row before an
    event sets it, and how an upsert merges a later flush's value with the stored one
    (an SQL expression over `excluded` and the table; None: written once, never changed)."""

    name: str
    blank: object = None
    merge: str | None = None


def _latest(table: str, name: str) -> Column:
    """A column whose latest known value wins: a flush that does not know it keeps it."""
    return Column(name, None, f"COALESCE(excluded.{name}, {table}.{name})")


# The one list of each folded row's layout: the upserts' columns, the positions the fold
# writes to and a new row's values are all derived from it.
JOB_COLUMNS: Final = (
    Column("job_id"),
    Column("run_id"),
    Column("name"),
    Column("parent_id"),
    Column("array_index"),
    Column("created_at"),
    Column("status", None, "excluded.status"),
    Column("status_reason", "", "excluded.status_reason"),
    Column("started_at", None, "COALESCE(jobs.started_at, excluded.started_at)"),
    _latest("jobs", "stopped_at"),
    Column("attempt", 0, "MAX(jobs.attempt, excluded.attempt)"),
    _latest("jobs", "exit_code"),
    _latest("jobs", "compute"),
    _latest("jobs", "host"),
    _latest("jobs", "log_path"),
    _latest("jobs", "external_id"),
    _latest("jobs", "fingerprint"),
)
ATTEMPT_COLUMNS: Final = (
    Column("job_id"),
    Column("attempt"),
    Column("run_id"),
    *(
        _latest("attempts", name)
        for name in (
            "started_at", "stopped_at", "exit_code", "reason", "status_reason", "log_path",
            "compute", "host", "external_id", "peak_memory",
        )
    ),
)  # fmt: skip


def upsert(table: str, key: str, columns: tuple[Column, ...]) -> str:
    """INSERT of a whole row of `columns` into `table`, merging into the row with the
    same `key` (a column list) by each column's `merge`."""
    names = ", ".join(c.name for c in columns)
    marks = ", ".join("?" * len(columns))
    merges = ",\n    ".join(f"{c.name} = {c.merge}" for c in columns if c.merge is not None)
    return (
        f"INSERT INTO {table} ({names})\nVALUES ({marks})\n"
        f"ON CONFLICT ({key}) DO UPDATE SET\n    {merges}\n"
    )


UPSERT_JOB: Final = upsert("jobs", "job_id", JOB_COLUMNS)
UPSERT_ATTEMPT: Final = upsert("attempts", "job_id, attempt", ATTEMPT_COLUMNS)

INSERT_EVENT: Final = """
INSERT INTO events (run_id, job_id, state, time, reason, attempt, exit_code, applied)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""

STATIC_COLUMNS: Final = (
    "job_id", "run_id", "name", "array_size", "sequential", "queue", "command", "image",
    "vcpus", "memory", "gpus", "timeout", "retry_attempts", "environment", "parameters",
    "tags", "depends_on", "created_at",
)  # fmt: skip

# Positions in a folded job row and a folded attempt row.
_J = {c.name: i for i, c in enumerate(JOB_COLUMNS)}
(_J_ID, _J_RUN, _J_NAME, _J_PARENT, _J_INDEX, _J_CREATED, _J_STATUS, _J_REASON, _J_STARTED,
 _J_STOPPED, _J_ATTEMPT, _J_EXIT, _J_COMPUTE, _J_HOST, _J_LOG, _J_EXT, _J_FP) = (
    _J[name] for name in (
        "job_id", "run_id", "name", "parent_id", "array_index", "created_at", "status",
        "status_reason", "started_at", "stopped_at", "attempt", "exit_code", "compute",
        "host", "log_path", "external_id", "fingerprint",
    )
)  # fmt: skip
_A = {c.name: i for i, c in enumerate(ATTEMPT_COLUMNS)}
(_A_ID, _A_N, _A_RUN, _A_STARTED, _A_STOPPED, _A_EXIT, _A_REASON, _A_STATUS_REASON, _A_LOG,
 _A_COMPUTE, _A_HOST, _A_EXT, _A_PEAK) = (
    _A[name] for name in (
        "job_id", "attempt", "run_id", "started_at", "stopped_at", "exit_code", "reason",
        "status_reason", "log_path", "compute", "host", "external_id", "peak_memory",
    )
)  # fmt: skip
# A new row: every column blank, then its identity filled in by the fold.
_JOB_BLANK: Final = [c.blank for c in JOB_COLUMNS]
_ATTEMPT_BLANK: Final = [c.blank for c in ATTEMPT_COLUMNS]


def static_row(
    run_id: str, spec: JobSpec, job_ids: Mapping[str, str], created_at: float
) -> tuple[object, ...]:
    """The STATIC_COLUMNS of one job (a single job or an array parent)."""
    command = spec.command if isinstance(spec.command, str) else json.dumps(list(spec.command))
    values = {
        "job_id": job_ids[spec.name], "run_id": run_id, "name": spec.name,
        "array_size": spec.array_size, "sequential": int(spec.sequential), "queue": spec.queue,
        "command": command, "image": spec.image, "vcpus": spec.vcpus, "memory": spec.memory,
        "gpus": spec.gpus, "timeout": spec.timeout, "retry_attempts": spec.retry.attempts,
        "environment": _json_map(spec.env), "parameters": _json_map(spec.parameters),
        "tags": _json_map(spec.tags), "depends_on": _json_list(depends_on(spec, job_ids)),
        "created_at": created_at,
    }  # fmt: skip
    return tuple(values[name] for name in STATIC_COLUMNS)


def _json_list(items: list[dict[str, str]]) -> str:
    return json.dumps(items) if items else "[]"


def _json_map(items: Mapping[str, str]) -> str:
    return json.dumps(dict(items), sort_keys=True) if items else "{}"


@dataclass(slots=True)
class Folded:
    """A batch of events as rows for the events, jobs and attempts tables."""

    events: list[tuple[object, ...]] = field(default_factory=list)
    jobs: dict[str, list[object]] = field(default_factory=dict)
    attempts: dict[tuple[str, int], list[object]] = field(default_factory=dict)
    rejected: list[tuple[JobEvent, str]] = field(default_factory=list)


def fold(
    batch: list[JobEvent],
    states: MutableMapping[str, JobState | None],
    parents: Collection[str],
) -> Folded:
    """Fold `batch` into rows, in order. `states` holds the last state of every known
    job (None: recorded but no event yet) and is updated with each applied change; a
    child not in it is created by its first event if its parent is known. `parents`
    are the ids of array parents."""
    out = Folded()
    jobs = out.jobs
    attempts = out.attempts
    append_event = out.events.append
    for ev in batch:
        job_id = ev.job_id
        new = ev.state
        previous = states.get(job_id)
        if job_id not in parents and (
            (previous, new) in JOB_MOVES or (previous is None and job_id in states)
        ):
            why = None  # the common case, decided without a call
        else:
            why = illegal(ev, states, parents)
        append_event(
            (ev.run_id, job_id, new._value_, ev.time, ev.reason, ev.attempt, ev.exit_code,
             why is None)
        )  # fmt: skip
        if why is not None:
            out.rejected.append((ev, why))
            continue
        states[job_id] = new
        row = jobs.get(job_id)
        if row is None:
            parent = job_id.rpartition(":")[0] if ev.index is not None else None
            row = _JOB_BLANK.copy()
            row[_J_ID] = job_id
            row[_J_RUN] = ev.run_id
            row[_J_NAME] = ev.name
            row[_J_PARENT] = parent
            row[_J_INDEX] = ev.index
            row[_J_CREATED] = ev.time
            jobs[job_id] = row
        row[_J_STATUS] = new._value_
        row[_J_REASON] = ev.reason
        if new is _RUNNING and row[_J_STARTED] is None:
            row[_J_STARTED] = ev.time
        if new in _DONE:
            row[_J_STOPPED] = ev.time
        if ev.attempt > row[_J_ATTEMPT]:  # type: ignore[operator]
            row[_J_ATTEMPT] = ev.attempt
        if ev.exit_code is not None:
            row[_J_EXIT] = ev.exit_code
        if ev.compute is not None:
            row[_J_COMPUTE] = ev.compute
        if ev.host is not None:
            row[_J_HOST] = ev.host
        if ev.log_path is not None:
            row[_J_LOG] = ev.log_path
        if ev.external_id is not None:
            row[_J_EXT] = ev.external_id
        if ev.fingerprint is not None:
            row[_J_FP] = ev.fingerprint
        if ev.attempt > 0 and job_id not in parents:
            _fold_attempt(attempts, ev, previous)
    return out


def _fold_attempt(
    attempts: dict[tuple[str, int], list[object]], ev: JobEvent, previous: JobState | None
) -> None:
    key = (ev.job_id, ev.attempt)
    row = attempts.get(key)
    if row is None:
        row = _ATTEMPT_BLANK.copy()
        row[_A_ID] = ev.job_id
        row[_A_N] = ev.attempt
        row[_A_RUN] = ev.run_id
        attempts[key] = row
    if ev.log_path is not None:
        row[_A_LOG] = ev.log_path
    if ev.compute is not None:
        row[_A_COMPUTE] = ev.compute
    if ev.host is not None:
        row[_A_HOST] = ev.host
    if ev.external_id is not None:
        row[_A_EXT] = ev.external_id
    if ev.state is _RUNNING:
        row[_A_STARTED] = ev.time
    elif previous in _ACTIVE:
        # The attempt ended: succeeded, failed, or failed and will be retried.
        row[_A_STOPPED] = ev.time
        row[_A_EXIT] = ev.exit_code
        row[_A_REASON] = ev.attempt_reason
        row[_A_STATUS_REASON] = ev.reason
        row[_A_PEAK] = ev.peak_memory


def illegal(
    ev: JobEvent, states: Mapping[str, JobState | None], parents: Collection[str]
) -> str | None:
    """Why `ev` may not be applied to its job, or None when it may."""
    job_id = ev.job_id
    if job_id not in states:
        if ev.index is not None and job_id.rpartition(":")[0] in parents:
            return None  # a child's first event creates its row
        return "unknown job"
    previous = states[job_id]
    moves = JOB_MOVES
    if job_id in parents:
        if ev.state not in ARRAY_STATES:
            return f"an array job has no state {ev.state.value}"
        moves = PARENT_MOVES
    if previous is None or (previous, ev.state) in moves:
        return None
    return f"no transition from {previous.value} to {ev.state.value}"
