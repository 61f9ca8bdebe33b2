"""`inputs` and `outputs` as templates: each array child names its own files, so resume
looks at exactly those (regression: with one glob over every child's files, a child
fingerprinted while its siblings were still writing never matched again)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from proc_helpers import run_to_end

PIPELINE = '''
job make {
  command = "mkdir -p out && echo {{ array.index }} > out/made-{{ array.index }}.txt"
  array   = 4
  outputs = ["out/made-{{ array.index }}.txt"]
}
job use {
  command = """
    sleep 0.{{ array.index }}
    cat out/made-{{ array.index }}.txt > out/used-{{ array.index }}.txt
    """
  array   = 4
  after   = [n_to_n(make)]
  inputs  = ["out/made-{{ array.index }}.txt"]
  outputs = ["out/used-{{ array.index }}.txt"]
}
'''


def flowbatch(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_to_end(
        [sys.executable, "-m", "flowbatch", *args, "p.flow", "--state-dir", "state"], cwd=tmp
    )


def plan(tmp: Path) -> dict[str, dict[str, Any]]:
    out = flowbatch(tmp, "plan", "--resume", "--json")
    assert out.returncode == 0, out.stderr
    return {job["name"]: job for job in json.loads(out.stdout)["jobs"]}


@pytest.mark.slow
def test_each_child_is_judged_by_its_own_files(tmp_path: Path) -> None:
    (tmp_path / "p.flow").write_text(PIPELINE)
    assert flowbatch(tmp_path, "run").returncode == 0
    # Right after a complete run everything is reused, although `use` children started
    # while other `make` children were still writing their files.
    jobs = plan(tmp_path)
    assert jobs["make"]["reasons"] == {"unchanged": 4}
    assert jobs["use"]["reasons"] == {"unchanged": 4}

    (tmp_path / "out" / "made-2.txt").unlink()  # one child's output
    (tmp_path / "out" / "used-3.txt").unlink()  # another's, downstream
    jobs = plan(tmp_path)
    assert jobs["make"]["reasons"] == {"output missing": 1, "unchanged": 3}
    assert jobs["make"]["children"]["output missing"] == [2]
    assert jobs["use"]["children"] == {"input changed": [2], "output missing": [3],
                                       "unchanged": [0, 1]}  # fmt: skip

    assert flowbatch(tmp_path, "run", "--resume").returncode == 0
    assert (tmp_path / "out" / "used-2.txt").read_text() == "2\n"
    assert {j: plan(tmp_path)[j]["reasons"] for j in ("make", "use")} == {
        "make": {"unchanged": 4},
        "use": {"unchanged": 4},
    }
