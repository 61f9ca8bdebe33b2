"""The job store: schema versions, DescribeJobs shape, legality of state changes,
control requests, pruning, and survival of concurrent and killed writers."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proc_helpers import Spawner

import flowbatch
from flowbatch.lang.model import (
    DEFAULT_QUEUE,
    Dependency,
    DepKind,
    JobSpec,
    Pipeline,
    local_compute,
)
from flowbatch.run.state import Event, JobEvent, JobState, advance, can
from flowbatch.store.jobstore import Store, StoreError
from flowbatch.store.schema import MIGRATIONS, SCHEMA_VERSION

S = JobState
RUN = "20260101-120000-abcd"
IDS = {"prep": "id-prep", "align": "id-align", "thumbs": "id-thumbs", "steps": "id-steps"}
T0 = 1_767_268_800.0  # 2026-01-01 12:00:00 UTC
REPO = Path(flowbatch.__file__).resolve().parent.parent


def pipeline(path: str = "p.flow") -> Pipeline:
    jobs = {
        "prep": JobSpec(
            name="prep",
            command="echo Ref::who",
            parameters={"who": "world"},
            tags={"team": "x"},
            env={"A": "1"},
            vcpus=2,
            memory=512,
        ),
        "align": JobSpec(
            name="align", command=("bin/align", "x"), array_size=3, after=(Dependency(job="prep"),)
        ),
        "thumbs": JobSpec(
            name="thumbs",
            command="thumb",
            array_size=3,
            after=(Dependency(job="align", kind=DepKind.N_TO_N),),
        ),
        "steps": JobSpec(name="steps", command="step", array_size=4, sequential=True),
    }
    return Pipeline(
        path=path,
        params={"n": 3},
        computes={"local": local_compute(2, 4096)},
        queues={"default": DEFAULT_QUEUE},
        jobs=jobs,
    )


def ev(job_id: str, state: JobState, t: float, **kw: object) -> JobEvent:
    name = next((n for n, i in IDS.items() if job_id.split(":")[0] == i), "x")
    index = int(job_id.split(":")[1]) if ":" in job_id else None
    return JobEvent(run_id=RUN, job_id=job_id, name=name, index=index, state=state,
                    time=T0 + t, **kw)  # type: ignore[arg-type]  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / ".flowbatch") as s:
        s.begin_run(RUN, pipeline(), IDS, created_at=T0)
        yield s


def integrity(db: Path) -> str:
    with closing(sqlite3.connect(db)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


@pytest.fixture
def opened() -> Iterator[Callable[..., Store]]:
    """Store.open, with every store it opened closed at the end of the test."""
    stores: list[Store] = []

    def open_store(state_dir: Path, **kw: Any) -> Store:
        stores.append(Store.open(state_dir, **kw))
        return stores[-1]

    yield open_store
    for s in stores:
        s.close()


def run_single(store: Store, job_id: str = "id-prep") -> list[JobState]:
    """A job that fails once with 137, is retried and succeeds; returns its states."""
    log1, log2 = "/logs/prep/attempt-1", "/logs/prep/attempt-2"
    events = [
        ev(job_id, S.SUBMITTED, 0),
        ev(job_id, S.RUNNABLE, 1),
        ev(job_id, S.STARTING, 2, attempt=1, log_path=log1, compute="local", host="localhost"),
        ev(job_id, S.RUNNING, 3, attempt=1, external_id="4242"),
        ev(
            job_id,
            S.RUNNABLE,
            5,
            attempt=1,
            exit_code=137,
            attempt_reason="OutOfMemoryError",
            reason="Essential container in task exited",
            peak_memory=511,
        ),
        ev(job_id, S.STARTING, 6, attempt=2, log_path=log2, compute="local"),
        ev(job_id, S.RUNNING, 7, attempt=2),
        ev(job_id, S.SUCCEEDED, 9.5, attempt=2, exit_code=0),
    ]
    for e in events:
        store.emit(e)
    store.flush()
    return [e.state for e in events]


def test_new_database_is_wal_at_the_latest_schema(tmp_path: Path) -> None:
    Store.open(tmp_path / "sd").close()
    with closing(sqlite3.connect(tmp_path / "sd" / "jobs.db")) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        query = "SELECT name FROM sqlite_master WHERE type='table'"
        tables = {r[0] for r in conn.execute(query)}
    assert version == SCHEMA_VERSION == len(MIGRATIONS)
    assert mode == "wal"
    assert {"runs", "jobs", "attempts", "events", "requests"} <= tables


def test_an_unversioned_database_is_migrated_and_reopening_keeps_data(tmp_path: Path) -> None:
    (tmp_path / "sd").mkdir()
    sqlite3.connect(tmp_path / "sd" / "jobs.db").close()  # an empty v0 file
    s = Store.open(tmp_path / "sd")
    s.begin_run(RUN, pipeline(), IDS, created_at=T0)
    s.close()
    with Store.open(tmp_path / "sd") as again:
        assert again.latest_run() == RUN
        assert again.describe("id-prep")["jobName"] == "prep"


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    Store.open(tmp_path / "sd").close()
    db = tmp_path / "sd" / "jobs.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError) as err:
        Store.open(tmp_path / "sd")
    assert str(err.value) == (
        f"job database `{db}` is schema v{SCHEMA_VERSION + 1};"
        f" this flowbatch reads up to v{SCHEMA_VERSION}"
    )


def test_open_without_create_refuses_a_missing_database(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="nothing has run here yet"):
        Store.open(tmp_path / "none", create=False)
    assert not (tmp_path / "none").exists()


def test_describe_is_shaped_like_describe_jobs(store: Store) -> None:
    run_single(store)
    job = store.describe("id-prep")
    assert job["jobId"] == "id-prep" and job["jobName"] == "prep" and job["runId"] == RUN
    assert job["status"] == "SUCCEEDED"
    assert job["createdAt"] == round(T0 * 1000)
    assert job["startedAt"] == round((T0 + 3) * 1000)  # the first attempt's RUNNING
    assert job["stoppedAt"] == round((T0 + 9.5) * 1000)
    assert job["jobQueue"] == "default" and job["computeEnvironment"] == "local"
    assert job["parameters"] == {"who": "world"} and job["tags"] == {"team": "x"}
    assert job["dependsOn"] == []
    container = job["container"]
    assert container["command"] == ["/bin/sh", "-c", "echo world"]  # as it ran
    assert container["vcpus"] == 2 and container["memory"] == 512
    assert container["environment"] == [{"name": "A", "value": "1"}]
    assert container["exitCode"] == 0
    assert container["logStreamName"] == "/logs/prep/attempt-2"
    first, second = job["attempts"]
    assert first["container"] == {
        "exitCode": 137,
        "reason": "OutOfMemoryError",
        "logStreamName": "/logs/prep/attempt-1",
        "peakMemory": 511,
    }
    assert second["container"]["peakMemory"] is None  # not measured: shown as unknown
    assert first["startedAt"] == round((T0 + 3) * 1000)
    assert first["stoppedAt"] == round((T0 + 5) * 1000)
    assert first["statusReason"] == "Essential container in task exited"
    assert second["container"]["exitCode"] == 0
    assert second["stoppedAt"] == round((T0 + 9.5) * 1000)
    assert "arrayProperties" not in job
    json.dumps(job)  # every value is plain JSON


def test_a_job_being_retried_shows_no_exit_code_until_its_attempt_ends(store: Store) -> None:
    for e in (
        ev("id-prep", S.RUNNABLE, 0),
        ev("id-prep", S.STARTING, 1, attempt=1),
        ev("id-prep", S.RUNNING, 1, attempt=1),
        ev("id-prep", S.RUNNABLE, 2, attempt=1, exit_code=137),
        ev("id-prep", S.STARTING, 3, attempt=2),
    ):
        store.emit(e)
    store.flush()
    assert store.describe("id-prep")["container"]["exitCode"] is None
    assert store.describe("id-prep")["attempts"][0]["container"]["exitCode"] == 137
    assert store.jobs(name="prep")[0]["container"]["exitCode"] is None
    store.emit(ev("id-prep", S.RUNNING, 4, attempt=2))
    store.emit(ev("id-prep", S.FAILED, 5, attempt=2, exit_code=2))
    store.flush()
    assert store.describe("id-prep")["container"]["exitCode"] == 2
    assert store.jobs(name="prep")[0]["container"]["exitCode"] == 2


def test_a_job_with_no_event_yet_reads_submitted(store: Store) -> None:
    assert store.describe("id-prep")["status"] == "SUBMITTED"
    assert store.describe("id-align")["dependsOn"] == [{"jobId": "id-prep"}]
    assert store.describe("id-align")["container"]["command"] == ["bin/align", "x"]


def test_status_summary_counts_children_per_state(store: Store) -> None:
    store.emit(ev("id-align", S.SUBMITTED, 0))
    store.emit(ev("id-align", S.PENDING, 0))
    store.emit(ev("id-align:0", S.RUNNABLE, 1))
    store.emit(ev("id-align:0", S.STARTING, 2, attempt=1))
    store.emit(ev("id-align:0", S.RUNNING, 3, attempt=1))
    store.emit(ev("id-align:1", S.RUNNABLE, 1))
    store.flush()
    summary = store.describe("id-align")["arrayProperties"]["statusSummary"]
    # child 2 has no row yet: it counts as PENDING, as AWS shows unstarted children
    assert summary == {"SUBMITTED": 0, "PENDING": 1, "RUNNABLE": 1, "STARTING": 0,
                       "RUNNING": 1, "SUCCEEDED": 0, "FAILED": 0}  # fmt: skip
    assert store.describe("id-align")["arrayProperties"]["size"] == 3


def test_children_of_a_failed_array_that_never_ran_count_as_failed(store: Store) -> None:
    store.emit(ev("id-align", S.SUBMITTED, 0))
    store.emit(ev("id-align", S.PENDING, 0))
    store.emit(ev("id-align", S.FAILED, 1, reason="Dependent Job failed: prep"))
    store.flush()
    job = store.describe("id-align")
    assert job["arrayProperties"]["statusSummary"]["FAILED"] == 3
    assert job["statusReason"] == "Dependent Job failed: prep"


def test_a_child_reads_its_parents_facts_and_its_own_dependencies(store: Store) -> None:
    store.emit(ev("id-thumbs", S.SUBMITTED, 0))
    store.emit(ev("id-thumbs:2", S.PENDING, 1))
    store.emit(ev("id-steps", S.SUBMITTED, 0))
    store.emit(ev("id-steps:0", S.RUNNABLE, 1))
    store.emit(ev("id-steps:3", S.PENDING, 1))
    store.flush()
    child = store.describe("id-thumbs:2")
    assert child["arrayProperties"] == {"index": 2}
    assert child["dependsOn"] == [{"jobId": "id-align:2"}]
    assert child["container"]["command"] == ["/bin/sh", "-c", "thumb"]
    assert child["jobQueue"] == "default"
    assert store.describe("id-thumbs")["dependsOn"] == [{"jobId": "id-align", "type": "N_TO_N"}]
    assert store.describe("id-steps")["dependsOn"] == [{"type": "SEQUENTIAL"}]
    assert store.describe("id-steps:3")["dependsOn"] == [{"jobId": "id-steps:2"}]
    assert store.describe("id-steps:0")["dependsOn"] == []


def test_events_are_recorded_in_order(store: Store) -> None:
    states = run_single(store)
    recorded = store.events("id-prep")
    assert [e["status"] for e in recorded] == [s.value for s in states]
    assert all(e["applied"] for e in recorded)
    times = [e["time"] for e in recorded]
    assert times == sorted(times)


def test_an_illegal_change_is_recorded_but_not_applied(store: Store) -> None:
    store.emit(ev("id-prep", S.SUBMITTED, 0))
    store.emit(ev("id-prep", S.RUNNABLE, 1))
    store.emit(ev("id-prep", S.SUCCEEDED, 2))  # RUNNABLE -> SUCCEEDED has no edge
    store.emit(ev("id-align", S.RUNNING, 2))  # not a state of an array parent
    store.emit(ev("id-thumbs", S.SUBMITTED, 2))
    store.emit(ev("id-thumbs", S.SUCCEEDED, 3))  # a parent succeeds only from PENDING
    store.emit(ev("nobody", S.RUNNING, 2))
    store.flush()
    assert store.describe("id-prep")["status"] == "RUNNABLE"
    assert [e["applied"] for e in store.events("id-prep")] == [True, True, False]
    reasons = [why for _, why in store.rejected]
    assert reasons == [
        "no transition from RUNNABLE to SUCCEEDED",
        "an array job has no state RUNNING",
        "no transition from SUBMITTED to SUCCEEDED",
        "unknown job",
    ]


def test_a_second_store_continues_from_the_recorded_states(
    store: Store, tmp_path: Path, opened: Callable[..., Store]
) -> None:
    store.emit(ev("id-prep", S.SUBMITTED, 0))
    store.emit(ev("id-align", S.SUBMITTED, 0))
    store.flush()
    other = opened(tmp_path / ".flowbatch")
    other.emit(ev("id-prep", S.SUBMITTED, 1))  # already SUBMITTED: no edge
    other.emit(ev("id-prep", S.PENDING, 2))
    other.emit(ev("id-align:1", S.PENDING, 2))  # its parent is known from the database
    other.flush()
    assert [why for _, why in other.rejected] == ["no transition from SUBMITTED to SUBMITTED"]
    assert store.describe("id-align:1")["status"] == "PENDING"


def test_jobs_lists_summaries_with_filters(store: Store) -> None:
    run_single(store)
    store.emit(ev("id-align", S.SUBMITTED, 0))
    store.emit(ev("id-align:1", S.RUNNABLE, 1))
    store.emit(ev("id-align:0", S.RUNNABLE, 1))
    store.flush()
    names = [j["jobName"] for j in store.jobs(run_id=RUN)]
    assert names == ["prep", "align", "thumbs", "steps"]
    done = store.jobs(status="succeeded")
    assert [(j["jobId"], j["attempts"], j["container"]["exitCode"]) for j in done] == [
        ("id-prep", 2, 0)
    ]
    assert [j["jobId"] for j in store.jobs(name="align")] == ["id-align"]
    assert store.jobs(queue="nope") == []
    children = store.jobs(parent="id-align")
    assert [c["arrayProperties"]["index"] for c in children] == [0, 1]
    assert all(c["jobQueue"] == "default" for c in children)


def test_runs_newest_first_with_counts(tmp_path: Path, opened: Callable[..., Store]) -> None:
    s = opened(tmp_path)
    s.begin_run("r1", pipeline("a.flow"), {n: f"r1-{n}" for n in IDS}, created_at=T0)
    s.begin_run("r2", pipeline("b.flow"), {n: f"r2-{n}" for n in IDS}, created_at=T0 + 60)
    s.emit(JobEvent(run_id="r1", job_id="r1-prep", name="prep", index=None,
                    state=S.SUBMITTED, time=T0))  # fmt: skip
    s.end_run("r1", "FAILED", ended_at=T0 + 30)
    runs = s.runs()
    assert [r["runId"] for r in runs] == ["r2", "r1"]
    assert runs[1]["status"] == "FAILED" and runs[1]["endedAt"] == round((T0 + 30) * 1000)
    assert runs[1]["counts"] == {"SUBMITTED": 4}
    assert runs[0]["status"] == "RUNNING"  # never ended, and its writer (us) is alive
    assert s.latest_run("a.flow") == "r1" and s.latest_run() == "r2"
    assert s.latest_run("c.flow") is None


def test_prune_removes_runs_older_than_the_limit(
    tmp_path: Path, opened: Callable[..., Store]
) -> None:
    s = opened(tmp_path)
    now = time.time()
    s.begin_run("old", pipeline(), {n: f"old-{n}" for n in IDS}, created_at=now - 9 * 86400)
    s.emit(JobEvent(run_id="old", job_id="old-prep", name="prep", index=None,
                    state=S.SUBMITTED, time=now - 9 * 86400))  # fmt: skip
    s.end_run("old", "SUCCEEDED", ended_at=now - 8 * 86400)
    s.begin_run("new", pipeline(), {n: f"new-{n}" for n in IDS}, created_at=now - 86400)
    s.request("old-prep", "cancel", "x")
    assert s.prune(older_than_days=7) == 1
    assert [r["runId"] for r in s.runs()] == ["new"]
    with pytest.raises(StoreError):
        s.describe("old-prep")
    assert s.events("old-prep") == []
    # A run that has not ended is kept whatever its age: its runner (this process) lives.
    assert s.prune(older_than_days=0.5) == 0
    s.end_run("new", "SUCCEEDED", ended_at=now - 86400)
    assert s.prune(older_than_days=0.5) == 1  # ended a day ago: past a shorter limit
    assert s.runs() == []


def test_take_requests_returns_each_request_once(store: Store) -> None:
    store.request("id-prep", "cancel", "no longer needed")
    store.request("id-align", "terminate", "wrong input")
    assert store.take_requests(RUN) == [
        ("id-prep", "cancel", "no longer needed"),
        ("id-align", "terminate", "wrong input"),
    ]
    assert store.take_requests(RUN) == []
    assert store.take_requests("another-run") == []


def test_a_request_for_an_unknown_job_names_a_near_id(store: Store) -> None:
    with pytest.raises(StoreError) as err:
        store.request("id-pre", "cancel", "x")
    assert "no job with id `id-pre`" in str(err.value)
    assert "did you mean `id-prep`?" in str(err.value)
    assert store.suggest("align") == "id-align"  # a job name in the latest run
    assert store.suggest("zzzzzz") is None


def test_a_flush_that_cannot_write_keeps_its_events_for_the_next(
    tmp_path: Path, opened: Callable[..., Store]
) -> None:
    s = opened(tmp_path, busy_timeout=0.01)
    s.begin_run(RUN, pipeline(), IDS, created_at=T0)
    s.emit(ev("id-prep", S.SUBMITTED, 0))
    s.emit(ev("id-prep", S.RUNNABLE, 1))
    with closing(sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)) as blocker:
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(StoreError, match=r"cannot write to .*database is locked"):
            s.flush()
        s.emit(ev("id-prep", S.STARTING, 2, attempt=1))
        blocker.execute("ROLLBACK")
    s.flush()
    assert [e["status"] for e in s.events("id-prep")] == ["SUBMITTED", "RUNNABLE", "STARTING"]
    assert s.describe("id-prep")["status"] == "STARTING" and s.rejected == []


def test_a_child_ending_in_a_flush_that_cannot_write_ends_its_attempt_at_the_next(
    tmp_path: Path, opened: Callable[..., Store]
) -> None:
    # The state cache must give back what the unwritten batch taught it: seen RUNNING
    # still, the child's SUCCEEDED ends its attempt (stoppedAt, exit code) when written.
    s = opened(tmp_path, busy_timeout=0.01)
    s.begin_run(RUN, pipeline(), IDS, created_at=T0)
    s.emit(ev("id-steps", S.SUBMITTED, 0))
    s.emit(ev("id-steps", S.PENDING, 0))
    for state in (S.SUBMITTED, S.RUNNABLE):
        s.emit(ev("id-steps:0", state, 0))
    s.emit(ev("id-steps:0", S.STARTING, 1, attempt=1))
    s.emit(ev("id-steps:0", S.RUNNING, 2, attempt=1))
    s.flush()
    s.emit(ev("id-steps:0", S.SUCCEEDED, 3, attempt=1, exit_code=0))
    s.emit(ev("id-steps:1", S.SUBMITTED, 3))
    with closing(sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)) as blocker:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError):
            s.flush()
        blocker.execute("ROLLBACK")
    s.flush()
    child = s.describe("id-steps:0")
    assert (child["status"], child["stoppedAt"]) == ("SUCCEEDED", 3000 + T0 * 1000)
    assert child["attempts"][0]["stoppedAt"] == 3000 + T0 * 1000
    assert child["attempts"][0]["container"]["exitCode"] == 0
    assert s.describe("id-steps:1")["status"] == "SUBMITTED" and s.rejected == []


def test_take_requests_sees_requests_made_by_another_store(
    store: Store, tmp_path: Path, opened: Callable[..., Store]
) -> None:
    assert store.take_requests(RUN) == []
    opened(tmp_path / ".flowbatch").request("id-steps", "terminate", "by user")
    assert store.take_requests(RUN) == [("id-steps", "terminate", "by user")]


_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    sys.path.insert(0, {tests!r})
    from test_store import pipeline, IDS
    from flowbatch.run.state import JobEvent, JobState as S
    from flowbatch.store.jobstore import Store

    run, rounds, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = Store.open(Path(sys.argv[4]))
    ids = {{n: run + "-" + n for n in IDS}}
    store.begin_run(run, pipeline(), ids, created_at=time.time())
    print("ready", flush=True)
    sys.stdin.readline()  # wait for "go" so that writers overlap
    parent = ids["align"]
    store.emit(JobEvent(run_id=run, job_id=parent, name="align", index=None,
                        state=S.SUBMITTED, time=1.0))
    store.flush()
    for r in range(rounds):
        for i in range(size):
            store.emit(JobEvent(run_id=run, job_id=f"{{parent}}:{{r * size + i}}", name="align",
                                index=r * size + i, state=S.PENDING, time=2.0))
        store.flush()
        if r == 0:
            print("flushed", flush=True)
    print("done", flush=True)
    """
)


def _writer(
    spawn: Spawner, tmp_path: Path, run: str, rounds: int, size: int
) -> subprocess.Popen[str]:
    script = _WRITER.format(repo=str(REPO), tests=str(Path(__file__).parent))
    return spawn(
        [sys.executable, "-c", script, run, str(rounds), str(size), str(tmp_path / "sd")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _expect(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == line


@pytest.mark.slow
def test_two_processes_write_at_once(tmp_path: Path, spawn: Spawner) -> None:
    Store.open(tmp_path / "sd").close()
    procs = [_writer(spawn, tmp_path, run, rounds=40, size=50) for run in ("ra", "rb")]
    for p in procs:
        _expect(p, "ready")
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        assert out.split() == ["flushed", "done"]
    s = Store.open(tmp_path / "sd")
    for run in ("ra", "rb"):
        assert len(s.jobs(parent=f"{run}-align")) == 40 * 50
        # The writers exited without ending their runs: opening the store found them gone.
        found = next(r for r in s.runs() if r["runId"] == run)
        assert found["status"] == "FAILED" and found["statusReason"].startswith("Runner lost")
    s.close()
    assert integrity(tmp_path / "sd" / "jobs.db") == "ok"


@pytest.mark.slow
def test_a_writer_killed_mid_flush_leaves_a_readable_store(tmp_path: Path, spawn: Spawner) -> None:
    Store.open(tmp_path / "sd").close()
    proc = _writer(spawn, tmp_path, "rk", rounds=100_000, size=2000)
    _expect(proc, "ready")
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    _expect(proc, "flushed")  # at least one flush committed; it flushes without pause
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    s = Store.open(tmp_path / "sd")
    children = s.jobs(parent="rk-align")
    # Whole flushes only: a torn flush would leave a partial batch of 2000.
    assert len(children) >= 2000 and len(children) % 2000 == 0
    for job in s.jobs(run_id="rk") + children:
        found = s.describe(job["jobId"])
        assert found["status"] == "FAILED" and found["statusReason"].startswith("Runner lost")
    assert s.runs()[0]["status"] == "FAILED"
    s.close()
    assert integrity(tmp_path / "sd" / "jobs.db") == "ok"


@pytest.mark.slow
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(list(JobState)), st.booleans(), st.booleans()), max_size=25
    )
)
def test_only_changes_the_transition_table_allows_are_applied(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[JobState, bool, bool]]
) -> None:
    """Whatever the states reported and wherever flushes (and a new writer) fall, the
    job ends in the state reached by applying exactly the legal changes, in order."""
    sd = tmp_path_factory.mktemp("prop")
    writer = Store.open(sd)
    writer.begin_run(RUN, pipeline(), IDS, created_at=T0)
    expected: JobState | None = None
    applied = []
    for n, (new, flush, reopen) in enumerate(steps):
        writer.emit(ev("id-prep", new, n))
        ok = expected is None or any(
            can(expected, e) and advance(expected, e) is new for e in Event
        )
        applied.append(ok)
        if ok:
            expected = new
        if flush:
            writer.flush()
        if reopen:
            writer.flush()
            writer.close()
            writer = Store.open(sd)
    writer.flush()
    assert writer.describe("id-prep")["status"] == (expected or JobState.SUBMITTED).value
    assert [e["applied"] for e in writer.events("id-prep")] == applied
    writer.close()
