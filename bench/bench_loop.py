"""How long the runner's event loop stalls, run by hand: `python bench/bench_loop.py`.

In one process, `run_plan` runs with the real Store and Fingerprints while a monitor
task asks to wake every 5 ms and records how late it wakes: the longest lateness is the
longest time the loop could not answer (a signal, a finished job, the ticker). Cases:

- `true` x N: an array of tiny local jobs with the store (flushes every 0.2 s) and
  fingerprints of jobs without `inputs`;
- inputs at the cap: jobs whose `inputs` are `fingerprint.MAX_READ_JOB` bytes in
  `MAX_READ_FILE` files (sparse files: hashing, not the disk, is the cost), run beside
  a stream of `true` jobs;
- many entries: a job whose `inputs` glob walks a directory of `--entries` files.

Also prints the cost of one flush of the first events of a large plan (its jobs'
SUBMITTED / PENDING), and of a fingerprint at the caps called directly (what it costs
the loop when called on it). Works against the code before `RunOptions` too, so that a
checkout of the earlier runner can be measured the same way.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flowbatch.lang.load import load_text
from flowbatch.run import fingerprint as fp
from flowbatch.run import runner
from flowbatch.store.jobstore import Store


class TimedStore:
    """The Store, with each flush timed."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.flushes: list[float] = []

    def emit(self, event: Any) -> None:
        self.store.emit(event)

    def flush(self) -> None:
        t = time.perf_counter()
        self.store.flush()
        self.flushes.append(time.perf_counter() - t)


async def run(tmp: Path, text: str) -> tuple[float, float, list[float], float]:
    """(wall seconds, the loop's longest lateness, flush times, median lateness)."""
    path = tmp / "p.flow"
    path.write_text(text)
    plan = load_text(text, str(path))
    state = tmp / f"state-{time.monotonic_ns()}"
    store = Store.open(state)
    run_id = runner.new_run_id()
    job_ids = runner.new_job_ids(plan)
    store.begin_run(run_id, plan.pipeline, job_ids, created_at=time.time())
    sink = TimedStore(store)
    fingerprints = fp.Fingerprints(plan)
    late: list[float] = []

    async def monitor() -> None:
        while True:
            t = time.perf_counter()
            await anyio.sleep(0.005)
            late.append(time.perf_counter() - t - 0.005)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(monitor)
        await anyio.sleep(0.02)  # the monitor runs before the run's first placements
        if hasattr(runner, "RunOptions"):
            options = runner.RunOptions(run_id=run_id, job_ids=job_ids, state_dir=state)
            result = await runner.run_plan(plan, options, sinks=[sink], fingerprint=fingerprints.of)
        else:  # the runner before RunOptions
            result = await runner.run_plan(
                plan,
                run_id=run_id,
                job_ids=job_ids,
                state_dir=state,
                sinks=[sink],
                fingerprint=fingerprints.of,
            )
        tg.cancel_scope.cancel()
    wall = time.perf_counter() - start
    store.close()
    assert result.status == "SUCCEEDED", result
    return wall, max(late), sink.flushes, statistics.median(late)


def show(name: str, figures: tuple[float, float, list[float], float]) -> None:
    wall, worst, flushes, median = figures
    print(
        f"{name}: {wall:.2f} s; loop late by at most {worst * 1000:.0f} ms "
        f"(median {median * 1000:.1f} ms); {len(flushes)} flushes, longest "
        f"{max(flushes) * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        base = ""  # the implicit `local`: this machine
        show(
            f"true x {args.jobs}",
            anyio.run(
                run,
                tmp,
                base + f'job t {{ command = "true"\n memory = 64MiB\n array = {args.jobs} }}\n',
            ),
        )

        big = tmp / "big"
        big.mkdir()
        files = fp.MAX_READ_JOB // fp.MAX_READ_FILE
        for i in range(files):
            with open(big / f"f{i}.bin", "wb") as f:
                f.truncate(fp.MAX_READ_FILE)
        t = time.perf_counter()
        for _ in range(3):  # fresh Fingerprints: nothing cached
            plan = load_text(
                base + 'job r { command = "true"\n inputs = ["big/*.bin"] }\n', str(tmp / "x.flow")
            )
            fp.Fingerprints(plan).of("r")
        print(
            f"fingerprint of {fp.MAX_READ_JOB >> 20} MiB of inputs in {files} files, called "
            f"directly: {(time.perf_counter() - t) / 3:.2f} s"
        )
        readers = "".join(
            f'job r{i} {{ command = "true {i}"\n memory = 64MiB\n inputs = ["big/*.bin"] }}\n'
            for i in range(3)
        )
        # Each reader has its own Fingerprints cache entry (one per job): 3 x 256 MiB.
        show(
            "3 jobs with inputs at the cap beside 300 `true`",
            anyio.run(
                run,
                tmp,
                base + readers + 'job t { command = "true"\n memory = 64MiB\n array = 300 }\n',
            ),
        )

        many = tmp / "many"
        many.mkdir()
        for i in range(args.entries):
            (many / f"e{i}").touch()
        t = time.perf_counter()
        plan = load_text(
            base + 'job r { command = "true"\n inputs = ["many/*"] }\n', str(tmp / "y.flow")
        )
        fp.Fingerprints(plan).of("r")
        print(
            f"fingerprint of a glob over {args.entries} empty files, called directly: "
            f"{time.perf_counter() - t:.2f} s (the cap is {fp.MAX_ENTRIES} entries)"
        )
        glob_job = 'job g { command = "true"\n memory = 64MiB\n inputs = ["many/*"] }\n'
        show(
            f"1 job globbing {args.entries} files beside 300 `true`",
            anyio.run(
                run,
                tmp,
                base + glob_job + 'job t { command = "true"\n memory = 64MiB\n array = 300 }\n',
            ),
        )

        # The first flush of a run holds every job's first events.
        n = 10_000
        jobs = "".join(f'job j{i} {{ command = "true" }}\n' for i in range(n))
        plan = load_text(base + jobs, str(tmp / "z.flow"))
        store = Store.open(tmp / "zstate")
        run_id = runner.new_run_id()
        ids = runner.new_job_ids(plan)
        store.begin_run(run_id, plan.pipeline, ids, created_at=0.0)
        try:
            from flowbatch.run.frontier import Frontier
        except ImportError:  # before the Frontier was one module
            from flowbatch.run.schedule import Frontier  # type: ignore[no-redef]

        frontier = Frontier(plan, job_ids=ids)
        from flowbatch.run.state import JobEvent

        for c in frontier.changes:
            store.emit(
                JobEvent(
                    run_id=run_id,
                    job_id=ids[c.name],
                    name=c.name,
                    index=c.index,
                    state=c.state,
                    time=0.0,
                )
            )
        t = time.perf_counter()
        store.flush()
        print(
            f"first flush of {n} jobs ({len(frontier.changes)} events): "
            f"{(time.perf_counter() - t) * 1000:.0f} ms"
        )
        store.close()
        os.sync()


if __name__ == "__main__":
    main()
