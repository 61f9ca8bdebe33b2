"""`flowbatch run --junit` and the GitHub step summary, from a real failing run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml
from proc_helpers import run_to_end

PIPELINE = """\
job ok {
  command = "echo fine"
}
job bad {
  command = "echo oops >&2; exit 3"
}
job later {
  command = "echo never"
  after   = [bad]
}
"""


@pytest.mark.slow
def test_a_failing_run_writes_junit_and_a_step_summary(tmp_path: Path) -> None:
    (tmp_path / "p.flow").write_text(PIPELINE)
    summary = tmp_path / "summary.md"
    summary.write_text("# before\n")
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary)}
    done = run_to_end(
        [sys.executable, "-m", "flowbatch", "run", "p.flow", "--junit", "out/junit.xml"],
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr

    suite = next(iter(JUnitXml.fromfile(str(tmp_path / "out" / "junit.xml"))))
    cases = {case.name: case for case in suite}
    assert set(cases) == {"ok", "bad", "later"}
    failures = [r for r in cases["bad"].result if isinstance(r, Failure)]
    assert failures and "exit code 3" in (failures[0].message or "")
    assert "oops" in (failures[0].text or "")  # the tail of the job's log
    assert cases["ok"].is_passed

    text = summary.read_text()
    assert text.startswith("# before\n")  # appended, as GitHub expects
    assert "```mermaid" in text and "`bad` | 3 |" in text
