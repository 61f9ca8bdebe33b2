"""The public API of the package and the packaging of the installed wheel."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import os
from pathlib import Path

import pytest

import flowbatch

PUBLIC = ["FlowError", "Kind", "Plan", "load", "load_text", "run_plan"]
REPO = Path(__file__).resolve().parent.parent


def test_all_is_pinned() -> None:
    assert flowbatch.__all__ == PUBLIC


@pytest.mark.parametrize("name", PUBLIC)
def test_each_public_name_imports(name: str) -> None:
    obj = getattr(flowbatch, name)
    assert obj.__name__ == name
    # Defined in a flowbatch module and re-exported as is, not a copy or a wrapper.
    home = importlib.import_module(obj.__module__)
    assert home.__name__.startswith("flowbatch.")
    assert getattr(home, name) is obj


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        flowbatch.no_such_name  # noqa: B018


def test_grammar_ships_in_the_package() -> None:
    # The grammar must be inside the package as installed, where parse loads it from.
    grammar = importlib.resources.files("flowbatch").joinpath("flow.lark")
    assert grammar.is_file()
    assert grammar.read_text(encoding="utf-8") == (REPO / "grammar" / "flow.lark").read_text(
        encoding="utf-8"
    )


def test_console_script_points_at_the_cli() -> None:
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="flowbatch")
    assert script.value == "flowbatch.cli:main"
    assert callable(script.load())


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="CI installs a wheel; dev runs may not")
def test_ci_imports_the_installed_wheel_not_the_checkout() -> None:
    path = Path(flowbatch.__file__).resolve()
    assert "site-packages" in path.parts, f"flowbatch imported from {path}"
    assert REPO / "flowbatch" not in path.parents, f"flowbatch imported from {path}"
