"""Tiny logistic regression in pure Python, for ml_sweep.flow.

    python3 scripts/ml.py prepare  --samples N --seed S --split F --out DIR
    python3 scripts/ml.py train    --trial I [--flaky-trial I] --data DIR --out DIR
    python3 scripts/ml.py evaluate --trial I --data DIR --models DIR
    python3 scripts/ml.py pick     --models DIR --out FILE

The hyperparameters of trial I come from a fixed grid, so a sweep is reproducible.
Exit code 75 (EX_TEMPFAIL) means "try again" to the pipeline's retry rules.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
from pathlib import Path

FEATURES = 4
LEARNING_RATES = (0.03, 0.1, 0.3, 1.0)
L2 = (0.0, 0.01, 0.1)
EPOCHS = 60


def grid(trial: int) -> dict[str, float]:
    return {
        "lr": LEARNING_RATES[trial % len(LEARNING_RATES)],
        "l2": L2[(trial // len(LEARNING_RATES)) % len(L2)],
    }


def sigmoid(z: float) -> float:
    if z < -60:
        return 0.0
    return 1.0 / (1.0 + math.exp(-z))


def read_rows(path: Path) -> list[tuple[list[float], int]]:
    with path.open() as f:
        return [([float(v) for v in row[:-1]], int(row[-1])) for row in csv.reader(f)]


def prepare(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    true_w = [rng.uniform(-2, 2) for _ in range(FEATURES)]
    rows = []
    for _ in range(args.samples):
        x = [rng.gauss(0, 1) for _ in range(FEATURES)]
        p = sigmoid(sum(w * v for w, v in zip(true_w, x, strict=True)) + rng.gauss(0, 0.5))
        rows.append([*(f"{v:.5f}" for v in x), int(rng.random() < p)])
    cut = int(len(rows) * args.split)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train.csv", rows[:cut]), ("test.csv", rows[cut:])):
        with (out / name).open("w", newline="") as f:
            csv.writer(f).writerows(part)
    print(f"wrote {cut} training and {len(rows) - cut} test rows to {out}")


def train(args: argparse.Namespace) -> None:
    if args.flaky_trial == str(args.trial) and os.environ.get("AWS_BATCH_JOB_ATTEMPT") == "1":
        print(f"trial {args.trial}: simulated preemption on attempt 1", file=sys.stderr)
        sys.exit(75)
    hp = grid(args.trial)
    rows = read_rows(Path(args.data) / "train.csv")
    w = [0.0] * (FEATURES + 1)  # the last weight is the bias
    n = len(rows)
    for _ in range(EPOCHS):
        grad = [0.0] * (FEATURES + 1)
        for x, y in rows:
            err = sigmoid(sum(wi * xi for wi, xi in zip(w[:-1], x, strict=True)) + w[-1]) - y
            for j, xj in enumerate(x):
                grad[j] += err * xj
            grad[-1] += err
        for j in range(FEATURES + 1):
            penalty = hp["l2"] * w[j] if j < FEATURES else 0.0
            w[j] -= hp["lr"] * (grad[j] / n + penalty)
    out = Path(args.out) / str(args.trial)
    out.mkdir(parents=True, exist_ok=True)
    model = {"trial": args.trial, "hyperparameters": hp, "weights": w}
    (out / "model.json").write_text(json.dumps(model, sort_keys=True, indent=2) + "\n")
    print(f"trial {args.trial}: trained with {hp}")


def evaluate(args: argparse.Namespace) -> None:
    folder = Path(args.models) / str(args.trial)
    model = json.loads((folder / "model.json").read_text())
    w = model["weights"]
    rows = read_rows(Path(args.data) / "test.csv")
    correct = 0
    loss = 0.0
    for x, y in rows:
        p = sigmoid(sum(wi * xi for wi, xi in zip(w[:-1], x, strict=True)) + w[-1])
        correct += int((p >= 0.5) == bool(y))
        p = min(max(p, 1e-12), 1 - 1e-12)
        loss -= y * math.log(p) + (1 - y) * math.log(1 - p)
    metrics = {
        "trial": args.trial,
        "hyperparameters": model["hyperparameters"],
        "accuracy": correct / len(rows),
        "log_loss": loss / len(rows),
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, sort_keys=True, indent=2) + "\n")
    print(f"trial {args.trial}: accuracy {metrics['accuracy']:.3f}")


def pick(args: argparse.Namespace) -> None:
    trials = [json.loads(p.read_text()) for p in Path(args.models).glob("*/metrics.json")]
    if not trials:
        sys.exit("no metrics.json found: did the evaluate job run?")
    best = min(trials, key=lambda m: (m["log_loss"], m["trial"]))
    best["trials_compared"] = len(trials)
    Path(args.out).write_text(json.dumps(best, sort_keys=True, indent=2) + "\n")
    print(f"best trial {best['trial']} of {len(trials)}: log loss {best['log_loss']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--samples", type=int, required=True)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--split", type=float, default=0.8)
    p.add_argument("--out", required=True)
    p = sub.add_parser("train")
    p.add_argument("--trial", type=int, required=True)
    p.add_argument("--flaky-trial", default="none", help="fail attempt 1 of this trial")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("evaluate")
    p.add_argument("--trial", type=int, required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--models", required=True)
    p = sub.add_parser("pick")
    p.add_argument("--models", required=True)
    p.add_argument("--out", required=True)
    args = parser.parse_args()
    {"prepare": prepare, "train": train, "evaluate": evaluate, "pick": pick}[args.step](args)


if __name__ == "__main__":
    main()
