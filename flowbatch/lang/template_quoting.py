"""Where a template's values land in the shell's syntax: `misplaced()` follows the text
Jinja will emit for a shell command through shell_quoting (each branch of an `{% if %}`,
each pass of a `{% for %}`, a `{% filter %}` or `{% call %}` block for what it is) and
returns the values that shell quoting cannot keep inert.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from flowbatch.lang.shell_quoting import ASQ, DQ, HINTS, PREV_KINDS, SQ, WHERE, Shell
from flowbatch.lang.template_text import Token, simple_parts, tokenize


@dataclass(frozen=True, slots=True)
class Misplaced:
    """A value (`{{ ... }}` or `Ref::name`) where shell quoting cannot protect it."""

    offset: int
    length: int
    text: str  # as the author wrote it
    where: str  # "inside single quotes"
    hint: str
    why: str = "where shell quoting cannot keep its value from being run as shell text"


_REF_QUOTES_HINT = (
    "placeholders are shell-quoted for you: end the quotes before `Ref::...` and reopen "
    'them after it (`"--name="Ref::name`)'
)

# flowbatch's own values are integers, names and ids, which quote to themselves: they
# are inert anywhere, and `echo "child {{ array.index }}"` is too common to refuse.
_PLAIN = re.compile(
    r"\{\{-?(?:\s|array\.index|array\.size|job\.attempt|job\.name|job\.id|\d|[-+*/%()])*-?\}\}"
)

_FILTER_HINT = (
    "a `{% filter %}` block runs on the command's text after values were quoted, and can "
    "undo their quotes: filter the value itself (`{{ params.x | upper }}`)"
)
_CALL_HINT = (
    "a `{% call %}` block inserts the macro's output as it is: write `{{ macro(...) }}`, "
    "which is quoted, or `{{ macro(...) | raw }}` when its output is shell text you wrote"
)
_BRANCH_HINT = (
    "end each branch of an `{% if %}` (and each pass of a `{% for %}`) with the quotes, "
    "`$(...)`, `${...}` and here-documents it opened closed, and keep `$(`, `((` and "
    "`<<WORD` in one piece of text"
)
_SPLIT = "after `$`, `(` or `<` that a `{% ... %}` tag splits from the text it belongs to"
_BLOCK_ENDS = {"macro": "endmacro", "call": "endcall", "set": "endset"}


def _agree(states: list[Shell]) -> bool:
    """Whether a value after any of `states` lands in the same place."""
    keys = {s.key()[:2] + s.key()[3:] for s in states}
    prevs = {PREV_KINDS.get(s.prev, "x") for s in states}
    return len(keys) == 1 and not ("$" in prevs and len(prevs) > 1)


class _Walk:
    """The quoting state followed through a template's tokens, each branch on its own."""

    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.found: dict[int, Misplaced] = {}
        self.filtered = 0  # inside how many `{% filter %}` blocks

    def walk(self, shell: Shell, i: int, enders: frozenset[str]) -> int:
        """Follow tokens from `i` to the first statement named in `enders` (its index)."""
        tokens = self.tokens
        while i < len(tokens):
            token = tokens[i]
            if token.kind == "data":
                if shell.joins(token.text):
                    shell.poison = shell.poison or (_SPLIT, _BRANCH_HINT)
                shell.feed(token.text)
                i += 1
            elif token.kind != "tag":
                shell.cut_off = ""
                shell.flush()
                self.value(shell, token)
                i += 1
            elif token.text in enders:
                return i
            else:
                i = self.statement(shell, i)
        return i

    def statement(self, shell: Shell, i: int) -> int:
        token = self.tokens[i]
        name = token.text
        if name == "if":
            return self.branches(shell, i)
        if name == "for":
            return self.loop(shell, i)
        if name == "filter":
            self.filtered += 1
            i = self.walk(shell, i + 1, frozenset({"endfilter"}))
            self.filtered -= 1
            return i + 1
        if name in ("macro", "call") or (name == "set" and token.raw):
            if name == "call":
                shell.flush()
                self.record(token, "inserted unquoted by `{% call %}`", _CALL_HINT)
            # A body whose output becomes a value: followed on its own, from the start.
            body = Shell(shell.ansi_c)
            return self.walk(body, i + 1, frozenset({_BLOCK_ENDS[name]})) + 1
        return i + 1  # renders nothing itself (`set`, `with`, `block`, an end tag...)

    def boundary(self, shell: Shell) -> None:
        """A control statement: text before it may not join the text after it."""
        shell.cut()

    def join(self, shell: Shell, ends: list[Shell], why: str) -> None:
        poison = next((s.poison for s in ends if s.poison), None)
        shell.assign(ends[0])
        if not _agree(ends):
            poison = poison or (why, _BRANCH_HINT)
        elif any(PREV_KINDS.get(s.prev) == " " for s in ends):
            shell.prev = " "  # a `#` next may start a comment
        shell.poison = poison

    def branches(self, shell: Shell, i: int) -> int:
        why = "after an `{% if %}` whose branches leave the shell's quoting in different states"
        self.boundary(shell)
        start = shell.copy()
        ends: list[Shell] = []
        otherwise = False
        branch = shell
        while True:
            i = self.walk(branch, i + 1, frozenset({"elif", "else", "endif"}))
            self.boundary(branch)
            ends.append(branch)
            if i >= len(self.tokens) or self.tokens[i].text == "endif":
                break
            otherwise = otherwise or self.tokens[i].text == "else"
            branch = start.copy()
        if not otherwise:
            ends.append(start)
        self.join(shell, [s.copy() for s in ends], why)
        return i + 1

    def loop(self, shell: Shell, i: int) -> int:
        why = "after a `{% for %}` whose body leaves the shell's quoting in a different state"
        self.boundary(shell)
        start = shell.copy()
        body = shell.copy()
        end = self.walk(body, i + 1, frozenset({"else", "endfor"}))
        self.boundary(body)
        if not _agree([start, body]):
            # The second pass starts where the first ended: its values are misplaced too.
            again = body.copy()
            again.poison = again.poison or (why, _BRANCH_HINT)
            self.walk(again, i + 1, frozenset({"else", "endfor"}))
        otherwise = start.copy()
        if end < len(self.tokens) and self.tokens[end].text == "else":
            end = self.walk(otherwise, end + 1, frozenset({"endfor"}))
            self.boundary(otherwise)
        self.join(shell, [body, otherwise], why)
        return end + 1

    def value(self, shell: Shell, token: Token) -> None:
        where = shell.where()
        if shell.escaped:
            why, hint = "right after a backslash", "remove the backslash"
        elif where is None and shell.prev == "$":
            why, hint = "right after `$`", "remove the `$`, or put the value in a variable"
        elif where is not None:
            why, hint = WHERE[where], HINTS[where]
            if where in (SQ, DQ, ASQ) and token.kind == "ref":
                hint = _REF_QUOTES_HINT
        elif self.filtered:
            why, hint = "inside a `{% filter %}` block", _FILTER_HINT
        elif shell.poison is not None:
            why, hint = shell.poison
        else:
            why = hint = ""
        if why and not token.raw and not _PLAIN.fullmatch(self.text, token.start, token.end):
            self.record(token, why, hint)
        shell.escaped = False
        shell.after_value()

    def record(self, token: Token, why: str, hint: str) -> None:
        if token.start not in self.found:
            text = self.text[token.start : token.end]
            self.found[token.start] = Misplaced(token.start, len(text), text, why, hint)


@functools.lru_cache(maxsize=16384)
def misplaced(text: str) -> tuple[Misplaced, ...]:
    """The values in shell command `text` that quoting cannot make inert."""
    if "{{" not in text and "Ref::" not in text:
        return ()
    tokens = tokenize(text, jinja=simple_parts(text) is None)
    found: dict[int, Misplaced] = {}
    # dash reads `$'...'` as `$` and a single-quoted string, bash as one string in which
    # `\'` is a quote: a value must be inert under both.
    for ansi_c in (False, True) if "$'" in text else (False,):
        walk = _Walk(text, tokens)
        try:
            walk.walk(Shell(ansi_c), 0, frozenset())
        except RecursionError:
            return ()  # nested past what Jinja compiles: that is the error to report
        found = {**walk.found, **found}
    return tuple(found[k] for k in sorted(found))


# -- List commands that hold code ------------------------------------------------------
#
# A list command runs without a shell, so its values are inserted as they are; but
# `["sh", "-c", "echo {{ params.x }}"]` hands one element to a shell after all, and
# `["python3", "-c", "print('{{ params.x }}')"]` hands one to Python. The shell's
# script is rendered like a string command (values quoted, the same check); a value in
# another interpreter's program is refused, since nothing can quote it for every language.

_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "yash", "posh"})
_CODE_FLAGS = {
    "python": ("-c",),
    "pypy": ("-c",),
    "perl": ("-e", "-E"),
    "ruby": ("-e",),
    "node": ("-e", "--eval", "-p", "--print"),
    "Rscript": ("-e",),
    "php": ("-r",),
}
_VERSION = re.compile(r"[\d.]+$")  # python3.11 -> python


def script_index(command: tuple[str, ...]) -> int | None:
    """The element of list command `command` that a shell runs as its script
    (`["sh", "-c", SCRIPT]`, `["bash", "-euc", SCRIPT, "name", ...]`), if any.

    The shell is looked for anywhere in the command, not only at its head: behind
    `env`, `nice`, `nohup`, `timeout 60`, `flock FILE`, `xargs`, `find ... -exec`, sudo
    or any wrapper of one's own, a shell still runs its script, and a value must not
    become its syntax. (An argument that only looks like `sh -c X` to a program that is
    no wrapper gets its values quoted as if it were a script: safe, if surprising.)"""
    for k in range(len(command)):
        if command[k].rsplit("/", 1)[-1] in _SHELLS:
            found = _script_after(command, k)
            if found is not None:
                return found
    return None


def _script_after(command: tuple[str, ...], i: int) -> int | None:
    """Where the script of the shell at `command[i]` is, if it is given one (`-c`)."""
    script = False  # seen `-c` (alone or in a cluster like `-ec`)
    j = i + 1
    while j < len(command):
        arg = command[j]
        if arg == "--":
            return j + 1 if script and j + 1 < len(command) else None
        if len(arg) > 1 and arg[0] in "-+":
            if arg in ("-o", "+o", "-O", "+O"):  # an option that takes an argument
                j += 2
                continue
            script = script or (arg[0] == "-" and not arg.startswith("--") and "c" in arg[1:])
            j += 1
            continue
        return j if script else None
    return None


def program_index(command: tuple[str, ...]) -> tuple[int, str] | None:
    """The element of list command `command` that an interpreter runs as its program
    (`["python3", "-c", PROGRAM]`), and how it was named (`python3 -c`); looked for
    anywhere in the command, as `script_index` looks for a shell."""
    for i in range(len(command)):
        name = command[i].rsplit("/", 1)[-1]
        flags = _CODE_FLAGS.get(_VERSION.sub("", name))
        if flags is None:
            continue
        for j in range(i + 1, len(command) - 1):
            if command[j] in flags:
                return j + 1, f"{name} {command[j]}"
            if not command[j].startswith("-"):
                break  # a script file: what follows is its arguments
    return None


def values_in_program(text: str, program: str) -> tuple[Misplaced, ...]:
    """The values in `text`, the program of `program` (`python3 -c`), that are not
    flowbatch's own integers and names: inserted as they are, they would be code."""
    hint = (
        "pass the value to the program as an argument after it, and read it there "
        '(`["python3", "-c", "import sys; print(sys.argv[1])", "{{ params.x }}"]`)'
    )
    found = []
    for token in tokenize(text, jinja=simple_parts(text) is None):
        if token.kind == "tag" or token.kind == "data" or token.raw:
            continue
        if _PLAIN.fullmatch(text, token.start, token.end):
            continue
        piece = text[token.start : token.end]
        where = f"inside the program of `{program}`"
        why = "where it would be run as code: nothing can quote it for every language"
        found.append(Misplaced(token.start, len(piece), piece, where, hint, why))
    return tuple(found)
