"""What `flowbatch run` of a plain local pipeline does not import (issue 13): every module
is paid for before the first job starts, so what only another command, an option or an
error needs is imported where it is used. The list names what was once imported at
start and is kept out now, and what no plain run should ever need."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PLAIN = 'job one {\n  command = "true"\n}\n'

NOT_FOR_RUN = (
    "flowbatch.cli.control",  # cancel / terminate; `run --resume` imports it
    "flowbatch.cli.planning",  # `plan`; `run --resume` imports it
    "configparser",  # --server without AWS credentials
    "difflib",  # "did you mean": an error only
    "importlib.resources",  # the grammar is read beside the package
    "zipfile",
    "lark",  # the LALR tables come from the cache
    "jinja2",
    "botocore",
    "starlette",
    "uvicorn",
    "flowbatch.server",
    "flowbatch.executors.ssh",
    "flowbatch.executors.slurm",
    "flowbatch.executors.aws_batch",
    "flowbatch.lang.parse_errors",
    "flowbatch.lang.messages",
    "flowbatch.store.views",  # the reading commands, and a failed run's hints
    "flowbatch.store.standing",  # the server
)


@pytest.mark.slow
def test_a_plain_run_imports_nothing_it_does_not_need(tmp_path: Path) -> None:
    (tmp_path / "one.flow").write_text(PLAIN)
    code = (
        "import runpy, sys\n"
        "sys.argv = ['flowbatch', 'run', 'one.flow', '--state-dir', 'state']\n"
        "try:\n"
        "    runpy.run_module('flowbatch', run_name='__main__')\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0, done.code\n"
        f"print(sorted(set({NOT_FOR_RUN!r}) & set(sys.modules)))\n"
    )
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root}
    env.pop("FLOWBATCH_SERVER", None)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert "succeeded" in out.stderr
