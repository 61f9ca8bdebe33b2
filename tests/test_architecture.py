"""The architecture as tests: the import-linter contracts in pyproject.toml hold, and
every module is small and opens with a docstring (style.md, habit 15)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "flowbatch"
# Not a rule to split by (style.md: split where a concept splits): past about 800 lines a
# module is worth a look, and this test is the reminder to take it.
MAX_LINES = 800
MODULES = sorted(SOURCE.rglob("*.py"))


def _lint_imports() -> str:
    # The console script beside this interpreter first: the venv's, not another one on PATH.
    beside = Path(sys.executable).parent / "lint-imports"
    found = str(beside) if beside.is_file() else shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports (import-linter) is not installed", pytrace=False)
    return found


@pytest.mark.slow
def test_import_contracts_hold() -> None:
    # Run from the checkout (where pyproject.toml holds the contracts), in a subprocess so
    # that it analyses the package fresh, as CI's own lint-imports step does.
    result = subprocess.run(
        [_lint_imports(), "--no-cache", "--no-logo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_source_tree_has_modules() -> None:
    # Guards the parametrized tests below against passing vacuously on an empty glob.
    assert SOURCE / "__init__.py" in MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_module_is_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)} has {lines} lines: split it by concept"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_module_starts_with_a_docstring(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    assert doc and doc.strip(), f"{path.relative_to(REPO)} does not start with a docstring"
