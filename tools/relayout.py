"""Rewrite references to flowbatch's old flat module names into the package layout.

Issue 10 moved the 40 flat modules of `flowbatch/` into packages (`lang/`, `run/`,
`store/`, `outputs/`). Branches written against the flat layout still name the old
modules; this script rewrites their references, so a merge is: merge, run this, check.

    python tools/relayout.py [--check] PATH...      # files or directories (recursed)
    python tools/relayout.py --move                 # git mv the old files (run once, at the root)

With no PATH it rewrites flowbatch/ tests/ bench/ ci/ docs/ tools/ README.md
CONTRIBUTING.md pyproject.toml. It is idempotent: a file that already uses the new names
is left as it is, so it is safe to run twice, and on merged code that mixes both.

What it rewrites (OLD is a key of MOVES, NEW its value):
  - `import OLD [as x]`, `import OLD.y`, and dotted `OLD.attr` anywhere (strings too:
    monkeypatch targets, mock paths, `python -m OLD`, import-linter module names);
  - `from OLD import names` -> `from NEW import names`;
  - `from flowbatch import old_leaf [as x]` (a module import) ->
    `from NEW_PARENT import new_leaf as x`, keeping the name the code uses;
  - paths `flowbatch/old.py` -> `flowbatch/new/path.py` (docs, comments).

The one ambiguity: `flowbatch.run` and `flowbatch.store` were modules and are now
packages. A dotted `flowbatch.run.X` is read as new when X is a module of the new package
(`flowbatch.run.state`), else as the old module (`flowbatch.run.run_plan` ->
`flowbatch.run.runner.run_plan`). The bare name `flowbatch.run` / `flowbatch.store` is
rewritten only in an import (`import flowbatch.run`, `from flowbatch.run import run_plan`);
elsewhere (prose, pyproject's `containers = ["flowbatch.run"]`) it is the package.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

# Old dotted module -> new dotted module. The table of the move (issue 10).
MOVES: dict[str, str] = {
    "flowbatch.shell_quoting": "flowbatch.lang.shell_quoting",
    # lang: the pure front half, text -> Plan
    "flowbatch.diagnostics": "flowbatch.lang.diagnostics",
    "flowbatch.syntax": "flowbatch.lang.syntax",
    "flowbatch.lexer": "flowbatch.lang.lexer",
    "flowbatch.lalr": "flowbatch.lang.tables",
    "flowbatch.parse": "flowbatch.lang.parse",
    "flowbatch.parse_errors": "flowbatch.lang.parse_errors",
    "flowbatch.values": "flowbatch.lang.values",
    "flowbatch.analyze": "flowbatch.lang.analyze",
    "flowbatch.jobs": "flowbatch.lang.jobs",
    "flowbatch.computes": "flowbatch.lang.computes",
    "flowbatch.retries": "flowbatch.lang.retries",
    "flowbatch.dependencies": "flowbatch.lang.dependencies",
    "flowbatch.template": "flowbatch.lang.template",
    "flowbatch.model": "flowbatch.lang.model",
    "flowbatch.compile": "flowbatch.lang.compile",
    "flowbatch.front": "flowbatch.lang.load",
    # run: the scheduler and the async runner
    "flowbatch.state": "flowbatch.run.state",
    "flowbatch.schedule": "flowbatch.run.frontier",  # with cascade: one Frontier
    "flowbatch.cascade": "flowbatch.run.frontier",
    "flowbatch.placement": "flowbatch.run.placement",
    "flowbatch.hosts": "flowbatch.run.hosts",
    "flowbatch.run": "flowbatch.run.runner",
    "flowbatch.run_setup": "flowbatch.run.setup",
    "flowbatch.run_signals": "flowbatch.run.signals",
    "flowbatch.resume": "flowbatch.run.resume",
    "flowbatch.fingerprint": "flowbatch.run.fingerprint",
    # executors: processes is imported by executors.local, which run imports (below run)
    "flowbatch.processes": "flowbatch.executors.processes",
    # store: the SQLite job records
    "flowbatch.store": "flowbatch.store.jobstore",
    "flowbatch.store_schema": "flowbatch.store.schema",
    "flowbatch.store_rows": "flowbatch.store.rows",
    "flowbatch.store_views": "flowbatch.store.views",
    "flowbatch.store_lost": "flowbatch.store.lost",
    # outputs: what a Plan or a run is shown as
    "flowbatch.render": "flowbatch.outputs.graph",
    "flowbatch.render_dot": "flowbatch.outputs.dot",
    "flowbatch.render_mermaid": "flowbatch.outputs.mermaid",
    "flowbatch.report": "flowbatch.outputs.progress",
    "flowbatch.report_data": "flowbatch.outputs.report.data",
    "flowbatch.report_html": "flowbatch.outputs.report.html",
    "flowbatch.report_timeline": "flowbatch.outputs.report.timeline",
    "flowbatch.junit": "flowbatch.outputs.junit",
    "flowbatch.summary": "flowbatch.outputs.step_summary",
    "flowbatch.jobview": "flowbatch.outputs.jobview",
    # cli: `validate` was in cli/front.py
    "flowbatch.cli.front": "flowbatch.cli.validate",
}

# Families: a flat module that another branch adds after the move (`template_filters.py`,
# `store_records.py`) goes where its prefix says. Applied to the flat modules found in
# flowbatch/ when the script runs (see _discover), never to names that are not files.
FAMILIES: list[tuple[str, str]] = [
    ("template_", "flowbatch.lang.template_"),
    ("parse_", "flowbatch.lang.parse_"),
    ("store_", "flowbatch.store."),
    ("render_", "flowbatch.outputs."),
    ("report_", "flowbatch.outputs.report."),
]


def _discover(root: Path = Path("flowbatch")) -> None:
    """Add to MOVES the flat modules of `root` that a family claims; warn of the others."""
    for f in sorted(root.glob("*.py")) if root.is_dir() else []:
        old = f"flowbatch.{f.stem}"
        if f.stem in ("__init__", "__main__") or old in MOVES:
            continue
        for prefix, target in FAMILIES:
            if f.stem.startswith(prefix):
                MOVES[old] = target + f.stem[len(prefix) :]
                break
        else:
            print(f"relayout: {f} is not in MOVES: place it by hand", file=sys.stderr)


_discover()

# Old modules whose name is now a package: children of the new package are new names.
_AMBIGUOUS = {old: old for old in MOVES if any(n.startswith(old + ".") for n in MOVES.values())}
_CHILDREN = {
    pkg: {n[len(pkg) + 1 :].split(".")[0] for n in MOVES.values() if n.startswith(pkg + ".")}
    for pkg in _AMBIGUOUS
}
NEW_MODULES = set(MOVES.values())

_OLD_ALT = "|".join(re.escape(o) for o in sorted(MOVES, key=len, reverse=True))
# A dotted old name, not inside a longer name (`flowbatch.run_setup`, `x.flowbatch.run`).
_DOTTED = re.compile(rf"(?<![\w.])({_OLD_ALT})(?![\w])((?:\.\w+)*)")
_FROM = re.compile(
    r"^(?P<indent>[ \t]*)from[ \t]+(?P<mod>flowbatch(?:\.\w+)*)[ \t]+import[ \t]+"
    r"(?P<names>\([\w\s,]*\)|[\w \t,]*?)(?P<tail>[ \t]*(?:#[^\n]*)?)$",
    re.MULTILINE,
)
_PATH_OLD = {o.replace(".", "/") + ".py": n.replace(".", "/") + ".py" for o, n in MOVES.items()}
_PATH = re.compile(
    r"(?<![\w/])(" + "|".join(re.escape(p) for p in sorted(_PATH_OLD, key=len, reverse=True)) + r")"
)


def _is_new(dotted: str) -> bool:
    """Whether a dotted name (maybe with attributes after it) already names a new module."""
    return any(dotted == n or dotted.startswith(n + ".") for n in NEW_MODULES) or any(
        dotted.startswith(pkg + ".") and dotted[len(pkg) + 1 :].split(".")[0] in kids
        for pkg, kids in _CHILDREN.items()
    )


def _new_module(mod: str) -> str:
    """`mod` (a module, no attributes) in the new layout."""
    return mod if _is_new(mod) else MOVES.get(mod, mod)


def _rewrite_from(m: re.Match[str]) -> str:
    mod, raw = m["mod"], m["names"]
    names = [n.strip() for n in raw.strip("()").replace("\\\n", " ").split(",") if n.strip()]
    parsed = []
    for n in names:
        parts = n.split()
        parsed.append((parts[0], parts[2] if len(parts) == 3 and parts[1] == "as" else None))
    modules: list[tuple[str, str, str | None]] = []  # (package, leaf, alias)
    attrs: list[tuple[str, str | None]] = []
    kept: list[tuple[str, str | None]] = []  # new already (`from flowbatch.run import state`)
    for name, alias in parsed:
        full = f"{mod}.{name}"
        if _is_new(full) and full not in MOVES:
            kept.append((name, alias))
        elif full in MOVES:
            new = MOVES[full]
            parent, _, leaf = new.rpartition(".")
            modules.append((parent, leaf, alias or (name if leaf != name else None)))
        else:
            attrs.append((name, alias))
    new_mod = _new_module(mod)
    if not modules and (new_mod == mod or not attrs):
        return m.group(0)

    def one(src: str, items: list[tuple[str, str | None]]) -> str:
        text = ", ".join(n if a is None or a == n else f"{n} as {a}" for n, a in items)
        return f"{m['indent']}from {src} import {text}"

    out = []
    if kept:
        out.append(one(mod, kept))
    if attrs:
        out.append(one(new_mod, attrs) + m["tail"])
    for parent, leaf, alias in modules:
        out.append(one(parent, [(leaf, alias)]))
    if m["tail"] and not out[0].endswith(m["tail"]):
        out[0] += m["tail"]
    return "\n".join(out)


def _rewrite_dotted(m: re.Match[str]) -> str:
    old, rest = m.group(1), m.group(2)
    whole = old + rest
    if _is_new(whole):
        return whole
    if old in _AMBIGUOUS and not rest:
        # The bare package name: an old module only where something imports it.
        line_start = m.string.rfind("\n", 0, m.start()) + 1
        before = m.string[line_start : m.start()]
        if re.fullmatch(r"[ \t]*from[ \t]+", before):
            return whole  # a from-statement: _rewrite_from has decided it
        if not re.search(r"\b(import|from)\s+$", before):
            return whole
    return MOVES[old] + rest


# References the patterns above cannot see: cli/__init__ names its command modules bare.
LITERALS: list[tuple[str, str]] = [('"validate": "front",', '"validate": "validate",')]


def rewrite(text: str) -> str:
    for old, new in LITERALS:
        text = text.replace(old, new)
    text = _FROM.sub(_rewrite_from, text)
    text = _DOTTED.sub(_rewrite_dotted, text)
    return _PATH.sub(lambda m: _PATH_OLD[m.group(1)], text)


DEFAULT_PATHS = [
    "flowbatch",
    "tests",
    "bench",
    "ci",
    "docs",
    "tools",
    "README.md",
    "CONTRIBUTING.md",
    "pyproject.toml",
]
SUFFIXES = {".py", ".md", ".toml", ".sh", ".txt", ".cfg", ".ini", ".yml", ".yaml", ".flow"}


def _files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(
                f
                for f in p.rglob("*")
                if f.is_file() and f.suffix in SUFFIXES and "__pycache__" not in f.parts
            )
        elif p.is_file():
            out.append(p)
    # This file names every old module on purpose.
    return [f for f in out if f.resolve() != Path(__file__).resolve()]


def move() -> None:
    """`git mv` each old module file to its new place (run once, from the repo root)."""
    for old, new in MOVES.items():
        src, dst = Path(old.replace(".", "/") + ".py"), Path(new.replace(".", "/") + ".py")
        if src.exists() and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "mv", str(src), str(dst)], check=True)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", help="files or directories (default: the repo's)")
    ap.add_argument("--check", action="store_true", help="only list files that would change")
    ap.add_argument("--move", action="store_true", help="git mv old module files first")
    args = ap.parse_args(argv)
    if args.move:
        move()
    changed = []
    for f in _files(args.paths or [p for p in DEFAULT_PATHS if Path(p).exists()]):
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        new = rewrite(text)
        if new != text:
            changed.append(f)
            if not args.check:
                f.write_text(new, encoding="utf-8")
    for f in changed:
        print(f)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
