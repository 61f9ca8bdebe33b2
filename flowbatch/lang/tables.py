"""The grammar's LALR(1) tables, and the loop that runs them: the only module that
imports lark.

Lark compiles `flow.lark` (installed inside the package) to LALR(1) tables. Building
them takes about 50 ms and importing lark another 60, so the tables are kept as JSON in
the user's cache directory, under a hash of the grammar (and of this module, which names
the rules): an edited grammar gets new tables, and a start that finds its tables never
imports lark. JSON rather than lark's own cache, because that one is a pickle, which
runs code when loaded.

Why not `Lark.parse`: its loop and its tree-builder and transformer layers cost three
function calls per reduction, over a second of validating 100,000 jobs; `drive` is the
same algorithm on the same tables with one call per reduction. `tests/test_fuzz.py`
checks that it accepts exactly what lark's own loop accepts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterable
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple

from flowbatch.lang.lexer import Token

# Bump when the JSON's shape changes: old files are then ignored, not misread.
_FORMAT = "flowbatch-lalr-1"


class Reduce(NamedTuple):
    size: int  # how many values the rule pops
    rule: str | None  # the name its value is built by; None: a unit rule, its child's value
    origin: str  # the rule's own name, to look up the state to go to


class Tables(NamedTuple):
    # per state, per token kind: the state to shift to, or the rule to reduce by
    actions: list[dict[str, int | Reduce]]
    start: int
    end: int


class Linked(NamedTuple):
    """Tables whose rules are the functions that build their values."""

    # int, or (size, the builder's function for the rule or None, origin)
    actions: list[dict[str, Any]]
    start: int
    end: int


class Unexpected(Exception):
    """`token` cannot come here; `expected` are the token kinds that could."""

    def __init__(self, token: Token, expected: set[str]) -> None:
        super().__init__(token[0])
        self.token, self.expected = token, expected


END: Token = ("$END", "", 0, 0, 0, 0)


def drive(tables: Linked, stream: Iterable[Token], context: object) -> Any:
    """Parse the tokens; each reduction calls `make(context, children)`. Returns the
    start rule's value; raises Unexpected."""
    actions, end = tables.actions, tables.end
    states = [tables.start]
    values: list[Any] = []
    for token in chain(stream, (END,)):
        kind = token[0]
        while True:
            try:
                action = actions[states[-1]][kind]
            except KeyError:
                expected = {k for k in actions[states[-1]] if k.isupper()}
                raise Unexpected(token, expected) from None
            if action.__class__ is int:
                states.append(action)
                values.append(token)
                break
            size, make, origin = action
            if make is None:  # a unit rule (`?key: NAME`): its one value stays as it is
                del states[-1]
            else:
                if size:
                    children = values[-size:]
                    del states[-size:]
                    del values[-size:]
                else:
                    children = []
                values.append(make(context, children))
            states.append(actions[states[-1]][origin])
            if kind == "$END" and states[-1] == end:
                return values[-1]
    raise AssertionError("the token stream always ends with $END")


def link(tables: Tables, builder: type) -> Linked:
    """`tables` with each rule name replaced by the `builder` method of that name."""
    actions: list[dict[str, Any]] = []
    for row in tables.actions:
        linked: dict[str, Any] = {}
        for kind, action in row.items():
            if isinstance(action, Reduce):
                make = None if action.rule is None else getattr(builder, action.rule)
                linked[kind] = (action.size, make, action.origin)
            else:
                linked[kind] = action
        actions.append(linked)
    return Linked(actions, tables.start, tables.end)


def load(package: str, resource: str, builder: type) -> Tables:
    """The tables of the grammar `resource` in `package`, from the cache if it has them
    whole and every rule they name is a method of `builder`; built and cached if not.

    The cache file is named after the grammar and this module's own source (which
    names the rules), so another grammar or another flowbatch never reads it; inside,
    a digest of the tables catches a file damaged after it was written."""
    grammar = _read_resource(package, resource)
    key = hashlib.sha256(f"{_FORMAT}\n{grammar}\n{_own_source()}".encode()).hexdigest()[:20]
    directory = _cache_dir()
    path = directory / f"grammar-{key}.json" if directory else None
    if path is not None:
        try:
            tables = _decode(path.read_text(encoding="utf-8"))
            link(tables, builder)  # every rule it names exists
            return tables
        except (OSError, ValueError, LookupError, TypeError, AttributeError, RecursionError):
            pass  # missing or damaged: built again, and the file replaced
    tables = build(grammar)
    if path is not None:
        with contextlib.suppress(OSError):
            _write(path, _encode(tables))
    return tables


def _read_resource(package: str, resource: str) -> str:
    """The text of `resource` in `package`: read beside the package's own file where it
    is a plain directory (importlib.resources and the zipfile it imports cost a start
    ~2 ms), through importlib.resources where it is not (a zip)."""
    origin = getattr(sys.modules.get(package), "__file__", None)
    if origin is not None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            return Path(os.path.dirname(origin), resource).read_text(encoding="utf-8")
    from importlib import resources

    return resources.files(package).joinpath(resource).read_text(encoding="utf-8")


def _own_source() -> str:
    try:
        return Path(__file__).read_text(encoding="utf-8")
    except OSError:  # no source beside the bytecode: the format alone keys the cache
        return ""


# The lark versions `_from_lark` is known to read correctly; pyproject.toml pins the same
# range, and tests/test_lalr.py checks both.
LARK_VERSIONS = ">=1.1.9,<2"


class Terminal(NamedTuple):
    """One of the grammar's terminals, as lark compiled it."""

    name: str  # `NAME`, `LBRACE`; lark's own `__IGNORE_0` for an `%ignore`
    regexp: str  # for Python's `re`
    priority: int
    ignored: bool


class IncompatibleLark(RuntimeError):
    """The installed lark is not laid out as `_from_lark` reads it."""


def build(grammar: str) -> Tables:
    """Compile `grammar` with lark. The states' numbers may differ from one build to the
    next (lark numbers them in set order), the tables they make do not."""
    return _from_lark(grammar)[0]


def terminals(grammar: str) -> list[Terminal]:
    """The terminals of `grammar` as lark reads them: for the tests that hold the lexer
    to the grammar."""
    return _from_lark(grammar)[1]


def _from_lark(grammar: str) -> tuple[Tables, list[Terminal]]:
    """The one place that reads lark's internals (lark 1.1.9 to 1.3.1 checked; pinned
    `lark{LARK_VERSIONS}`). Everything else uses lark's public API or none of it.

    - the parse table: `Lark(...).parser.parser.parser.parse_table` (ParsingFrontend ->
      LALR_Parser -> _Parser), its `states` (state -> terminal -> (action, argument)),
      `start_states` and `end_states`, and `lark.parsers.lalr_analysis.Shift`;
    - each reduction's `Rule`: `origin.name`, `alias`, `expansion`, `options.expand1`,
      and the names lark gives its helper rules (`__NAME_star_N` for `(...)*`);
    - the terminals: `Lark.terminals` (`TerminalDef.name`, `.priority`,
      `.pattern.to_regexp()`) and `Lark.ignore_tokens`.

    A lark laid out otherwise raises IncompatibleLark, saying which versions work,
    rather than building wrong tables."""
    import lark
    from lark import Lark

    def rule_name(rule: Any) -> str | None:
        """The name a rule's value is built by: its alias (`-> string`), its own name, or a
        shared one for lark's helper rules; None for a unit rule like `?key: NAME`."""
        name = str(rule.origin.name)
        if rule.alias:
            return str(rule.alias)
        if name.startswith("__") and "_star_" in name:  # lark's expansion of `(...)*`
            return "star"
        if name in ("_sep", "_lsep"):
            return "separator"
        if rule.options.expand1 and len(rule.expansion) == 1:
            return None
        return name

    parser = Lark(grammar, parser="lalr", lexer="basic", maybe_placeholders=False)
    try:
        from lark.parsers.lalr_analysis import Shift

        table = parser.parser.parser.parser.parse_table
        actions: list[dict[str, int | Reduce]] = [{} for _ in range(len(table.states))]
        for state, row in table.states.items():
            for kind, (action, arg) in row.items():
                if action is Shift:
                    actions[state][str(kind)] = arg
                else:
                    origin = str(arg.origin.name)
                    size = len(arg.expansion)
                    actions[state][str(kind)] = Reduce(size, rule_name(arg), origin)
        tables = Tables(actions, table.start_states["start"], table.end_states["start"])
        ignored = set(parser.ignore_tokens)
        found = [
            Terminal(t.name, t.pattern.to_regexp(), t.priority, t.name in ignored)
            for t in parser.terminals
        ]
    except (ImportError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise IncompatibleLark(
            f"lark {lark.__version__} is installed; flowbatch reads its LALR tables and "
            f"needs lark{LARK_VERSIONS} ({type(exc).__name__}: {exc})"
        ) from exc
    return tables, found


def _encode(tables: Tables) -> str:
    body = {
        "start": tables.start,
        "end": tables.end,
        "actions": [
            {k: list(a) if isinstance(a, Reduce) else a for k, a in row.items()}
            for row in tables.actions
        ],
    }
    text = json.dumps(body, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f'{{"format": "{_FORMAT}", "sha256": "{digest}", "tables": {text}}}'


def _decode(text: str) -> Tables:
    """Raises ValueError, LookupError or TypeError for anything but whole tables."""
    data = json.loads(text)
    if data["format"] != _FORMAT:
        raise ValueError("another format")
    body = data["tables"]
    if hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest() != data["sha256"]:
        raise ValueError("damaged")
    rows = body["actions"]
    start, end = int(body["start"]), int(body["end"])
    actions: list[dict[str, int | Reduce]] = []
    for row in rows:
        decoded: dict[str, int | Reduce] = {}
        for kind, a in row.items():
            if isinstance(a, int):
                if not 0 <= a < len(rows):
                    raise ValueError("no such state")
                decoded[str(kind)] = a
            else:
                size, rule, origin = a
                decoded[str(kind)] = Reduce(
                    int(size), None if rule is None else str(rule), str(origin)
                )
        actions.append(decoded)
    if not (0 <= start < len(rows) and 0 <= end < len(rows)):
        raise ValueError("no such state")
    return Tables(actions, start, end)


def _cache_dir() -> Path | None:
    """This user's own cache directory: tables planted by someone else could make the
    parser accept what the grammar does not."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    directory = Path(base, "flowbatch")
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    return directory


def _write(path: Path, text: str) -> None:
    """Whole or not at all: two flowbatch processes may start at once."""
    import tempfile  # once per grammar: not on every start

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".grammar-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
