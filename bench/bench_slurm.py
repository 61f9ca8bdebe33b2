"""Benchmark: a 10,000-child array of `true` through the SLURM executor.

Reports how long submission takes (from the first `run()` call until every child has
its SLURM id), how many SLURM commands were run (sbatch must be 1), and the time until
every child has ended. Needs the SLURM of `ci/engines/slurm.sh`.

    python bench/bench_slurm.py [--size 10000] [--partition debug] [--poll 1.0] [--submit-only]
                                [--export NONE|NIL|ALL]

`--submit-only` terminates the array once every child has its SLURM id (one coalesced
scancel), for measuring submission at full size without waiting for a small cluster to
work through 10,000 jobs.

`--export` submits with another `sbatch --export` than flowbatch's NONE, to measure what
SLURM's loading of the login environment for each job costs (docs/language.md,
"Environment of a running job"): `--size 20 --poll 0.5` with NONE against ALL.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from flowbatch.executors.base import Attempt, ExecResult
from flowbatch.executors.slurm import SlurmExecutor
from flowbatch.lang.model import ComputeEnv, Host


def _attempts(size: int, root: Path, ce: ComputeEnv) -> list[Attempt]:
    return [
        Attempt(
            run_id="bench",
            job_id=f"bench:{i}",
            name="bench",
            index=i,
            attempt=1,
            command="true",
            env={"AWS_BATCH_JOB_ID": f"bench:{i}", "AWS_BATCH_JOB_ARRAY_INDEX": str(i)},
            workdir=root,
            vcpus=1,
            memory=16,
            gpus=0,
            timeout=None,
            image=None,
            log_stem=root / "logs" / "bench" / f"bench.{i}.attempt-1",
            compute=ce,
            host="slurm",
        )
        for i in range(size)
    ]


async def main(size: int, partition: str, poll: float, submit_only: bool) -> None:
    ce = ComputeEnv(
        name="cluster",
        type="slurm",
        vcpus=size,
        memory=size * 16,
        options={"partition": partition, "poll_interval": poll},
        hosts=(Host(name="slurm", vcpus=size, memory=size * 16),),
    )
    ex = SlurmExecutor(ce)
    results: list[ExecResult] = []
    submitted = 0
    all_submitted = anyio.Event()
    t_submitted = 0.0

    async def child(a: Attempt, *, task_status: TaskStatus[str]) -> None:
        results.append(await ex.run(a, task_status=task_status))

    async def place(a: Attempt) -> None:
        nonlocal submitted, t_submitted
        async with anyio.create_task_group() as inner:
            await inner.start(child, a)
            submitted += 1
            if submitted == size:
                t_submitted = time.perf_counter()
                all_submitted.set()

    with tempfile.TemporaryDirectory(prefix="bench-slurm-") as tmp:
        attempts = _attempts(size, Path(tmp), ce)
        # The runner makes the run's log directory before calling run(); so does the
        # benchmark (an attempt has none of its own).
        attempts[0].log_stem.parent.mkdir(parents=True)
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for a in attempts:
                tg.start_soon(place, a)
            if submit_only:
                await all_submitted.wait()
                tg.cancel_scope.cancel()
        t_done = time.perf_counter()
    ok = sum(r.ok for r in results)
    print(f"children          {size}")
    print(f"submission        {t_submitted - t0:.2f} s (first run() to every SLURM id)")
    print(f"{'terminated' if submit_only else 'completion':<18}{t_done - t0:.2f} s")
    print(f"succeeded         {ok}/{size}")
    print(f"calls             {dict(sorted(ex.calls.items()))}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--partition", default="debug")
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--submit-only", action="store_true")
    parser.add_argument("--export", default="NONE", help="sbatch --export mode to measure")
    args = parser.parse_args()
    if args.export != "NONE":
        import flowbatch.executors.slurm as slurm

        flowbatchs = slurm.sbatch_argv

        def exporting(*a: Any, **k: Any) -> list[str]:
            argv = flowbatchs(*a, **k)
            return [f"--export={args.export}" if w == "--export=NONE" else w for w in argv]

        slurm.sbatch_argv = exporting
    anyio.run(main, args.size, args.partition, args.poll, args.submit_only)
