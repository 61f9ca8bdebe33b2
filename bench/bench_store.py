"""Benchmark: how long the store takes to record an array of 10,000 children.

Each child goes RUNNABLE -> STARTING -> RUNNING -> SUCCEEDED (plus the parent's four
events), about six events per child; the runner flushes every 0.2 s, so the events are
flushed in batches of `--batch` (default: everything at once, the worst single flush).

    python bench/bench_store.py [--children 10000] [--batch 0] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from flowbatch.lang.model import DEFAULT_QUEUE, JobSpec, Pipeline, local_compute
from flowbatch.run.state import JobEvent, JobState
from flowbatch.store.jobstore import Store


def events(run_id: str, parent: str, children: int) -> list[JobEvent]:
    s = JobState
    out = [
        JobEvent(run_id=run_id, job_id=parent, name="a", index=None, state=st, time=1.0)
        for st in (s.SUBMITTED, s.PENDING)
    ]
    for i in range(children):
        cid = f"{parent}:{i}"
        for n, st in enumerate((s.SUBMITTED, s.RUNNABLE, s.STARTING, s.RUNNING)):
            out.append(
                JobEvent(
                    run_id=run_id, job_id=cid, name="a", index=i, state=st, time=2.0 + n,
                    attempt=1 if st in (s.STARTING, s.RUNNING) else 0,
                    log_path=f"/logs/{run_id}/a/{i}/attempt-1", compute="local",
                    host="localhost",
                )
            )  # fmt: skip
        out.append(
            JobEvent(
                run_id=run_id, job_id=cid, name="a", index=i, state=s.SUCCEEDED, time=9.0,
                attempt=1, exit_code=0,
            )
        )  # fmt: skip
    out.append(
        JobEvent(run_id=run_id, job_id=parent, name="a", index=None, state=s.SUCCEEDED, time=10)
    )
    return out


def once(children: int, batch: int) -> tuple[float, float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp))
        run_id = "20260101-000000-beef"
        parent = str(uuid.uuid4())
        spec = JobSpec(name="a", command="true", array_size=children)
        pipeline = Pipeline(
            path="bench.flow", params={}, computes={"local": local_compute(2, 4096)},
            queues={"default": DEFAULT_QUEUE}, jobs={"a": spec},
        )  # fmt: skip
        store.begin_run(run_id, pipeline, {"a": parent}, created_at=0.0)
        evs = events(run_id, parent, children)
        c0 = time.process_time()
        t0 = time.perf_counter()
        for i, ev in enumerate(evs, 1):
            store.emit(ev)
            if batch and i % batch == 0:
                store.flush()
        t1 = time.perf_counter()
        store.flush()
        t2 = time.perf_counter()
        cpu = time.process_time() - c0
        assert not store.rejected, store.rejected[:3]
        summary = store.describe(parent)["arrayProperties"]["statusSummary"]
        assert summary["SUCCEEDED"] == children, summary
        store.close()
        return t1 - t0, t2 - t0, cpu, len(evs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--children", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=0, help="flush every N events (0: once)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    totals, cpus = [], []
    for _ in range(args.repeat):
        emit_s, total_s, cpu_s, n = once(args.children, args.batch)
        totals.append(total_s)
        cpus.append(cpu_s)
        print(
            f"{n} events: emit {emit_s * 1000:.0f} ms, emit+flush {total_s * 1000:.0f} ms"
            f" wall, {cpu_s * 1000:.0f} ms CPU"
        )
    # CPU time is the steadier figure on a shared machine; wall time includes waiting.
    print(
        f"median emit+flush: {statistics.median(totals) * 1000:.0f} ms wall,"
        f" {statistics.median(cpus) * 1000:.0f} ms CPU"
    )


if __name__ == "__main__":
    main()
