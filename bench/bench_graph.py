"""Benchmark `flowbatch graph` on a large pipeline: 10,000 array jobs of 10 children
each, in layers, each job N_TO_N on the job of the same column in the layer before.

Run by hand (not a test):

    python bench/bench_graph.py [--jobs 10000] [--width 100] [--repeat 3]

It reports the wall time and peak RSS of `flowbatch graph FILE > /dev/null` in a fresh
process (what a user waits for), then, in this process, the time of each phase (load,
DOT, Mermaid, JSON) and the peak memory the DOT rendering allocates (tracemalloc).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def pipeline_text(jobs: int, width: int, size: int = 10) -> str:
    """`jobs` array jobs of `size` children, `width` per layer, chained N_TO_N."""
    out = []
    for i in range(jobs):
        layer, column = divmod(i, width)
        out.append(f"job s{layer}_{column} {{")
        out.append(f'  command = "step {layer} {column} {{{{ array.index }}}}"')
        out.append(f"  array   = {size}")
        if layer:
            out.append(f"  after   = [n_to_n(s{layer - 1}_{column})]")
        out.append("}")
    return "\n".join(out) + "\n"


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.flow"
        path.write_text(pipeline_text(args.jobs, args.width))
        print(f"pipeline: {args.jobs} array jobs x 10 children, {args.width} per layer")

        walls = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "flowbatch", "graph", str(path)],
                stdout=subprocess.DEVNULL,
                check=True,
            )
            walls.append(time.perf_counter() - start)
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(
            f"flowbatch graph (DOT to stdout): best {min(walls):.2f} s,"
            f" median {sorted(walls)[len(walls) // 2]:.2f} s, peak RSS {peak_mib:.0f} MiB"
        )

        from flowbatch.lang.load import load
        from flowbatch.outputs.dot import to_dot
        from flowbatch.outputs.graph import to_json
        from flowbatch.outputs.mermaid import to_mermaid

        plan, load_s = timed(lambda: load(path))
        print(f"  load (parse, analyze, compile): {load_s:.2f} s")
        for label, render in (
            ("to_dot", lambda: to_dot(plan)),
            ("to_dot --group-by-queue", lambda: to_dot(plan, group_by_queue=True)),
            ("to_mermaid", lambda: to_mermaid(plan)),
            ("to_json", lambda: to_json(plan)),
        ):
            text, seconds = timed(render)
            print(f"  {label}: {seconds:.3f} s, {len(text) / 1e6:.1f} MB of text")
        tracemalloc.start()
        to_dot(plan)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"  to_dot peak allocation: {peak / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
