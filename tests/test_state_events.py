"""`state.job_event`, the runner's quick JobEvent: the same frozen event as the
dataclass's own constructor makes, every field where it belongs."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from flowbatch.run.state import JobEvent, JobState, job_event


def test_job_event_is_the_dataclass_event_field_for_field() -> None:
    names = [f.name for f in dataclasses.fields(JobEvent)]
    assert list(inspect.signature(job_event).parameters) == names
    # A distinct value for every field, so that a value set in a neighbour's slot shows.
    distinct = ["r", "id", "j", 3, JobState.RUNNING, 1.5, "why", 2, 7, "oom", "/logs/j.3", "ce"]
    values = dict(zip(names, [*distinct, "h", "9@1", 55, "fp"], strict=True))
    quick = job_event(**values)  # type: ignore[arg-type]
    assert type(quick) is JobEvent
    assert dataclasses.asdict(quick) == dataclasses.asdict(JobEvent(**values))  # type: ignore[arg-type]
    assert quick == JobEvent(**values) and hash(quick) == hash(JobEvent(**values))  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        quick.state = JobState.FAILED  # type: ignore[misc]
