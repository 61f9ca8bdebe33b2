"""The example pipelines in pipelines/: each one validates, means what its comments say,
and (slow) runs to SUCCEEDED with `flowbatch run`, writing the outputs it promises.

The run tests copy pipelines/ into a temporary directory first, so they never write into
the checkout, and run the same flowbatch the test imported, in a child process.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from proc_helpers import run_to_end

import flowbatch
from flowbatch.lang.compile import Plan
from flowbatch.lang.model import Dependency, DepKind
from flowbatch.lang.template import Context, render_command

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"
FLOW_FILES = sorted(PIPELINES.glob("*.flow"))
LIBRARIES = {"common.flow"}  # imported by others; declares no jobs
RUNNABLE = [p for p in FLOW_FILES if p.name not in LIBRARIES]


def _load(name: str, **params: str) -> Plan:
    return flowbatch.load(PIPELINES / name, params or None)


def _dep(plan: Plan, job: str, on: str) -> Dependency:
    matches = [d for d in plan.deps(job) if d.job == on]
    assert len(matches) == 1, f"{job} should depend once on {on}: {plan.deps(job)}"
    return matches[0]


# -- every file validates -------------------------------------------------------------


def test_the_examples_are_all_there() -> None:
    names = {p.name for p in FLOW_FILES}
    expected = {"quickstart", "ml_sweep", "post_trade", "render", "hpc", "common"}
    assert {f"{n}.flow" for n in expected} <= names


@pytest.mark.parametrize("path", FLOW_FILES, ids=[p.name for p in FLOW_FILES])
def test_pipeline_validates(path: Path) -> None:
    plan = flowbatch.load(path)
    assert plan.path.endswith(path.name)
    for name in plan.jobs():
        spec = plan.job(name)
        assert spec.queue in plan.queues, f"{name}: queue {spec.queue} not declared"
        for compute in plan.queues[spec.queue].compute:
            assert compute in plan.computes
    if path.name in LIBRARIES:
        assert len(plan) == 0
        assert {"interactive", "bulk"} <= set(plan.queues)
    else:
        assert len(plan) >= 3


@pytest.mark.parametrize("path", RUNNABLE, ids=[p.name for p in RUNNABLE])
def test_every_command_renders_for_every_child(path: Path) -> None:
    # The runner renders once per child; a template that only breaks for some index
    # (a bad format, an out-of-range lookup) must show up here, not in the middle of a run.
    plan = flowbatch.load(path)
    for name in plan.jobs():
        spec = plan.job(name)
        indexes: list[int | None] = list(range(spec.size)) if spec.is_array else [None]
        for index in indexes:
            ctx = Context(plan.params, job_name=name, index=index, size=spec.array_size)
            rendered = render_command(spec.command, ctx, spec.parameters)
            text = rendered if isinstance(rendered, str) else " ".join(rendered)
            assert "{{" not in text and "Ref::" not in text, f"{name}[{index}]: {text}"


def test_common_is_shared_by_several_pipelines() -> None:
    importers = [p.name for p in RUNNABLE if any(s.endswith("common.flow") for s in _sources(p))]
    assert len(importers) >= 2, importers


def _sources(path: Path) -> tuple[str, ...]:
    return flowbatch.load(path).pipeline.sources


# -- each pipeline means what its comments say -------------------------------------------


def test_quickstart_shape() -> None:
    plan = _load("quickstart.flow")
    assert plan.jobs() == ("split", "shout", "join")
    assert plan.job("shout").array_size == 3
    assert _dep(plan, "join", "shout").kind is DepKind.WHOLE
    assert plan.job("split").queue == "default"


def test_ml_sweep_shape_and_params() -> None:
    plan = _load("ml_sweep.flow")
    assert plan.job("train").array_size == plan.params["trials"] == 8
    assert _dep(plan, "evaluate", "train").kind is DepKind.N_TO_N
    assert _dep(plan, "pick_best", "evaluate").kind is DepKind.WHOLE
    train = plan.job("train")
    assert train.retry.attempts == 3
    assert train.retry.should_retry(75, "Essential container in task exited")
    assert not train.retry.should_retry(1, "Essential container in task exited")
    assert train.env["PYTHONHASHSEED"] == "0"  # inherited through two definitions
    assert plan.job("prepare").parameters == {"split": "0.8"}
    # Maps merge key by key: the job's tag joins the definition's.
    assert plan.job("pick_best").tags == {"project": "flowbatch-examples", "stage": "report"}

    small = _load("ml_sweep.flow", trials="3")
    assert small.job("train").array_size == small.job("evaluate").array_size == 3


def test_post_trade_shape() -> None:
    plan = _load("post_trade.flow")
    assert plan.queues["intraday"].priority > plan.queues["overnight"].priority
    assert plan.job("trades").array_size == 4
    assert _dep(plan, "enrich", "trades").kind is DepKind.N_TO_N
    assert _dep(plan, "enrich", "prices").kind is DepKind.WHOLE
    assert _dep(plan, "pnl", "enrich").kind is DepKind.N_TO_N
    assert plan.job("pnl").queue == "overnight"
    assert plan.job("trades").memory == 128


def test_render_shape() -> None:
    plan = _load("render.flow")
    poster = _dep(plan, "poster", "frames")
    assert (poster.kind, poster.index) == (DepKind.ELEMENT, 0)
    assert _dep(plan, "thumbs", "frames").kind is DepKind.N_TO_N
    assert plan.job("poster").command == (
        "cp",
        "out/render/frames/0000.pgm",
        "out/render/poster.pgm",
    )
    assert plan.job("thumbs").memory == 128  # overrides the definition's 256MiB
    assert plan.job("frames").memory == 256


def test_hpc_shape() -> None:
    plan = _load("hpc.flow")
    heat = plan.job("heat")
    assert heat.sequential and heat.array_size == 10
    checkpoint = _dep(plan, "checkpoint", "heat")
    assert (checkpoint.kind, checkpoint.index) == (DepKind.ELEMENT, 4)
    assert heat.timeout == 60
    assert heat.retry.backoff == 1
    assert heat.retry.should_retry(137, "")
    assert heat.retry.should_retry(None, "Host EC2 (instance i-0) terminated.")
    assert not heat.retry.should_retry(2, "")
    assert heat.env == {
        "OMP_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }
    assert plan.queues["solver"].compute == ("node",)
    assert plan.computes["node"].vcpus == 2


# -- each pipeline runs ------------------------------------------------------------------


def _flowbatch_env() -> dict[str, str]:
    # The child runs the flowbatch this test imported (the installed wheel in CI, the
    # checkout when run from it), not whatever else is on PATH.
    package_parent = str(Path(flowbatch.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    return env


def _skip_without_run_command() -> None:
    # The runner and its CLI command land separately; until `flowbatch run` exists these
    # tests have nothing to call. Once it does, they run (and fail) like any other.
    import click

    from flowbatch.cli import app

    if app.get_command(click.Context(app), "run") is None:
        pytest.skip("`flowbatch run` has not landed in the CLI yet")


def _run(tmp_path: Path, name: str, *params: str) -> tuple[Path, Path]:
    """Run pipelines/<name> from a temporary copy; returns (its out dir, the state dir)."""
    _skip_without_run_command()
    copy = tmp_path / "pipelines"
    shutil.copytree(PIPELINES, copy, ignore=shutil.ignore_patterns("out", ".flowbatch"))
    state = tmp_path / "state"
    argv = [sys.executable, "-m", "flowbatch", "run", str(copy / name), "--state-dir", str(state)]
    for param in params:
        argv += ["-p", param]
    proc = run_to_end(argv, cwd=tmp_path, env=_flowbatch_env(), timeout=180)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert (state / "jobs.db").is_file()
    return copy / "out", state


def _nonempty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


@pytest.mark.slow
def test_quickstart_runs(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, "quickstart.flow")
    assert (out / "quickstart" / "shout.txt").read_text().split() == ["HELLO", "BATCH", "WORLD"]


@pytest.mark.slow
def test_quickstart_quotes_a_hostile_param(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, "quickstart.flow", "words=a b; touch pwned")
    assert not (tmp_path / "pipelines" / "pwned").exists()
    assert (out / "quickstart" / "shout.txt").read_text().split() == ["A", "B;", "TOUCH"]


@pytest.mark.slow
def test_ml_sweep_runs(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, "ml_sweep.flow", "trials=4", "samples=200")
    best = json.loads((out / "ml_sweep" / "best.json").read_text())
    assert best["trials_compared"] == 4
    assert best["trial"] in range(4)
    metrics = [
        json.loads((out / "ml_sweep" / "trials" / str(i) / "metrics.json").read_text())
        for i in range(4)
    ]
    assert best["log_loss"] == min(m["log_loss"] for m in metrics)


@pytest.mark.slow
def test_ml_sweep_retries_a_preempted_trial(tmp_path: Path) -> None:
    out, state = _run(tmp_path, "ml_sweep.flow", "trials=2", "samples=100", "flaky_trial=1")
    assert json.loads((out / "ml_sweep" / "best.json").read_text())["trials_compared"] == 2
    # Contract: <state>/logs/<run_id>/<job>.<index>.attempt-<n>.stderr
    first = list(state.glob("logs/*/train.1.attempt-1.stderr"))
    assert len(first) == 1 and "simulated preemption" in first[0].read_text()
    assert list(state.glob("logs/*/train.1.attempt-2.stderr"))
    assert not list(state.glob("logs/*/train.0.attempt-2.*"))


@pytest.mark.slow
def test_post_trade_runs(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, "post_trade.flow", "desks=3", "trades=50")
    rows = (out / "post_trade" / "report.csv").read_text().splitlines()
    assert rows[0] == "desk,trades,notional_usd,pnl_usd"
    assert sorted(r.split(",")[0] for r in rows[1:]) == ["desk-0", "desk-1", "desk-2"]
    assert all(r.split(",")[1] == "50" for r in rows[1:])
    total = sum(float(r.split(",")[3]) for r in rows[1:])
    assert f"{total:.2f}" in (out / "post_trade" / "summary.txt").read_text()


@pytest.mark.slow
def test_render_runs(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, "render.flow", "frames=4")
    render = out / "render"
    frames = sorted((render / "frames").glob("*.pgm"))
    assert [f.name for f in frames] == ["0000.pgm", "0001.pgm", "0002.pgm", "0003.pgm"]
    assert len({f.read_bytes() for f in frames}) == 4  # the disc moves: every frame differs
    assert (render / "movie.pgms").read_bytes() == b"".join(f.read_bytes() for f in frames)
    assert (render / "poster.pgm").read_bytes() == frames[0].read_bytes()
    assert len(list((render / "thumbs").glob("*.pgm"))) == 4
    assert _nonempty(render / "contact_sheet.pgm")
    _check_sha256(render / "movie.sha256", render / "movie.pgms")


def _check_sha256(sums: Path, target: Path) -> None:
    import hashlib

    digest, name = sums.read_text().split()
    assert name == target.name
    assert digest == hashlib.sha256(target.read_bytes()).hexdigest()


@pytest.mark.slow
def test_hpc_runs(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, "hpc.flow", "steps=6")
    hpc = out / "hpc"
    assert sorted(p.name for p in (hpc / "state").glob("*.txt")) == [
        f"{i:03d}.txt" for i in range(7)
    ]
    assert (hpc / "checkpoint" / "005.txt").read_text() == (hpc / "state" / "005.txt").read_text()
    analysis = json.loads((hpc / "analysis.json").read_text())
    assert analysis["steps"] == 6 and analysis["monotone_cooling"] is True


# Fails loudly if a runnable pipeline is added without a run test above.
RUN_TESTS: dict[str, Callable[[Path], None]] = {
    "quickstart.flow": test_quickstart_runs,
    "ml_sweep.flow": test_ml_sweep_runs,
    "post_trade.flow": test_post_trade_runs,
    "render.flow": test_render_runs,
    "hpc.flow": test_hpc_runs,
}


def test_every_runnable_pipeline_has_a_run_test() -> None:
    assert sorted(RUN_TESTS) == sorted(p.name for p in RUNNABLE)
