"""The grammar's LALR tables: built by lark once, then read from the user's cache as
JSON, so that a start with warm tables never imports lark; a damaged cache is rebuilt."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from flowbatch.lang import tables as lalr
from flowbatch.lang.parse import _Build

GRAMMAR = resources.files("flowbatch").joinpath("flow.lark").read_text(encoding="utf-8")


def canonical(tables: lalr.Tables) -> list[list[tuple[str, lalr.Reduce | int]]]:
    """The tables with states numbered in the order a walk from the start reaches them:
    lark numbers states differently from one build to the next."""
    number = {tables.start: 0}
    order = [tables.start]
    for state in order:
        for _, action in sorted(tables.actions[state].items()):
            if isinstance(action, int) and action not in number:
                number[action] = len(order)
                order.append(action)
    return [
        sorted(
            (kind, action if isinstance(action, lalr.Reduce) else number[action])
            for kind, action in tables.actions[state].items()
        )
        for state in order
    ] + [[("end", number[tables.end])]]


def test_canonical_tables_tell_grammars_apart() -> None:
    other = GRAMMAR.replace('parent: ":" NAME', 'parent: "<" NAME')
    assert canonical(lalr.build(GRAMMAR)) == canonical(lalr.build(GRAMMAR))
    assert canonical(lalr.build(other)) != canonical(lalr.build(GRAMMAR))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "flowbatch"


def test_tables_are_cached_as_json_and_read_back_equal(cache: Path) -> None:
    built = lalr.load("flowbatch", "flow.lark", _Build)
    (file,) = cache.glob("grammar-*.json")
    assert json.loads(file.read_text())["format"].startswith("flowbatch-lalr-")
    assert lalr.load("flowbatch", "flow.lark", _Build) == built
    assert canonical(built) == canonical(lalr.build(GRAMMAR))
    assert cache.stat().st_mode & 0o777 == 0o700


def _resealed(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with its digest made to match its tables again."""
    text = json.dumps(data["tables"], sort_keys=True)
    return {**data, "sha256": hashlib.sha256(text.encode()).hexdigest()}


def _truncated(text: str) -> str:
    return text[: len(text) // 2]


def _edited(text: str) -> str:
    data = json.loads(text)
    data["tables"]["start"] = 10**6
    return json.dumps(data)


def _unknown_rule(text: str) -> str:
    data = json.loads(text)
    for row in data["tables"]["actions"]:
        for action in row.values():
            if isinstance(action, list) and action[1]:
                action[1] = "no_such_rule"
    return json.dumps(_resealed(data))


def _wrong_shape(text: str) -> str:
    data = json.loads(text)
    data["tables"]["actions"] = {"0": {}}
    return json.dumps(_resealed(data))


def _deeply_nested(text: str) -> str:
    return "[" * 200_000  # json.loads raises RecursionError, not ValueError


@pytest.mark.parametrize(
    "damage", [_truncated, _edited, _unknown_rule, _wrong_shape, _deeply_nested]
)
def test_a_damaged_cache_is_rebuilt(cache: Path, damage: Callable[[str], str]) -> None:
    lalr.load("flowbatch", "flow.lark", _Build)
    (file,) = cache.glob("grammar-*.json")
    whole = file.read_text()
    file.write_text(damage(whole))
    tables = lalr.load("flowbatch", "flow.lark", _Build)
    assert canonical(tables) == canonical(lalr.build(GRAMMAR))
    assert file.read_text() != damage(whole)  # replaced by a whole file
    assert lalr.load("flowbatch", "flow.lark", _Build) == tables  # which is read back


def test_a_warm_start_never_imports_lark(tmp_path: Path) -> None:
    code = (
        "import sys, flowbatch.lang.parse as p; "
        "p.parse('job a {\\n  command = \"x\"\\n}\\n', 'x.flow'); "
        "print('lark' in sys.modules)"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    ]
    assert runs == ["True", "False"]  # the first start builds the tables with lark
