"""Array children the runner has not created yet: on AWS every child exists from
submission, so `describe`, `cancel` and `terminate` of `PARENT:i` work before child i
has a row in the store (regression: they said "no job with id")."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from proc_helpers import Spawner
from test_store import IDS, RUN, T0, ev, pipeline

from flowbatch.cli import app
from flowbatch.run.state import JobState
from flowbatch.store.jobstore import Store, StoreError

S = JobState


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / ".flowbatch") as s:
        s.begin_run(RUN, pipeline(), IDS, created_at=T0)
        # align (3 children) is being released: child 0 runs, child 1 waits, 2 has no row
        for e in (
            ev("id-align", S.SUBMITTED, 0),
            ev("id-align", S.PENDING, 0),
            ev("id-align:0", S.RUNNABLE, 1),
            ev("id-align:0", S.STARTING, 2, attempt=1),
            ev("id-align:0", S.RUNNING, 3, attempt=1),
            ev("id-align:1", S.RUNNABLE, 1),
        ):
            s.emit(e)
        s.flush()
        yield s


def test_a_child_not_created_yet_is_described_from_its_parent(store: Store) -> None:
    assert all(j["arrayProperties"].get("index") != 2 for j in store.jobs(parent="id-align"))
    parent = store.describe("id-align")
    child = store.describe("id-align:2")
    assert child["jobId"] == "id-align:2" and child["jobName"] == "align"
    assert child["runId"] == RUN and child["arrayProperties"] == {"index": 2}
    assert child["status"] == "PENDING" and child["statusReason"] == ""
    assert child["attempts"] == [] and child["startedAt"] is None
    assert child["createdAt"] == parent["createdAt"]  # submitted with its parent
    for fact in ("jobQueue", "parameters", "tags", "retryStrategy"):
        assert child[fact] == parent[fact], fact
    for fact in ("command", "image", "vcpus", "memory", "resourceRequirements"):
        assert child["container"][fact] == parent["container"][fact], fact
    assert child["container"]["command"] == ["bin/align", "x"]
    assert child["container"]["exitCode"] is None


def test_a_child_not_created_yet_has_its_own_dependencies(store: Store) -> None:
    # thumbs and steps have no rows for any child at all
    assert store.describe("id-thumbs:1")["dependsOn"] == [{"jobId": "id-align:1"}]
    assert store.describe("id-steps:3")["dependsOn"] == [{"jobId": "id-steps:2"}]
    assert store.describe("id-steps:0")["dependsOn"] == []


def test_a_created_child_is_still_described_from_its_row(store: Store) -> None:
    running = store.describe("id-align:0")
    assert running["status"] == "RUNNING" and len(running["attempts"]) == 1
    assert store.describe("id-align:1")["status"] == "RUNNABLE"


def _described_statuses(store: Store, parent: str, size: int) -> Counter[str]:
    return Counter(store.describe(f"{parent}:{i}")["status"] for i in range(size))


def test_describing_every_child_agrees_with_the_status_summary(store: Store) -> None:
    summary = store.describe("id-align")["arrayProperties"]["statusSummary"]
    assert _described_statuses(store, "id-align", 3) == Counter(
        {state: n for state, n in summary.items() if n}
    )


def test_children_of_a_failed_array_that_never_ran_read_failed(store: Store) -> None:
    store.emit(ev("id-align:0", S.FAILED, 4, attempt=1, exit_code=1, reason="exited 1"))
    store.emit(ev("id-align:1", S.FAILED, 4, reason="Dependent Job failed"))
    store.emit(ev("id-align", S.FAILED, 5, reason="Array child failed: align[0]"))
    store.flush()
    parent = store.describe("id-align")
    child = store.describe("id-align:2")
    assert child["status"] == "FAILED"
    assert child["statusReason"] == "Array child failed: align[0]"
    assert child["attempts"] == [] and child["startedAt"] is None
    assert child["stoppedAt"] == parent["stoppedAt"]
    summary = parent["arrayProperties"]["statusSummary"]
    assert _described_statuses(store, "id-align", 3) == Counter(
        {state: n for state, n in summary.items() if n}
    )


def test_a_request_for_a_child_not_created_yet_goes_to_its_parents_run(
    store: Store, tmp_path: Path
) -> None:
    # a later run, so that "the latest run" and "the parent's run" differ
    store.begin_run("later", pipeline(), {n: f"later-{n}" for n in IDS}, created_at=T0 + 60)
    store.request("id-align:2", "cancel", "not this one")
    store.request("id-steps:3", "terminate", "nor this")
    assert store.take_requests("later") == []
    assert store.take_requests(RUN) == [
        ("id-align:2", "cancel", "not this one"),
        ("id-steps:3", "terminate", "nor this"),
    ]


@pytest.mark.parametrize("index", [3, 7, -1])
def test_an_index_outside_the_array_is_refused_with_its_range(store: Store, index: int) -> None:
    for call in (
        lambda: store.describe(f"id-align:{index}"),
        lambda: store.request(f"id-align:{index}", "cancel", "x"),
    ):
        with pytest.raises(StoreError) as err:
            call()
        assert f"no job with id `id-align:{index}`" in str(err.value)
        assert "array job `id-align` (align) has 3 children: 0..2" in str(err.value)
    assert store.take_requests(RUN) == []


def test_a_single_job_has_no_children(store: Store) -> None:
    for call in (
        lambda: store.describe("id-prep:0"),
        lambda: store.request("id-prep:0", "terminate", "x"),
    ):
        with pytest.raises(StoreError) as err:
            call()
        assert "job `id-prep` (prep) is not an array job" in str(err.value)
    assert store.take_requests(RUN) == []


def test_a_child_of_an_unknown_parent_is_an_unknown_job(store: Store) -> None:
    with pytest.raises(StoreError) as err:
        store.describe("id-alig:2")
    assert "no job with id `id-alig:2`" in str(err.value)
    with pytest.raises(StoreError):
        store.request("nothing:0", "cancel", "x")
    assert store.take_requests(RUN) == []


def _cli(state_dir: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [*args, "--state-dir", str(state_dir)])
    return result.exit_code, result.stdout, result.stderr


def test_logs_of_a_child_that_has_not_run(store: Store, tmp_path: Path) -> None:
    state_dir = tmp_path / ".flowbatch"
    code, _, err = _cli(state_dir, "logs", "id-align:2")
    assert code == 2
    assert err == "error: job `id-align:2` (align[2]) has not started yet: it is PENDING\n"
    store.emit(ev("id-align", S.FAILED, 5, reason="Array child failed: align[0]"))
    store.flush()
    for follow in ((), ("--follow",)):
        code, _, err = _cli(state_dir, "logs", "id-align:2", *follow)
        assert code == 2
        assert err == (
            "error: job `id-align:2` (align[2]) never ran:"
            " it FAILED: Array child failed: align[0]\n"
        )


# -- end to end: `flowbatch run` and `flowbatch cancel` in two processes --------------------
SIZE, VICTIM = 30, 25


def _flowbatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowbatch", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _wait_for(cond: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def _child_started(state_dir: Path, parent: list[str]) -> bool:
    if not (state_dir / "jobs.db").exists():
        return False
    with Store.open(state_dir, create=False) as s:
        if not parent:
            found = [j["jobId"] for j in s.jobs() if j["jobName"] == "many"]
            if not found:
                return False
            parent.append(found[0])
        # child 0 is RUNNING, or has already run (both can fall between two flushes)
        return s.describe(f"{parent[0]}:0")["startedAt"] is not None


@pytest.mark.slow
def test_cancelling_a_child_the_runner_has_not_created_from_another_process(
    tmp_path: Path, spawn: Spawner
) -> None:
    flow = tmp_path / "p.flow"
    flow.write_text(f'job many {{\n  command = "sleep 0.3"\n  array = {SIZE}\n}}\n')
    state_dir = tmp_path / ".flowbatch"
    proc = spawn(
        [sys.executable, "-m", "flowbatch", "run", str(flow), "--max-vcpus", "1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    parent: list[str] = []
    _wait_for(lambda: _child_started(state_dir, parent))
    victim = f"{parent[0]}:{VICTIM}"
    described = _flowbatch("describe", victim, "--state-dir", str(state_dir))
    assert described.returncode == 0, described.stderr
    assert '"status": "PENDING"' in described.stdout  # not created yet: one at a time
    cancel = _flowbatch("cancel", victim, "--reason", "not this one", "--state-dir", str(state_dir))
    assert cancel.returncode == 0, cancel.stderr
    assert f"job {victim} cancelled" in cancel.stderr  # what happened, not "requested"
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    with Store.open(state_dir, create=False) as s:
        child = s.describe(victim)
        assert child["status"] == "FAILED" and child["statusReason"] == "not this one"
        assert child["attempts"] == [] and child["startedAt"] is None
        others = [s.describe(f"{parent[0]}:{i}") for i in range(SIZE) if i != VICTIM]
        assert [c["status"] for c in others] == ["SUCCEEDED"] * (SIZE - 1)
        assert all(len(c["attempts"]) == 1 for c in others)
        assert s.describe(parent[0])["status"] == "FAILED"
