"""One explicit time step of the 1-D heat equation, for hpc.flow.

    python3 scripts/heat.py init    CELLS OUT
    python3 scripts/heat.py step    ALPHA SUBSTEPS IN OUT
    python3 scripts/heat.py analyze OUT.json STEP_FILE...

A state file holds one temperature per line. The rod's ends are held at 0 (Dirichlet
boundaries); the initial condition is a hot block in the middle. The explicit scheme is
stable for ALPHA <= 0.5, and `step` refuses anything larger rather than produce noise.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path


def read_state(path: Path) -> list[float]:
    return [float(line) for line in path.read_text().split()]


def write_state(path: Path, values: list[float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    # Write then rename, so that a killed step never leaves a half-written state that
    # the next step (or a resumed run) would read.
    tmp.write_text("".join(f"{v:.9f}\n" for v in values))
    tmp.replace(path)


def init(cells: int, out: Path) -> None:
    values = [100.0 if cells // 3 <= i < 2 * cells // 3 else 0.0 for i in range(cells)]
    values[0] = values[-1] = 0.0
    write_state(out, values)


def step(alpha: float, substeps: int, src: Path, out: Path) -> None:
    if not 0 < alpha <= 0.5:
        sys.exit(f"alpha {alpha} makes the explicit scheme unstable (need 0 < alpha <= 0.5)")
    u = read_state(src)
    for _ in range(substeps):
        u = [
            0.0,
            *(u[i] + alpha * (u[i - 1] - 2 * u[i] + u[i + 1]) for i in range(1, len(u) - 1)),
            0.0,
        ]
    write_state(out, u)
    print(f"{src.name} -> {out.name}: max {max(u):.3f}, heat {sum(u):.3f}")


def analyze(out: Path, files: list[Path]) -> None:
    states = [(path.name, read_state(path)) for path in sorted(files)]
    series = [{"file": name, "max": max(u), "heat": sum(u)} for name, u in states]
    cooling = all(max(a) >= max(b) for (_, a), (_, b) in itertools.pairwise(states))
    summary = {"steps": len(series) - 1, "monotone_cooling": cooling, "series": series}
    out.write_text(json.dumps(summary, sort_keys=True, indent=2) + "\n")
    if not cooling:
        sys.exit("the maximum temperature rose between steps: the scheme is unstable")


def main(argv: list[str]) -> None:
    match argv:
        case ["init", cells, out]:
            init(int(cells), Path(out))
        case ["step", alpha, substeps, src, out]:
            step(float(alpha), int(substeps), Path(src), Path(out))
        case ["analyze", out, *files]:
            analyze(Path(out), [Path(f) for f in files])
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
