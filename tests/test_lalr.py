"""The grammar's LALR tables: built by lark once, then read from the user's cache as
JSON, so that a start with warm tables never imports lark; a damaged cache is rebuilt."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import lark
import lark.parsers.lalr_parser as lalr_parser
import pytest
from packaging.specifiers import SpecifierSet

from flowbatch.lang import lexer, syntax
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


def test_the_grammar_is_read_from_a_package_in_a_zip(tmp_path: Path) -> None:
    # Read beside the package's file where that is a directory; a zipped package (no
    # directory to read from) is read through importlib.resources.
    archive = tmp_path / "packed.zip"
    import zipfile

    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("zipped_grammar_pkg/__init__.py", "")
        z.writestr("zipped_grammar_pkg/g.lark", "start: NAME\n")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import zipped_grammar_pkg\n"
        "from flowbatch.lang import tables\n"
        "print(tables._read_resource('zipped_grammar_pkg', 'g.lark'), end='')\n"
        "print(tables._read_resource('flowbatch', 'flow.lark') == sys.argv[2], end='')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run(
        [sys.executable, "-c", code, str(archive), GRAMMAR],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout == "start: NAME\nTrue"


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


# -- the lexer is the grammar's: its patterns, its units, its keywords ---------------------


def _as_lark_writes_it(pattern: str) -> str:
    """One of the lexer's patterns in lark's notation: groups capture (the lexer's do not,
    for speed), and lark turns `\\n`, `\\t`, `\\f` and `\\r` into the characters."""
    chars = {"n": "\n", "t": "\t", "f": "\f", "r": "\r"}
    pattern = pattern.replace("(?:", "(")
    return re.sub(r"\\([\s\S])", lambda m: chars.get(m[1], m[0]), pattern)


def _literal_words(regexp: str) -> set[str]:
    """The words a keyword or punctuation terminal matches: a string is its escaped self,
    `"a" | "b"` becomes `(?:a|b)`, and a statement's keyword is a whole word (it may
    not go on as a name does)."""
    regexp = regexp.removesuffix(r"(?![A-Za-z0-9_\-])")
    m = re.fullmatch(r"\((?:\?:)?([a-z|]+)\)", regexp)
    return set(m[1].split("|")) if m else {re.sub(r"\\(.)", r"\1", regexp)}


def test_the_lexers_patterns_are_the_grammars() -> None:
    grammar = {t.name: t for t in lalr.terminals(GRAMMAR)}
    ignored = {t.regexp for t in grammar.values() if t.ignored}
    assert ignored == {_as_lark_writes_it(lexer.PATTERNS[k]) for k in ("WS", "CONTINUATION")}
    patterns = {k: p for k, p in lexer.PATTERNS.items() if k not in ("WS", "CONTINUATION")}
    for kind, pattern in patterns.items():
        assert grammar[kind].regexp == _as_lark_writes_it(pattern), kind
    # Every other terminal is written as strings; the lexer knows each word by its kind.
    words = {**lexer._PUNCT, **lexer._STATEMENT, **lexer._BOOLEANS}
    for name, terminal in grammar.items():
        if name in patterns or terminal.ignored:
            continue
        assert _literal_words(terminal.regexp) == {w for w, k in words.items() if k == name}
    assert set(words.values()) <= set(grammar)


def test_the_units_are_one_list() -> None:
    """A unit is added or removed in `lexer.SIZE_UNITS`/`DURATION_UNITS` and in the
    grammar, or this fails: the lexer, the values and the hints follow the list."""
    size = re.compile(next(t.regexp for t in lalr.terminals(GRAMMAR) if t.name == "SIZE"))
    duration = re.compile(next(t.regexp for t in lalr.terminals(GRAMMAR) if t.name == "DURATION"))
    for unit, mib in lexer.SIZE_UNITS.items():
        assert size.fullmatch(f"2{unit}") and syntax.size_mib(f"2{unit}") == 2 * mib
        assert not duration.fullmatch(f"2{unit}")
    for unit, seconds in lexer.DURATION_UNITS.items():
        assert duration.fullmatch(f"2{unit}") and syntax.duration_seconds(f"2{unit}") == 2 * seconds
        assert not size.fullmatch(f"2{unit}")
    assert syntax.SIZE_UNITS is lexer.SIZE_UNITS and syntax.DURATION_UNITS is lexer.DURATION_UNITS


# -- lark: the versions whose internals tables.py reads -------------------------------------


def test_lark_is_pinned_to_the_versions_tables_reads() -> None:
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    (pin,) = [d for d in project["project"]["dependencies"] if d.startswith("lark")]
    assert pin == f"lark{lalr.LARK_VERSIONS}"
    assert SpecifierSet(lalr.LARK_VERSIONS).contains(lark.__version__), (
        f"lark {lark.__version__} is outside {lalr.LARK_VERSIONS}: check tables._from_lark "
        "against it before widening the pin"
    )


def test_an_incompatible_lark_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lark whose internals moved is an error that names the versions that work, never
    tables built wrong."""
    # As if a lark release renamed the LALR parser's `parser` attribute.
    init = lalr_parser.LALR_Parser.__init__

    def renamed(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.inner = self.__dict__.pop("parser")

    monkeypatch.setattr(lalr_parser.LALR_Parser, "__init__", renamed)
    with pytest.raises(lalr.IncompatibleLark) as info:
        lalr.build(GRAMMAR)
    assert f"lark {lark.__version__} is installed" in str(info.value)
    assert lalr.LARK_VERSIONS in str(info.value)


def test_lark_is_read_in_one_function() -> None:
    """`_from_lark` is the one reader of lark's internals: no other function of tables.py
    (nor any other module, by pyproject's import contract) names lark."""
    source = Path(lalr.__file__).read_text(encoding="utf-8")
    tree = ast.parse(source)
    owner = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_from_lark")
    inside = set(range(owner.lineno, (owner.end_lineno or owner.lineno) + 1))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if any(n == "lark" or n.startswith("lark.") for n in names):
                assert node.lineno in inside, node.lineno
