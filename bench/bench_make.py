"""flowbatch against make, run by hand: `python bench/bench_make.py [--rounds 3] [--only NAME]`.

Writes the same workloads for both, one job per job as make gets them (a Makefile
target per job, a `job` block per job), and runs `make -j2` and `flowbatch run
--max-vcpus 2` (a fresh `python -m flowbatch` process from this interpreter, as a user
starts it) interleaved, `--rounds` times each; prints the median seconds and the ratio.

    independent-1k / -10k   N `true` jobs, no dependencies
    programs-1k             1,000 `/bin/true` jobs: a program, not a shell builtin
    array-1k                a 1,000-child array of `true` and one job after all of it
                            (make: 1,000 targets and one that depends on them all)
    chain-1k                1,000 `true` jobs, each after the one before
    sleepy                  40 x `sleep 0.5` on 2 slots: the excess over the ideal 10 s

`--floor` adds `bench/floor.py` to each round: the same jobs spawned and waited for by a
bare asyncio loop with no bookkeeping at all, without and with a cgroup per job (v1,
where this machine allows it), the floor under any Python runner's ratio to make.

Peak RSS is that of the `flowbatch run` process (and of the descendants it waited
for, which are smaller) for 10,000 independent jobs, from `os.wait4`.
The machine is shared and noisy: quote ratios from one run, with `uptime`.
`--state-root /dev/shm` puts flowbatch's state (job database, logs) on tmpfs: what the
file system costs is then out of the figures (make writes no files).

flowbatch runs with its bytecode cached (in a temporary PYTHONPYCACHEPREFIX, warmed by
one run first), as an installed package runs: where PYTHONDONTWRITEBYTECODE is set (as
in this project's sessions), every start would otherwise compile every module, about
0.3 s more.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCAL2 = 'compute local {\n  type = "local"\n  vcpus = 2\n  memory = 8GiB\n}\n'


def _job(name: str, command: str, after: list[str] | None = None) -> str:
    deps = f"\n  after = [{', '.join(after)}]" if after else ""
    return f'job {name} {{\n  command = "{command}"{deps}\n}}\n'


def _make(targets: list[tuple[str, list[str], str]], goal: str) -> str:
    """A Makefile of `targets` (name, prerequisites, recipe) whose first rule, the one
    `make` builds, is `goal` (a target of its own, or one that depends on them all)."""
    names = " ".join(t for t, _, _ in targets)
    rules = [f"{t}: {' '.join(deps)}\n\t@{command}\n" for t, deps, command in targets]
    if goal in {t for t, _, _ in targets}:
        first = next(i for i, (t, _, _) in enumerate(targets) if t == goal)
        rules.insert(0, rules.pop(first))
    else:
        rules.insert(0, f"{goal}: {names}\n")
    return f".PHONY: {names} {goal}\n" + "".join(rules)


def independent(n: int, command: str = "true") -> tuple[str, str]:
    flow = LOCAL2 + "".join(_job(f"j{i}", command) for i in range(n))
    return flow, _make([(f"j{i}", [], command) for i in range(n)], "all")


def array_fan_in(n: int) -> tuple[str, str]:
    flow = LOCAL2 + f'job a {{\n  command = "true"\n  array = {n}\n}}\n'
    flow += _job("fan", "true", ["a"])
    targets: list[tuple[str, list[str], str]] = [(f"a{i}", [], "true") for i in range(n)]
    targets.append(("fan", [f"a{i}" for i in range(n)], "true"))
    return flow, _make(targets, "fan")


def chain(n: int) -> tuple[str, str]:
    flow = LOCAL2 + _job("j0", "true")
    flow += "".join(_job(f"j{i}", "true", [f"j{i - 1}"]) for i in range(1, n))
    targets: list[tuple[str, list[str], str]] = [("j0", [], "true")]
    targets += [(f"j{i}", [f"j{i - 1}"], "true") for i in range(1, n)]
    return flow, _make(targets, f"j{n - 1}")


def sleepy(n: int = 40) -> tuple[str, str]:
    flow = LOCAL2 + "".join(_job(f"s{i}", "sleep 0.5") for i in range(n))
    return flow, _make([(f"s{i}", [], "sleep 0.5") for i in range(n)], "all")


WORKLOADS: dict[str, Callable[[], tuple[str, str]]] = {
    "independent-1k": lambda: independent(1000),
    "independent-10k": lambda: independent(10_000),
    "programs-1k": lambda: independent(1000, "/bin/true"),
    "array-1k": lambda: array_fan_in(1000),
    "chain-1k": lambda: chain(1000),
    "sleepy": sleepy,
}


FLOOR_ARGS: dict[str, list[str]] = {
    "independent-1k": ["1000", "true"],
    "independent-10k": ["10000", "true"],
    "programs-1k": ["1000", "/bin/true"],
    "array-1k": ["1000", "true", "--after-all"],
    "chain-1k": ["1000", "true", "--chain"],
    "sleepy": ["40", "sleep 0.5"],
}


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one command, run to completion."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed ({proc.returncode}):\n{err.decode()[-2000:]}")
    return wall, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", action="append", choices=list(WORKLOADS), default=None)
    parser.add_argument("--python", default=sys.executable, help="the interpreter to run")
    parser.add_argument(
        "--state-root",
        type=Path,
        default=None,
        help="where flowbatch's state directories go (default: beside the workload, in"
        " the system's temporary directory); /dev/shm takes the file system out of it",
    )
    parser.add_argument(
        "--tree",
        action="append",
        metavar="LABEL=DIR",
        help="a flowbatch source tree to run (repeatable: before/after in one run;"
        " default: this one)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also run bench/floor.py: the jobs alone from a bare asyncio loop, without"
        " and with a cgroup per job",
    )
    args = parser.parse_args()
    trees = [t.partition("=")[::2] for t in args.tree or [f"flowbatch={ROOT}"]]
    flowbatch = [args.python, "-m", "flowbatch", "run", "--max-vcpus", "2"]
    floors: dict[str, list[str]] = {"floor": [], "floor+cg": ["--cgroups"]} if args.floor else {}
    names = args.only or list(WORKLOADS)
    pycache = tempfile.mkdtemp(prefix="bench-make-pycache-")
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    base_env["PYTHONPYCACHEPREFIX"] = pycache
    with tempfile.TemporaryDirectory(prefix="bench-make-warm-") as d:
        (Path(d) / "p.flow").write_text(independent(1)[0])
        for _, tree in trees:
            timed(
                [*flowbatch, "p.flow", "--state-dir", "st"],
                Path(d),
                dict(base_env, PYTHONPATH=tree),
            )
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    for name in names:
        flow_text, make_text = WORKLOADS[name]()
        make_t: list[float] = []
        fb_t: dict[str, list[float]] = {label: [] for label, _ in trees}
        floor_t: dict[str, list[float]] = {label: [] for label in floors}
        rss: dict[str, list[int]] = {label: [] for label, _ in trees}
        with tempfile.TemporaryDirectory(prefix="bench-make-") as d:
            tmp = Path(d)
            (tmp / "p.flow").write_text(flow_text)
            (tmp / "Makefile").write_text(make_text)
            # The state directories are removed with the temporary one, after the
            # rounds: ext4 makes inodes slower to allocate just after many were freed.
            for r in range(args.rounds):
                t, _ = timed(["make", "-s", "-j2"], tmp, dict(os.environ))
                make_t.append(t)
                for label, tree in trees:
                    env = dict(base_env, PYTHONPATH=tree)
                    state = (args.state_root or tmp) / f"st-{label}-{r}-{os.getpid()}"
                    t, kib = timed([*flowbatch, "p.flow", "--state-dir", str(state)], tmp, env)
                    fb_t[label].append(t)
                    rss[label].append(kib)
                for label, flags in floors.items():
                    floor = [args.python, str(ROOT / "bench" / "floor.py"), *FLOOR_ARGS[name]]
                    t, _ = timed([*floor, *flags], tmp, dict(base_env))
                    floor_t[label].append(t)
            if args.state_root is not None:
                for label, _ in trees:
                    for r in range(args.rounds):
                        shutil.rmtree(
                            args.state_root / f"st-{label}-{r}-{os.getpid()}", ignore_errors=True
                        )
        m = statistics.median(make_t)
        print(f"{name:16} make -j2 {m:6.2f}s   ({', '.join(f'{x:.2f}' for x in make_t)})")
        for label, times in floor_t.items():
            f = statistics.median(times)
            print(
                f"{'':16} {label:9} {f:6.2f}s  ratio {f / m:5.2f}x"
                f"   ({', '.join(f'{x:.2f}' for x in times)})"
            )
        for label, _ in trees:
            f = statistics.median(fb_t[label])
            extra = ""
            if name == "sleepy":
                extra = (
                    f"  excess over the ideal 10 s: make {100 * (m - 10) / 10:+.1f}%,"
                    f" {label} {100 * (f - 10) / 10:+.1f}%"
                )
            print(
                f"{'':16} {label:9} {f:6.2f}s  ratio {f / m:5.2f}x"
                f"  peak RSS {max(rss[label]) / 1024:5.1f} MiB{extra}"
                f"   ({', '.join(f'{x:.2f}' for x in fb_t[label])})",
                flush=True,
            )
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    shutil.rmtree(pycache, ignore_errors=True)


if __name__ == "__main__":
    main()
