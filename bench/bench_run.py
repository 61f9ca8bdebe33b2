"""Runner benchmarks, run by hand: `python bench/bench_run.py [--quick]`.

Each case generates `.flow` text, runs `flowbatch run` as a subprocess (so start-up,
the store and the progress output are included), and compares with `xargs -P2` and
`make -j2` doing the same work. Prints one line per case. Peak memory is ru_maxrss of
the `flowbatch run` process (RUSAGE_CHILDREN after it is the only child waited for).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOWBATCH = [sys.executable, "-m", "flowbatch", "run"]


def timed(argv: list[str], cwd: Path, stdin: str | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one command run to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, input=stdin, text=True, capture_output=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(after, before)


def flow(tmp: Path, name: str, text: str, *extra: str) -> tuple[float, int]:
    path = tmp / f"{name}.flow"
    path.write_text(text)
    return timed([*FLOWBATCH, str(path), "--state-dir", str(tmp / f"st-{name}"), *extra], tmp)


LOCAL2 = 'compute local {\n  type = "local"\n  vcpus = 2\n  memory = 8GiB\n}\n'


def bench_array(tmp: Path, n: int) -> None:
    t_fb, rss = flow(tmp, "array", LOCAL2 + f'job a {{\n  command = "true"\n  array = {n}\n}}\n')
    t_x, _ = timed(["sh", "-c", f"seq {n} | xargs -P2 -n1 sh -c true"], tmp)
    print(
        f"array of {n} `true`: flowbatch {t_fb:.2f}s, xargs -P2 {t_x:.2f}s,"
        f" ratio {t_fb / t_x:.2f} (target <= 2)"
    )
    print(f"peak memory of `flowbatch run` on it: {rss / 1024:.0f} MiB (target < 150)")


def bench_chain(tmp: Path, n: int) -> None:
    jobs = ['job j0 {\n  command = "true"\n}\n']
    jobs += [f'job j{i} {{\n  command = "true"\n  after = [j{i - 1}]\n}}\n' for i in range(1, n)]
    t_fb, _ = flow(tmp, "chain", LOCAL2 + "".join(jobs))
    rules = ["j0:\n\t@sh -c true\n"] + [f"j{i}: j{i - 1}\n\t@sh -c true\n" for i in range(1, n)]
    (tmp / "Makefile").write_text(
        f".PHONY: {' '.join(f'j{i}' for i in range(n))}\n" + "".join(rules)
    )
    t_m, _ = timed(["make", "-s", "-j2", f"j{n - 1}"], tmp)
    # Per-dependency latency inside the run (from the store): first job started to last
    # job stopped, over n hops; the whole command adds a fixed start-up and teardown.
    from flowbatch.store.jobstore import Store

    with Store.open(tmp / "st-chain", create=False) as store:
        run = store.latest_run()
        assert run is not None
        jobs = store.jobs(run_id=run)
    span = (max(j["stoppedAt"] for j in jobs) - min(j["startedAt"] for j in jobs)) / 1000
    print(
        f"chain of {n}: in the run {span / n * 1000:.2f} ms/dependency,"
        f" make -j2 {t_m / n * 1000:.2f} ms, ratio {span / t_m:.2f} (target <= 2);"
        f" whole command {t_fb:.2f}s, ratio {t_fb / t_m:.2f}"
    )


def bench_fan_in(tmp: Path, n: int) -> None:
    text = LOCAL2 + f'job a {{\n  command = "true"\n  array = {n}\n}}\n'
    text += 'job all {\n  command = "true"\n  after = [a]\n}\n'
    t_fb, _ = flow(tmp, "fanin", text)
    print(f"array of {n} feeding one job: flowbatch {t_fb:.2f}s")


def bench_sleeps(tmp: Path, n: int) -> None:
    t_fb, _ = flow(
        tmp, "sleeps", LOCAL2 + f'job s {{\n  command = "sleep 0.5"\n  array = {n}\n}}\n'
    )
    t_one, _ = flow(tmp, "one", LOCAL2 + 'job s {\n  command = "true"\n}\n')
    ideal = n * 0.5 / 2
    # The makespan inside the run, from the store: first attempt started to last stopped.
    from flowbatch.store.jobstore import Store

    with Store.open(tmp / "st-sleeps", create=False) as store:
        run = store.latest_run()
        assert run is not None
        parent = store.jobs(run_id=run)[0]["jobId"]
        kids = store.jobs(parent=parent)
    span = (max(k["stoppedAt"] for k in kids) - min(k["startedAt"] for k in kids)) / 1000
    print(
        f"{n} x sleep 0.5 on 2 vCPUs: makespan in the run {span:.2f}s, ideal {ideal:.2f}s,"
        f" overhead {100 * (span - ideal) / ideal:.1f}% (target <= 3%);"
        f" whole command {t_fb:.2f}s ({100 * (t_fb - ideal) / ideal:.1f}%),"
        f" of which a one-job run's start-up and teardown is {t_one:.2f}s"
    )


def critical_dag() -> str:
    # Submission order puts 8 short independent jobs first; a chain of 8 sits behind them.
    # Critical path first starts the chain at once and fills the other vCPU with the rest.
    text = LOCAL2
    for i in range(8):
        text += f'job free{i} {{\n  command = "sleep 0.4"\n}}\n'
    text += 'job c0 {\n  command = "sleep 0.4"\n}\n'
    for i in range(1, 8):
        text += f'job c{i} {{\n  command = "sleep 0.4"\n  after = [c{i - 1}]\n}}\n'
    return text


def bench_critical(tmp: Path) -> None:
    text = critical_dag()
    t_cp, _ = flow(tmp, "crit", text)
    # Submission order alone: the same DAG with every job on one critical-path rank,
    # forced by giving earlier jobs a higher `priority` (which outranks critical path).
    lines, prio, out = text.splitlines(keepends=True), 100, []
    for line in lines:
        out.append(line)
        if line.startswith("job "):
            out.append(f"  priority = {prio}\n")
            prio -= 1
    t_sub, _ = flow(tmp, "subm", "".join(out))
    lower = max(8 * 0.4, 16 * 0.4 / 2)
    print(
        f"critical-path DAG: critical path first {t_cp:.2f}s, submission order {t_sub:.2f}s,"
        f" lower bound {lower:.2f}s (+ start-up)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args()
    big = 1000 if args.quick else 10_000
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ.setdefault("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
        start, _ = timed([sys.executable, "-c", "import flowbatch.run.runner"], tmp)
        print(f"start-up (import flowbatch.run.runner): {start:.2f}s")
        bench_array(tmp, big)
        bench_chain(tmp, 1000 if not args.quick else 200)
        bench_fan_in(tmp, big)
        bench_sleeps(tmp, 40)
        bench_critical(tmp)


if __name__ == "__main__":
    main()
