"""The grammar is package data: it must load from the installed package, so that a
packaging mistake (the file left out of the wheel) fails here and not on a user's
machine. In CI the package is a non-editable wheel install (see ci/test.sh)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import flowbatch


def test_grammar_is_inside_the_installed_package() -> None:
    grammar = resources.files("flowbatch").joinpath("flow.lark")
    assert grammar.is_file()
    assert "start:" in grammar.read_text(encoding="utf-8")


def test_grammar_loads_outside_the_source_tree(tmp_path: Path) -> None:
    # A fresh interpreter in an empty directory sees only the installed package.
    code = (
        "import flowbatch, flowbatch.lang.parse as p; "
        "f = p.parse('job a {\\n  command = \"x\"\\n}\\n', 'x.flow'); "
        "print(flowbatch.__file__, len(f.statements))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    location, count = out.split()
    assert count == "1"
    if os.environ.get("CI") == "true":
        assert "site-packages" in location, location
    assert Path(location).resolve().parent == Path(flowbatch.__file__).resolve().parent
