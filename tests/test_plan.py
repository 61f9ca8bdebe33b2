"""`flowbatch plan`: every reason it gives, arrays summarised, stable JSON; and the
resume decisions underneath (`resume.decide`) on records made by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flowbatch.lang.load import load_text
from flowbatch.run.fingerprint import Fingerprints
from flowbatch.run.resume import COMMAND, FAILED, INPUT, NEW, OUTPUT, UNCHANGED, UPSTREAM, decide
from flowbatch.run.state import JobState


def flowbatch(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowbatch", *args, str(tmp / "p.flow"),
         "--state-dir", str(tmp / "state")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def plan_json(tmp: Path) -> dict[str, Any]:
    out = flowbatch(tmp, "plan", "--resume", "--json")
    assert out.returncode == 0, out.stderr
    document: dict[str, Any] = json.loads(out.stdout)
    return document


def reasons(tmp: Path) -> dict[str, str]:
    return {j["name"]: j["reason"] for j in plan_json(tmp)["jobs"]}


PIPELINE = """
job a {
  command = "cat in.txt > a.out"
  inputs = ["in.txt"]
  outputs = ["a.out"]
}
job b {
  command = "echo {{ params.word }} > b.out"
  outputs = ["b.out"]
}
job c {
  command = "test ! -e fail-c"
}
job d {
  command = "true"
  after = [a]
}
param word = "hello"
"""


@pytest.mark.slow
def test_each_reason(tmp_path: Path) -> None:
    (tmp_path / "p.flow").write_text(PIPELINE)
    (tmp_path / "in.txt").write_text("1\n")
    (tmp_path / "fail-c").touch()
    assert reasons(tmp_path) == dict.fromkeys("abcd", NEW)  # no previous run
    assert flowbatch(tmp_path, "run").returncode == 1
    assert reasons(tmp_path) == {"a": UNCHANGED, "b": UNCHANGED, "c": FAILED, "d": UNCHANGED}
    (tmp_path / "in.txt").write_text("2\n")
    (tmp_path / "p.flow").write_text(PIPELINE.replace('"hello"', '"bye"'))
    assert reasons(tmp_path) == {"a": INPUT, "b": COMMAND, "c": FAILED, "d": UPSTREAM}
    (tmp_path / "in.txt").write_text("1\n")
    (tmp_path / "a.out").unlink()
    assert reasons(tmp_path)["a"] == OUTPUT
    # Without --resume everything is new, and the text says why.
    text = flowbatch(tmp_path, "plan")
    assert text.returncode == 0
    assert "without --resume every job runs" in text.stdout
    assert all(line.split()[-1] == "new" for line in text.stdout.splitlines()[1:-1])


@pytest.mark.slow
def test_arrays_are_summarised_with_the_children_that_differ(tmp_path: Path) -> None:
    flow = """
job w {
  command = "test ! -e fail-{{ array.index }}"
  array = 30
}
job m {
  command = "true"
  after = [n_to_n(w)]
  array = 30
}
"""
    (tmp_path / "p.flow").write_text(flow)
    failing = [2, 5, 7, 9, 11, 13, 17, 19, 23, 24, 29]
    for i in failing:
        (tmp_path / f"fail-{i}").touch()
    assert flowbatch(tmp_path, "run").returncode == 1
    document = plan_json(tmp_path)
    w, m = document["jobs"]
    assert w["reasons"] == {FAILED: len(failing), UNCHANGED: 30 - len(failing)}
    assert w["children"][FAILED] == failing[:10]  # capped
    assert w["processesRun"] == len(failing)
    # m's children under failed w children never ran: they failed last time too.
    assert m["reasons"][FAILED] == len(failing)
    assert document["summary"]["processesRun"] == 2 * len(failing)
    out = flowbatch(tmp_path, "plan", "--resume").stdout
    assert f"run {len(failing)}" in out and "..." in out
    # Stable: the same document twice, keys sorted.
    again = flowbatch(tmp_path, "plan", "--resume", "--json").stdout
    assert again == json.dumps(document, indent=2, sort_keys=True) + "\n"


def _plan(tmp: Path, text: str) -> Any:
    return load_text(text, str(tmp / "p.flow"), {})


SEQ = """
job s {
  command = "echo {{ array.index }}"
  array = 6
  sequential = true
}
job t {
  command = "echo {{ array.index }}"
  array = 6
  after = [n_to_n(s)]
}
job u {
  command = "true"
  after = [s[1]]
}
"""


def test_sequential_and_n_to_n_propagate_child_by_child(tmp_path: Path) -> None:
    plan = _plan(tmp_path, SEQ)
    fps = Fingerprints(plan)
    records: dict[str, dict[int | None, tuple[JobState, str | None]]] = {
        "s": {i: (JobState.SUCCEEDED, fps.of("s", i)) for i in range(6)},
        "t": {i: (JobState.SUCCEEDED, fps.of("t", i)) for i in range(6)},
        "u": {None: (JobState.SUCCEEDED, fps.of("u"))},
    }
    records["s"][3] = (JobState.FAILED, fps.of("s", 3))
    decision = decide(plan, fps, "r1", records)
    s, t, u = (decision.jobs[n] for n in "stu")
    assert list(s.mask or b"") == [1, 1, 1, 0, 0, 0]  # 3 failed, 4 and 5 follow it
    assert s.counts == {FAILED: 1, UPSTREAM: 2, UNCHANGED: 3}
    assert s.examples == {FAILED: [3], UPSTREAM: [4, 5], UNCHANGED: [0, 1, 2]}
    assert list(t.mask or b"") == [1, 1, 1, 0, 0, 0]
    assert u.reason == UNCHANGED  # it waits for s[1] only
    assert decision.reuse() == {"s": bytes(s.mask or b""), "t": bytes(t.mask or b""), "u": None}


def test_an_array_whose_plain_output_is_gone_reruns_every_child(tmp_path: Path) -> None:
    flow = 'job w {\n  command = "echo {{ array.index }} >> w.out"\n  array = 12\n'
    plan = _plan(tmp_path, flow + '  outputs = ["w.out"]\n}\n')
    fps = Fingerprints(plan)
    records: dict[str, dict[int | None, tuple[JobState, str | None]]] = {
        "w": {i: (JobState.SUCCEEDED, fps.of("w", i)) for i in range(12)}
    }
    (tmp_path / "w.out").touch()
    w = decide(plan, fps, "r1", records).jobs["w"]
    assert w.counts == {UNCHANGED: 12} and w.examples == {UNCHANGED: list(range(10))}
    (tmp_path / "w.out").unlink()
    w = decide(plan, Fingerprints(plan), "r1", records).jobs["w"]
    assert w.counts == {OUTPUT: 12} and not any(w.mask or b"")


def test_a_command_using_the_index_is_fingerprinted_per_child(tmp_path: Path) -> None:
    plan = _plan(tmp_path, SEQ)
    fps = Fingerprints(plan)
    assert fps.command("s", 0) != fps.command("s", 1)
    assert fps.command("u") == Fingerprints(plan).command("u")
    changed = _plan(tmp_path, SEQ.replace('"true"', '"false"'))
    assert Fingerprints(changed).command("u") != fps.command("u")
