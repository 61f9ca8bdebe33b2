"""Benchmark of the front half: `flowbatch validate` and `flowbatch graph` on generated
pipelines, as a user runs them (a fresh process each time, start-up included).

    python bench/bench_front.py [--repeat 3]

Workloads: one job; 10,000 array jobs of 10 children each (100,000 processes), chained
N_TO_N in 100 layers of 100. Reports the best wall time of --repeat runs, peak memory
(max RSS), and `python -c pass` in the same run as the floor the machine sets. Targets
(issue 2): 100,000 jobs validate in under 2 s; one job in under 0.5 s.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def big_pipeline(layers: int = 100, width: int = 100, size: int = 10) -> str:
    out = ["definition step {", '  command = "echo {{ array.index }} > /dev/null"',
           "  memory  = 64MiB", "}", ""]  # fmt: skip
    for layer in range(layers):
        for j in range(width):
            out.append(f"job l{layer}_{j}: step {{")
            out.append(f"  array = {size}")
            if layer:
                out.append(f"  after = [n_to_n(l{layer - 1}_{j})]")
            out.append("}")
    return "\n".join(out) + "\n"


def timed(argv: list[str], repeat: int) -> tuple[float, float]:
    """Best wall seconds and the peak RSS (MiB) of the child over `repeat` runs."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return best, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp, "one.flow")
        one.write_text('job hello {\n  command = "echo hello"\n}\n')
        big = Path(tmp, "big.flow")
        big.write_text(big_pipeline())
        fb = [sys.executable, "-m", "flowbatch"]
        floor, _ = timed([sys.executable, "-c", "pass"], args.repeat)
        rows = [
            ("python -c pass (floor)", floor, None),
            ("validate, 1 job", *timed([*fb, "validate", str(one)], args.repeat)),
        ]
        rows.append(("validate, 10,000 arrays x 10 (100,000 jobs)",
                     *timed([*fb, "validate", str(big)], args.repeat)))  # fmt: skip
        rows.append(("graph (DOT), 100,000 jobs", *timed([*fb, "graph", str(big)], args.repeat)))
    print(f"{'workload':48} {'best s':>8} {'x floor':>8} {'peak MiB (so far)':>18}")
    for name, seconds, peak in rows:
        peak_text = f"{peak:.0f}" if peak is not None else ""
        print(f"{name:48} {seconds:8.3f} {seconds / floor:8.1f} {peak_text:>18}")


if __name__ == "__main__":
    main()
