"""Benchmark: `flowbatch report` on a run of one 10,000-child array.

The run is recorded straight into a store (no processes run): `prep`, then `frames`
(N children on the 2 slots of `local`, 1% failing once and retrying, 0.2% failing for
good with a log), then `join`, which never runs. The report is then built the way the
CLI builds it (store reads, graph through `dot`, HTML), timing each phase, and the
file's size is printed.

    python bench/bench_report.py [--children 10000] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from flowbatch.cli.reports import build_report
from flowbatch.lang.load import load
from flowbatch.outputs.report.html import report_html
from flowbatch.run.state import JobEvent, JobState
from flowbatch.store.jobstore import Store

FLOW = """
job prep {{
  command = "true"
}}
job frames {{
  command = "render {{{{ array.index }}}}"
  array   = {children}
  after   = [prep]
  retry {{ attempts = 2 }}
}}
job join {{
  command = "true"
  after   = [frames]
}}
"""

RUN_ID = "20260101-000000-beef"
STEP = 0.5  # seconds per attempt
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def record(tmp: Path, children: int) -> Path:
    """Writes the pipeline and its run into `tmp`; returns the state dir."""
    flow = tmp / "bench.flow"
    flow.write_text(FLOW.format(children=children))
    plan = load(flow)
    ids = {name: str(uuid.uuid4()) for name in plan.jobs()}
    state_dir = tmp / ".flowbatch"
    store = Store.open(state_dir)
    store.begin_run(RUN_ID, plan.pipeline, ids, created_at=T0)
    s = JobState
    clock = [T0]

    def ev(name: str, job_id: str, index: int | None, state: JobState, **kw: object) -> None:
        store.emit(
            JobEvent(
                run_id=RUN_ID, job_id=job_id, name=name, index=index, state=state,
                time=kw.pop("time", clock[0]), **kw,  # type: ignore[arg-type]
            )
        )  # fmt: skip

    def attempt(name: str, job_id: str, index: int | None, n: int, start: float, code: int) -> None:
        run_dir = state_dir / "logs" / RUN_ID
        log = run_dir / (f"{name}.attempt-{n}" if index is None else f"{name}.{index}.attempt-{n}")
        if code != 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            text = "".join(f"line {i}\n" for i in range(100)) + "boom\n"
            Path(f"{log}.stderr").write_text(text)
        where = {"compute": "local", "host": "localhost", "log_path": str(log)}
        ev(name, job_id, index, s.STARTING, attempt=n, time=start, **where)
        ev(name, job_id, index, s.RUNNING, attempt=n, time=start, **where)
        if code == 0:
            ev(name, job_id, index, s.SUCCEEDED, attempt=n, exit_code=0, time=start + STEP)
        else:
            final = n == 2 or index is None
            ev(
                name, job_id, index, s.FAILED if final else s.RUNNABLE, attempt=n,
                exit_code=code, time=start + STEP, reason="Essential container in task exited",
            )  # fmt: skip

    ev("prep", ids["prep"], None, s.SUBMITTED)
    ev("prep", ids["prep"], None, s.RUNNABLE)
    attempt("prep", ids["prep"], None, 1, T0, 0)
    for name in ("frames", "join"):
        ev(name, ids[name], None, s.SUBMITTED)
        ev(name, ids[name], None, s.PENDING)
    slots = [T0 + STEP, T0 + STEP]
    failed = 0
    for i in range(children):
        cid = f"{ids['frames']}:{i}"
        ev("frames", cid, i, s.SUBMITTED, time=slots[0])
        ev("frames", cid, i, s.RUNNABLE, time=slots[0])
        tries = 2 if i % 100 == 7 else 1
        for n in range(1, tries + 1):
            slot = min(range(2), key=lambda k: slots[k])
            code = 3 if n == 1 and tries == 2 else 0
            if n == 2 and i % 500 == 7:
                code, failed = 4, failed + 1
            attempt("frames", cid, i, n, slots[slot], code)
            slots[slot] += STEP
    end = max(slots)
    reason = f"{failed} of {children} children failed"
    ev("frames", ids["frames"], None, s.FAILED if failed else s.SUCCEEDED, time=end, reason=reason)
    ev("join", ids["join"], None, s.FAILED, time=end, reason="Dependency failed: frames")
    store.flush()
    store.end_run(RUN_ID, "FAILED", ended_at=end)
    store.close()
    return state_dir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--children", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="also write the report here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = record(Path(tmp), args.children)
        walls, cpus = [], []
        for _ in range(args.repeat):
            c0, t0 = time.process_time(), time.perf_counter()
            found = build_report(state_dir, "latest")
            t1 = time.perf_counter()
            page = report_html(found)
            t2 = time.perf_counter()
            cpu = time.process_time() - c0
            walls.append(t2 - t0)
            cpus.append(cpu)
            print(
                f"{args.children} children, {len(found.attempts)} attempts:"
                f" read+graph {(t1 - t0) * 1000:.0f} ms, html {(t2 - t1) * 1000:.0f} ms,"
                f" total {(t2 - t0) * 1000:.0f} ms wall ({cpu * 1000:.0f} ms CPU, without"
                f" the `dot` child), {len(page.encode()) / 1024:.0f} KiB"
                f" (graph {'drawn' if found.graph_svg else 'missing: ' + found.graph_note})"
            )
        print(
            f"median: {statistics.median(walls) * 1000:.0f} ms wall,"
            f" {statistics.median(cpus) * 1000:.0f} ms CPU"
        )
        if args.keep:
            args.keep.write_text(page, encoding="utf-8")


if __name__ == "__main__":
    main()
