"""The architecture as tests: the import-linter contracts in pyproject.toml hold, every
module is small and opens with a docstring (style.md, habit 15), and every dependency is
imported, declared, and said in the README what it is for."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
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


def _requirement_names(requirements: list[str]) -> set[str]:
    # "lark>=1.1.9" -> "lark"; every dependency here imports under its distribution name.
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def _declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    runtime = project["dependencies"] + [
        r for name, reqs in extras.items() if name != "test" for r in reqs
    ]
    return _requirement_names(runtime)


def _imported() -> set[str]:
    names: set[str] = set()
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "flowbatch"}


def test_every_dependency_is_imported_and_every_import_declared() -> None:
    # A dependency nobody imports costs every install for nothing (rich and graphviz did);
    # an import nobody declares works here and breaks on a clean install.
    declared, imported = _declared(), _imported()
    assert declared - imported == set(), "declared, never imported"
    assert imported - declared == set(), "imported, not declared in pyproject.toml"


def test_readme_says_what_each_dependency_is_for() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.partition("\n## Dependencies\n")[2].partition("\n## ")[0]
    assert section, "README.md has no Dependencies section"
    missing = {name for name in _declared() if f"`{name}`" not in section}
    assert missing == set(), f"README's Dependencies section does not mention {missing}"
