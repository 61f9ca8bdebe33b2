"""The layout of an attempt's logs (`executors.logfiles`): files beside a stem in the
run's one directory, and the directory per attempt that older stores recorded, which
every reader still reads."""

from __future__ import annotations

from pathlib import Path

from test_store import IDS, RUN, ev, pipeline

from flowbatch.cli.reports import build_report
from flowbatch.executors import logfiles
from flowbatch.outputs.junit import log_tail_via
from flowbatch.run.state import JobState
from flowbatch.store.jobstore import Store

S = JobState


def test_an_attempts_files_share_a_stem_in_the_runs_directory(tmp_path: Path) -> None:
    assert logfiles.stem(tmp_path, "prep", None, 2) == tmp_path / "prep.attempt-2"
    assert logfiles.stem(tmp_path, "align", 7, 1) == tmp_path / "align.7.attempt-1"
    stem = logfiles.stem(tmp_path, "align", 7, 1)
    assert logfiles.beside(stem, "stdout") == tmp_path / "align.7.attempt-1.stdout"
    assert not tmp_path.joinpath("align.7.attempt-1").exists()  # nothing made


def test_a_recorded_log_path_is_read_as_a_stem_or_as_an_older_stores_directory(
    tmp_path: Path,
) -> None:
    stem = tmp_path / "run" / "prep.attempt-1"
    old = tmp_path / "run" / "prep" / "attempt-1"
    assert not logfiles.exists(stem) and not logfiles.exists(old)
    old.mkdir(parents=True)
    logfiles.beside(stem, "stderr").write_text("new\n")
    (old / "stderr").write_text("old\n")
    assert logfiles.exists(stem) and logfiles.exists(old)
    assert logfiles.recorded_file(str(stem), "stderr").read_text() == "new\n"
    assert logfiles.recorded_file(str(old), "stderr").read_text() == "old\n"
    assert logfiles.recorded_file(old, "slurm-exit-code") == old / "slurm-exit-code"
    # A relative path with nothing at it is taken from `base` (a state dir's parent).
    assert logfiles.recorded_file("run/prep.attempt-1", "stderr", base=tmp_path) == (
        logfiles.beside(stem, "stderr")
    )
    assert logfiles.recorded_file("run/prep/attempt-1", "stdout", base=tmp_path) == (old / "stdout")


def _files(run_dir: Path, *names: str) -> None:
    for name in names:
        path = run_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")


def test_started_attempts_are_found_in_one_listing_in_either_layout(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _files(
        run_dir,
        "a.attempt-1.stdout",
        "a.attempt-1.stderr",
        "a.attempt-2.stdout",  # stdout alone is enough: it started
        "arr.3.attempt-1.stderr",
        "arr.attempt-1.slurm-0f0f.sh",  # an array's batch script: not an attempt's log
        "b.attempt-1.slurm-batch.sh",  # no stream beside it (yet): not started
        "old/attempt-1/stdout",  # a directory per attempt (an older runner's)
        "oldarr/4/attempt-2/stderr",
        "stray-file",
    )
    (run_dir / "c.attempt-1.conmon").mkdir()
    (run_dir / "old" / "attempt-2").mkdir()  # made, then the runner died: started
    assert logfiles.started(run_dir) == {
        ("a", None): {1: str(run_dir / "a.attempt-1"), 2: str(run_dir / "a.attempt-2")},
        ("arr", 3): {1: str(run_dir / "arr.3.attempt-1")},
        ("old", None): {
            1: str(run_dir / "old" / "attempt-1"),
            2: str(run_dir / "old" / "attempt-2"),
        },
        ("oldarr", 4): {2: str(run_dir / "oldarr" / "4" / "attempt-2")},
    }
    assert logfiles.started(tmp_path / "never-made") == {}


def test_remove_deletes_the_named_jobs_logs_in_either_layout(tmp_path: Path) -> None:
    run_dir = tmp_path / "server"
    _files(
        run_dir,
        "j1.attempt-1.stdout",
        "j1.attempt-1.stderr",
        "j1.2.attempt-1.stdout",
        "j1.attempt-1.conmon/oom",
        "j1/attempt-1/stdout",  # an older server's directory for the job
        "j10.attempt-1.stdout",  # another job, whose id starts with the first's
        "j2.attempt-1.stdout",
    )
    logfiles.remove(run_dir, {"j1"})
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "j10.attempt-1.stdout",
        "j2.attempt-1.stdout",
    ]


def test_a_store_of_either_layout_serves_the_report_and_junit_tails(tmp_path: Path) -> None:
    # prep's attempt recorded as an older store did (a directory), align[1]'s as now.
    sd = tmp_path / ".flowbatch"
    run_dir = sd / "logs" / RUN
    old = run_dir / "prep" / "attempt-1"
    old.mkdir(parents=True)
    (old / "stderr").write_text("old layout boom\n")
    stem = run_dir / "align.1.attempt-1"
    logfiles.beside(stem, "stderr").write_text("flat layout boom\n")
    with Store.open(sd) as store:
        store.begin_run(RUN, pipeline(), IDS, created_at=0)
        for job, log in (("id-prep", old), ("id-align:1", stem)):
            store.emit(ev(job, S.STARTING, 1, attempt=1, log_path=str(log)))
            store.emit(ev(job, S.RUNNING, 1, attempt=1))
            store.emit(ev(job, S.FAILED, 2, attempt=1, exit_code=1))
        store.emit(ev("id-align", S.FAILED, 3))
        store.end_run(RUN, "FAILED", ended_at=4)
        store.flush()
        tail = log_tail_via(store.job)
        assert "old layout boom" in tail(store.job("id-prep"))
        assert "flat layout boom" in tail(store.job("id-align:1"))
    rows = {row.name: row for row in build_report(sd, RUN).jobs}
    failure = rows["prep"].failure
    assert failure is not None and "old layout boom" in (failure.log_tail or "")
    (child,) = rows["align"].failed_children
    assert "flat layout boom" in (child.log_tail or "")
