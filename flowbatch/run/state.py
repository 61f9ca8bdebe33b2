"""Job states and the one table of transitions between them (AWS Batch's lifecycle).

Every state change anywhere in flowbatch goes through `advance()`; nothing assigns a
state directly. Array parents have their own smaller lifecycle (`ARRAY_STATES`) and
report counts of their children per state.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Final


class JobState(enum.Enum):
    SUBMITTED = "SUBMITTED"
    PENDING = "PENDING"
    RUNNABLE = "RUNNABLE"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    # Enum's own hashes the member's name, in Python, on every dict and set lookup:
    # some fifty a job. A member is its only instance, so its identity is its hash.
    __hash__ = object.__hash__

    @property
    def done(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED)


class Event(enum.Enum):
    HAS_DEPS = "has-deps"
    NO_DEPS = "no-deps"
    DEPS_SUCCEEDED = "deps-succeeded"
    DEP_FAILED = "dep-failed"
    PLACED = "placed"  # the scheduler gave it room on a compute environment
    STARTED = "started"  # the process (or remote job) is running
    EXITED_OK = "exited-ok"
    EXITED_RETRY = "exited-retry"  # the attempt failed and the retry strategy says retry
    EXITED_FINAL = "exited-final"  # the attempt failed and the job is done
    CANCEL = "cancel"  # AWS CancelJob: only jobs not yet STARTING
    TERMINATE = "terminate"  # AWS TerminateJob: any job not yet done
    REUSED = "reused"  # `run --resume`: it succeeded in an earlier run and nothing changed

    __hash__ = object.__hash__  # (see JobState's)


S = JobState
E = Event

TRANSITIONS: Final[Mapping[tuple[JobState, Event], JobState]] = MappingProxyType(
    {
        (S.SUBMITTED, E.HAS_DEPS): S.PENDING,
        (S.SUBMITTED, E.NO_DEPS): S.RUNNABLE,
        (S.PENDING, E.DEPS_SUCCEEDED): S.RUNNABLE,
        (S.PENDING, E.DEP_FAILED): S.FAILED,
        (S.RUNNABLE, E.PLACED): S.STARTING,
        (S.STARTING, E.STARTED): S.RUNNING,
        # A job can fail before its process exists (spawn error, host lost while starting).
        (S.STARTING, E.EXITED_RETRY): S.RUNNABLE,
        (S.STARTING, E.EXITED_FINAL): S.FAILED,
        (S.RUNNING, E.EXITED_OK): S.SUCCEEDED,
        (S.RUNNING, E.EXITED_RETRY): S.RUNNABLE,
        (S.RUNNING, E.EXITED_FINAL): S.FAILED,
        (S.SUBMITTED, E.CANCEL): S.FAILED,
        (S.PENDING, E.CANCEL): S.FAILED,
        (S.RUNNABLE, E.CANCEL): S.FAILED,
        (S.SUBMITTED, E.TERMINATE): S.FAILED,
        (S.PENDING, E.TERMINATE): S.FAILED,
        (S.RUNNABLE, E.TERMINATE): S.FAILED,
        (S.STARTING, E.TERMINATE): S.FAILED,
        (S.RUNNING, E.TERMINATE): S.FAILED,
        (S.SUBMITTED, E.REUSED): S.SUCCEEDED,
    }
)

# The status reason of a job that never ran because something it waits for failed
# starts with this, then names the root cause (AWS says "Dependent job failed").
DEPENDENCY_FAILED: Final = "Dependency failed"

# Array parents: SUBMITTED -> PENDING (children exist) -> SUCCEEDED | FAILED.
ARRAY_STATES: Final = (S.SUBMITTED, S.PENDING, S.SUCCEEDED, S.FAILED)

ARRAY_TRANSITIONS: Final[Mapping[tuple[JobState, Event], JobState]] = MappingProxyType(
    {
        (S.SUBMITTED, E.HAS_DEPS): S.PENDING,
        (S.PENDING, E.EXITED_OK): S.SUCCEEDED,  # every child succeeded
        (S.PENDING, E.EXITED_FINAL): S.FAILED,  # every child is done, one or more failed
        (S.PENDING, E.DEP_FAILED): S.FAILED,
        (S.PENDING, E.CANCEL): S.FAILED,
        (S.PENDING, E.TERMINATE): S.FAILED,
    }
)


class IllegalTransition(Exception):
    def __init__(self, state: JobState, event: Event) -> None:
        super().__init__(f"no transition from {state.value} on {event.value}")
        self.state = state
        self.event = event


def advance(state: JobState, event: Event) -> JobState:
    """The state after `event`; raises IllegalTransition when the table has no such edge."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


def advance_parent(state: JobState, event: Event) -> JobState:
    """An array parent's state after `event` (`ARRAY_TRANSITIONS`); raises IllegalTransition."""
    try:
        return ARRAY_TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


def can(state: JobState, event: Event) -> bool:
    return (state, event) in TRANSITIONS


@dataclass(frozen=True, slots=True, kw_only=True)
class JobEvent:
    """One state change of one job or array child, as the runner reports it to sinks.

    `job_id` is the store's id: a single job's or array parent's id, and for a child
    `"{parent_id}:{index}"` as AWS writes it. `time` is epoch seconds.
    """

    run_id: str
    job_id: str
    name: str  # the job's name in the pipeline
    index: int | None  # the array index of a child, else None
    state: JobState
    time: float
    reason: str = ""  # AWS statusReason
    attempt: int = 0  # attempt number from 1; 0 before the first attempt
    exit_code: int | None = None
    attempt_reason: str = ""  # AWS attempts[].statusReason / container.reason
    log_path: str | None = None  # the stem of this attempt's logs (executors.logfiles)
    compute: str | None = None
    host: str | None = None
    external_id: str | None = None  # pid, SLURM job id, container id
    peak_memory: int | None = None  # MiB, the attempt's largest resident set, where known
    fingerprint: str | None = None  # what a success was made of (`flowbatch.run.fingerprint`)


# The slots' own setters, in field order: they write a slot as the dataclass's frozen
# __init__ does through object.__setattr__, without looking the name up each time.
_SET = tuple(getattr(JobEvent, f.name).__set__ for f in fields(JobEvent))
_new_event = object.__new__


def job_event(
    *,
    run_id: str,
    job_id: str,
    name: str,
    index: int | None,
    state: JobState,
    time: float,
    reason: str,
    attempt: int,
    exit_code: int | None,
    attempt_reason: str,
    log_path: str | None,
    compute: str | None,
    host: str | None,
    external_id: str | None,
    peak_memory: int | None,
    fingerprint: str | None,
) -> JobEvent:
    """`JobEvent(...)` with every field given: the same frozen event for two thirds of
    the cost, for the runner, which makes five a job."""
    event: JobEvent = _new_event(JobEvent)
    s = _SET
    s[0](event, run_id)
    s[1](event, job_id)
    s[2](event, name)
    s[3](event, index)
    s[4](event, state)
    s[5](event, time)
    s[6](event, reason)
    s[7](event, attempt)
    s[8](event, exit_code)
    s[9](event, attempt_reason)
    s[10](event, log_path)
    s[11](event, compute)
    s[12](event, host)
    s[13](event, external_id)
    s[14](event, peak_memory)
    s[15](event, fingerprint)
    return event
