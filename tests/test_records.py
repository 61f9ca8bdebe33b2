"""Typed records: the store reads jobs, attempts and runs into frozen records with enum
states, the JSON the CLI prints is one rendering of them, and the jobs table's folded
row layout comes from one list of columns."""

from __future__ import annotations

import dataclasses
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from test_store import RUN, T0, ev, run_single
from test_store import store as store

from flowbatch.run.records import (
    AttemptRecord,
    JobRecord,
    RunStatus,
    describe_json,
    run_json,
    summary_json,
)
from flowbatch.run.state import JobState
from flowbatch.store import rows
from flowbatch.store.jobstore import Store

S = JobState


def test_a_described_job_is_a_typed_record_and_its_json_is_describe(store: Store) -> None:
    run_single(store)
    job = store.job("id-prep")
    assert isinstance(job, JobRecord) and job.status is S.SUCCEEDED
    assert (job.label, job.attempts, job.exit_code, job.queue) == ("prep", 2, 0, "default")
    assert job.duration == pytest.approx(6.5)
    assert job.detail is not None
    first, second = job.detail.attempts
    assert isinstance(first, AttemptRecord)
    assert (first.exit_code, first.reason, first.peak_memory) == (137, "OutOfMemoryError", 511)
    assert second.peak_memory is None
    assert describe_json(job) == store.describe("id-prep")
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.status = S.FAILED  # type: ignore[misc]


def test_listed_jobs_are_records_whose_json_is_the_listing(store: Store) -> None:
    run_single(store)
    store.emit(ev("id-align", S.PENDING, 1))
    store.emit(ev("id-align:0", S.RUNNABLE, 2))
    store.flush()
    listed = store.job_records()
    assert [summary_json(j) for j in listed] == store.jobs()
    align = next(j for j in listed if j.name == "align")
    assert align.detail is None and align.array_size == 3
    # Children the runner has not created yet count as PENDING, keyed by JobState.
    assert align.status_summary == {**dict.fromkeys(S, 0), S.PENDING: 2, S.RUNNABLE: 1}
    (child,) = store.job_records(parent="id-align", status=S.RUNNABLE)
    assert (child.label, child.status) == ("align[0]", S.RUNNABLE)


def test_a_run_is_a_record_with_a_run_status(store: Store) -> None:
    run_single(store)
    (running,) = store.run_records()
    assert running.status is RunStatus.RUNNING  # this process is its runner
    assert running.counts == {S.SUCCEEDED: 1, S.SUBMITTED: 3}
    store.end_run(RUN, RunStatus.INTERRUPTED, ended_at=T0 + 20)
    (ended,) = store.run_records()
    assert ended.status is RunStatus.INTERRUPTED and ended.ended_at == round((T0 + 20) * 1000)
    assert [run_json(ended)] == store.runs()
    assert run_json(ended)["counts"] == {"SUBMITTED": 3, "SUCCEEDED": 1}  # sorted by name
    with pytest.raises(ValueError, match="unknown run status"):
        store.end_run(RUN, RunStatus.UNKNOWN, ended_at=T0 + 30)  # not how a run ends


def test_the_row_layout_is_one_list_and_matches_the_tables(store: Store) -> None:
    with closing(sqlite3.connect(store.path)) as conn:
        for table, columns, statement in (
            ("jobs", rows.JOB_COLUMNS, rows.UPSERT_JOB),
            ("attempts", rows.ATTEMPT_COLUMNS, rows.UPSERT_ATTEMPT),
        ):
            names = [c.name for c in columns]
            assert len(set(names)) == len(names)
            assert set(names) <= {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            assert f"({', '.join(names)})" in statement
            assert statement.count("?") == len(names)


def test_a_folded_row_holds_each_fact_in_its_named_column() -> None:
    event = ev("id-prep", S.RUNNING, 3, attempt=1, log_path="/l", compute="c", host="h",
               external_id="42", fingerprint="fp", reason="why")  # fmt: skip
    folded = rows.fold([event], {"id-prep": S.STARTING}, ())
    (job,) = folded.jobs.values()
    row = dict(zip([c.name for c in rows.JOB_COLUMNS], job, strict=True))
    assert row == {
        "job_id": "id-prep", "run_id": RUN, "name": "prep", "parent_id": None,
        "array_index": None, "created_at": T0 + 3, "status": "RUNNING", "status_reason": "why",
        "started_at": T0 + 3, "stopped_at": None, "attempt": 1, "exit_code": None,
        "compute": "c", "host": "h", "log_path": "/l", "external_id": "42", "fingerprint": "fp",
    }  # fmt: skip
    (attempt,) = folded.attempts.values()
    arow = dict(zip([c.name for c in rows.ATTEMPT_COLUMNS], attempt, strict=True))
    assert arow == {
        "job_id": "id-prep", "attempt": 1, "run_id": RUN, "started_at": T0 + 3,
        "stopped_at": None, "exit_code": None, "reason": None, "status_reason": None,
        "log_path": "/l", "compute": "c", "host": "h", "external_id": "42", "peak_memory": None,
    }  # fmt: skip


@pytest.mark.parametrize("recorded", ["prep.attempt-1", "prep/attempt-1"])
def test_a_moved_state_directory_is_followed_in_the_records(tmp_path: Path, recorded: str) -> None:
    # Store.job rewrites the recorded log paths to where they are now, in a new record
    # (the old one is frozen), for the job and for each attempt: a stem with its files
    # beside it, or the directory per attempt of an older store.
    from test_store import IDS, pipeline

    old = tmp_path / "old" / ".flowbatch"
    with Store.open(old) as s:
        s.begin_run(RUN, pipeline(), IDS, created_at=T0)
        log = old / "logs" / RUN / recorded
        s.emit(ev("id-prep", S.RUNNABLE, 1))
        s.emit(ev("id-prep", S.STARTING, 2, attempt=1, log_path=str(log)))
        s.flush()
    if recorded.endswith("/attempt-1"):
        log.mkdir(parents=True)
    else:
        log.parent.mkdir(parents=True)
        Path(f"{log}.stderr").write_text("")  # stdout is not there yet: stderr will do
    new = tmp_path / "new"
    old.parent.rename(new)
    with Store.open(new / ".flowbatch") as s:
        job = s.job("id-prep")
    assert job.detail is not None
    moved = str(new / ".flowbatch" / "logs" / RUN / recorded)
    assert job.detail.log_path == moved and job.detail.attempts[0].log_path == moved
