"""Benchmark of `flowbatch plan --resume` after a complete run of 100,000 processes
(10,000 arrays x 10 children chained N_TO_N, bench_front's generator).

    python bench/bench_plan.py [--repeat 3]

The "complete run" is written straight into the store (Store.begin_run / emit / flush
with SUCCEEDED events carrying fingerprints from flowbatch.run.fingerprint), which is what
a real run leaves behind, minus the hour of starting 100,000 processes. Reports the
wall time of the command as a user runs it (start-up and parsing included), of
`flowbatch validate` on the same file (the floor that parsing sets), and the phases in
process: load, reading the previous run's records, fingerprinting and deciding.
Target (issue 4): plan --resume under 2 s on top of what loading the file costs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_front import big_pipeline

from flowbatch.lang.load import load
from flowbatch.run.fingerprint import Fingerprints
from flowbatch.run.resume import decide
from flowbatch.run.runner import new_job_ids, new_run_id
from flowbatch.run.state import JobEvent, JobState
from flowbatch.store.jobstore import Store


def populate(path: Path, state: Path) -> float:
    """A complete, successful run of `path` in the store; returns seconds taken."""
    start = time.perf_counter()
    plan = load(path)
    fps = Fingerprints(plan)
    run_id, ids = new_run_id(), new_job_ids(plan)
    with Store.open(state) as store:
        now = time.time()
        store.begin_run(run_id, plan.pipeline, ids, created_at=now)
        for name in plan.jobs():
            spec = plan.job(name)
            for index in range(spec.array_size or 0):
                job_id = f"{ids[name]}:{index}"
                for st in (JobState.SUBMITTED, JobState.RUNNABLE):
                    store.emit(JobEvent(run_id=run_id, job_id=job_id, name=name,
                                        index=index, state=st, time=now))  # fmt: skip
                store.emit(JobEvent(run_id=run_id, job_id=job_id, name=name, index=index,
                                    state=JobState.STARTING, time=now, attempt=1))  # fmt: skip
                store.emit(JobEvent(run_id=run_id, job_id=job_id, name=name, index=index,
                                    state=JobState.RUNNING, time=now, attempt=1))  # fmt: skip
                store.emit(JobEvent(run_id=run_id, job_id=job_id, name=name, index=index,
                                    state=JobState.SUCCEEDED, time=now, attempt=1,
                                    exit_code=0, fingerprint=fps.of(name, index)))  # fmt: skip
            store.flush()
        store.end_run(run_id, "SUCCEEDED", ended_at=time.time())
    return time.perf_counter() - start


def timed(argv: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def phases(path: Path, state: Path) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    t = time.perf_counter()
    plan = load(path)
    out.append(("load (parse, analyze, compile)", time.perf_counter() - t))
    t = time.perf_counter()
    with Store.open(state) as store:
        previous = store.latest_run(plan.path)
        assert previous is not None
        records = store.records(previous)
    out.append(("store.records (110,000 rows)", time.perf_counter() - t))
    t = time.perf_counter()
    decision = decide(plan, Fingerprints(plan), previous, records)
    out.append(("fingerprint + decide", time.perf_counter() - t))
    reused = decision.as_json()["summary"]["processesReused"]
    assert reused == 100_000, reused
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "big.flow")
        path.write_text(big_pipeline())
        state = Path(tmp, "state")
        print(f"populate the store (100,000 SUCCEEDED children): {populate(path, state):.1f} s")
        fb = [sys.executable, "-m", "flowbatch"]
        where = ["--state-dir", str(state)]
        rows = [
            ("validate (the parsing floor)", timed([*fb, "validate", str(path)], args.repeat)),
            ("plan (no --resume)", timed([*fb, "plan", str(path)], args.repeat)),
            ("plan --resume", timed([*fb, "plan", "--resume", str(path), *where], args.repeat)),
            (
                "plan --resume --json",
                timed([*fb, "plan", "--resume", "--json", str(path), *where], args.repeat),
            ),
        ]
        rows += phases(path, state)
    print(f"{'workload (100,000 processes)':40} {'best s':>8}")
    for name, seconds in rows:
        print(f"{name:40} {seconds:8.3f}")


if __name__ == "__main__":
    main()
