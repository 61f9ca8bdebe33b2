"""Command templates: Jinja2 in a sandbox, undefined names an error, values shell-quoted.

A `command` string is rendered once per job or array child. Every value a template
inserts into a shell command is quoted with `shlex.quote` unless the template says
`| raw`, so a parameter holding `a b; rm -rf ~` stays one harmless argument. A command
given as a list runs without a shell, so its elements are not quoted.

`Ref::name` placeholders (AWS Batch job-definition parameters) are found in the author's
text only (never in a value a template inserted) and filled in the same pass as the
template's values, quoted like them: a value that spells `Ref::x` stays that text.

Quoting protects a value only where the shell reads it as a word: `misplaced()` finds
the values an author put inside shell quotes, backticks, comments or here-documents,
where a quoted value would be shell text again.

A render has a budget (`MAX_*` below): a template that would loop, recurse or build
values without end fails with a TemplateError instead of taking the machine.

Compiled templates are cached by their text: a pipeline of 10,000 jobs made from one
definition compiles its command once. Jinja is imported only when a command uses it.
"""

from __future__ import annotations

import contextvars
import functools
import re
import shlex
import string
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2
    from jinja2 import nodes

REF = re.compile(r"Ref::([A-Za-z_][A-Za-z0-9_\-]*)")

# The render budget. A command is one argument of `sh -c`, which Linux caps at 128 KiB,
# so these leave room for any real command and none for a runaway one.
MAX_OUTPUT = 1 << 20  # characters a command renders to
MAX_VALUE = 1 << 20  # characters (roughly, of its text) in any one value a template builds
MAX_WORK = 16 << 20  # characters built or copied in all, over one render
MAX_STEPS = 200_000  # loop iterations and calls, over one render
MAX_DEPTH = 50  # calls inside calls: a macro that calls itself
MAX_INT_BITS = 16_384  # about 4,900 digits


class TemplateError(Exception):
    """A template that does not compile or render. `line` counts within the template;
    `offset` and `length`, when known, place the problem within the template's text."""

    def __init__(
        self,
        message: str,
        line: int | None = None,
        name: str | None = None,
        *,
        offset: int | None = None,
        length: int = 0,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.name = name  # the undefined name, when that is the problem
        self.offset = offset
        self.length = length
        self.hint = hint


_BUDGET_HINT = (
    f"a template renders within a budget: values of up to {MAX_VALUE:,} characters, "
    f"{MAX_STEPS:,} loop iterations and calls, calls {MAX_DEPTH} deep, integers of "
    f"{MAX_INT_BITS:,} bits (see `Templates` in docs/language.md)"
)


def _over_budget(message: str) -> TemplateError:
    return TemplateError(message, hint=_BUDGET_HINT)


class Raw(str):
    """A string the template author asked to insert unquoted (`| raw`)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Context:
    """What a template can see: `params`, `array`, `job`."""

    params: Mapping[str, object]
    job_name: str
    job_id: str = "JOB_ID"
    attempt: int = 1
    index: int | None = None
    size: int | None = None

    def names(self) -> dict[str, Mapping[str, object]]:
        """Each namespace's values; a single job has no `array.*`."""
        array = {} if self.index is None else {"index": self.index, "size": self.size}
        job = {"name": self.job_name, "id": self.job_id, "attempt": self.attempt}
        return {"params": self.params, "array": array, "job": job}

    def as_dict(self) -> dict[str, object]:
        return {
            "params": _Namespace("params", self.params),
            # A single job has no `array.*`: using it there is an undefined name.
            "array": _Namespace(
                "array", {} if self.index is None else {"index": self.index, "size": self.size}
            ),
            "job": _Namespace(
                "job", {"name": self.job_name, "id": self.job_id, "attempt": self.attempt}
            ),
        }


class _Namespace(dict[str, object]):
    """A mapping whose keys read as attributes (`params.frames`); a missing one is undefined."""

    __slots__ = ("label",)

    def __init__(self, label: str, items: Mapping[str, object]) -> None:
        super().__init__(items)
        self.label = label


def uses_jinja(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


def render(text: str, ctx: Context, *, shell: bool, parameters: Mapping[str, str]) -> str:
    """`text` rendered for one job or array child; raises TemplateError."""
    if not uses_jinja(text) and "Ref::" not in text:
        out = text
    else:
        parts = _simple_parts(text)
        out = (
            _render_jinja(text, ctx, shell, parameters)
            if parts is None
            else _render_simple(parts, ctx, shell, parameters)
        )
    if "\0" in out:
        # No program can receive it: exec refuses an argument with a NUL in it.
        raise TemplateError("the command holds a NUL character, which no program can receive")
    if len(out) > MAX_OUTPUT:
        raise _over_budget(f"the command renders to more than {MAX_OUTPUT:,} characters")
    return out


# Most commands only insert values: `render {{ array.index }} --q {{ params.quality }}`.
# Those are rendered here, with Jinja's exact meaning (str() of the value, shell-quoted
# unless `| raw`, an unknown name an error), without compiling a Jinja template: a
# compile costs ~0.7 ms, which is 7 s for a generated pipeline of 10,000 jobs whose
# commands all differ. Anything else (filters, expressions, control flow) goes to Jinja.
_SIMPLE = re.compile(r"\{\{-?\s*(params|array|job)\.([A-Za-z_]\w*)\s*(\|\s*raw\s*)?-?\}\}")
# A literal piece of the author's text, a value (namespace, name, raw), or a `Ref::`
# placeholder ("Ref", name, False).
_Part = str | tuple[str, str, bool]


@functools.lru_cache(maxsize=16384)
def _simple_parts(text: str) -> tuple[_Part, ...] | None:
    if "{%" in text or "{#" in text or "{{-" in text or "-}}" in text:
        return None
    parts: list[_Part] = []
    pos = 0
    if "{{" in text:
        for m in _SIMPLE.finditer(text):
            parts += [text[pos : m.start()], (m.group(1), m.group(2), m.group(3) is not None)]
            pos = m.end()
    parts.append(text[pos:])
    if "{{" in text and any(isinstance(p, str) and ("{{" in p or "}}" in p) for p in parts):
        return None  # an expression this fast path does not read
    if "Ref::" not in text:
        return tuple(parts)
    # Placeholders are looked for in the author's literal pieces only, once.
    split: list[_Part] = []
    for part in parts:
        if not isinstance(part, str):
            split.append(part)
            continue
        pos = 0
        for m in REF.finditer(part):
            split += [part[pos : m.start()], ("Ref", m.group(1), False)]
            pos = m.end()
        split.append(part[pos:])
    return tuple(split)


def _render_simple(
    parts: tuple[_Part, ...], ctx: Context, shell: bool, parameters: Mapping[str, str]
) -> str:
    names = ctx.names()
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        space, attr, raw = part
        if space == "Ref":
            text = _ref_value(parameters, attr)
        else:
            values = names[space]
            if attr not in values:
                raise TemplateError(f"`{space}.{attr}` is undefined", name=f"{space}.{attr}")
            text = str(values[attr])
        out.append(text if raw or not shell else shlex.quote(text))
    return "".join(out)


def _ref_value(parameters: Mapping[str, str], name: str) -> str:
    if name not in parameters:
        raise TemplateError(f"unresolved placeholder `Ref::{name}`", name=f"Ref::{name}")
    return parameters[name]


def _render_jinja(
    text: str, ctx: Context, shell: bool, parameters: Mapping[str, str] | None = None
) -> str:
    jinja2 = _jinja()
    template = _compile(text, shell)
    refs = parameters or {}
    names = ctx.as_dict()
    names["_fb_ref"] = lambda name: _ref_value(refs, name)
    token = _BUDGET.set(_Budget())
    try:
        out: list[str] = []
        size = 0
        for piece in template.generate(names):
            size += len(piece)
            if size > MAX_OUTPUT:
                raise _over_budget(f"the command renders to more than {MAX_OUTPUT:,} characters")
            out.append(piece)
        return "".join(out)
    except jinja2.UndefinedError as exc:
        message = str(exc).replace("'", "`")
        raise TemplateError(message, name=_undefined_name(str(exc))) from None
    except jinja2.TemplateError as exc:
        raise TemplateError(str(exc)) from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateError(f"template failed: {exc}") from None
    except RecursionError:
        raise _over_budget(
            "template nests too deeply (a macro or a recursive loop that calls itself?)"
        ) from None
    except MemoryError:
        raise TemplateError("template needs more memory than there is") from None
    finally:
        _BUDGET.reset(token)


def render_command(
    command: str | tuple[str, ...], ctx: Context, parameters: Mapping[str, str]
) -> str | tuple[str, ...]:
    """A job's command rendered: a str for /bin/sh -c, or a tuple of arguments."""
    if isinstance(command, str):
        return render(command, ctx, shell=True, parameters=parameters)
    return tuple(render(part, ctx, shell=False, parameters=parameters) for part in command)


def check(text: str, ctx: Context, *, shell: bool, parameters: Mapping[str, str]) -> None:
    """Compile and render `text` once with a representative context, so that syntax
    errors, undefined names and templates over budget are found before anything runs;
    raises TemplateError."""
    if "\0" in text:
        raise TemplateError(
            "the command holds a NUL character, which no program can receive",
            offset=text.index("\0"),
            length=1,
        )
    if uses_jinja(text) or "Ref::" in text:
        render(text, ctx, shell=shell, parameters=parameters)


def unresolved_refs(text: str, parameters: Mapping[str, str]) -> list[str]:
    return [m.group(1) for m in REF.finditer(text) if m.group(1) not in parameters]


# -- Where a value lands in the shell's syntax -----------------------------------------
#
# `shlex.quote` makes a value one shell word. Inside the author's own quotes that word's
# quotes are the author's quotes turned inside out: `echo '{{ x }}'` with x = `a; b`
# renders `echo ''"'"'a; b'"'"''`... and `echo '{{ x }}'` with x = `'; rm -rf ~; '` runs
# `rm`. The same holds in backticks (a backtick ends them whatever the quotes), in a
# comment (a line break in the value ends it), in a here-document (quotes are text
# there, `$(...)` is not), in `${...}` and `$((...))`. `$(...)` is a fresh shell
# context: a value there is one word again. This scanner follows POSIX sh's quoting over
# the author's literal text, skipping Jinja tags. It is conservative where sh is hard to
# read without parsing it: a `case` pattern's `)` inside `$(...)` ends the `$(` for it,
# and a here-document's delimiter that is itself a template value runs to the end.


@dataclass(frozen=True, slots=True)
class Misplaced:
    """A value (`{{ ... }}` or `Ref::name`) where shell quoting cannot protect it."""

    offset: int
    length: int
    text: str  # as the author wrote it
    where: str  # "inside single quotes"
    hint: str


_SH, _SUB, _SQ, _DQ, _BQ, _PARAM, _ARITH, _APAREN, _COMMENT, _HEREDOC = range(10)
_WHERE = {
    _SQ: "inside single quotes",
    _DQ: "inside double quotes",
    _BQ: "inside backticks",
    _PARAM: "inside `${...}`",
    _ARITH: "inside `$((...))`",
    _APAREN: "inside `$((...))`",
    _COMMENT: "inside a shell comment",
    _HEREDOC: "inside a here-document",
}
_QUOTES_HINT = (
    "values are shell-quoted for you: end the quotes before the value and reopen them "
    'after it (`"$HOME/"{{ params.dir }}"/out"`); a value written `| raw` is inserted '
    "as it is, and quoting it is then up to you"
)
_REF_QUOTES_HINT = (
    "placeholders are shell-quoted for you: end the quotes before `Ref::...` and reopen "
    'them after it (`"--name="Ref::name`)'
)
_HINTS = {
    _SQ: _QUOTES_HINT,
    _DQ: _QUOTES_HINT,
    _BQ: "write `$(...)` instead of backticks: a value inside `$(...)` stays one argument",
    _PARAM: 'put the value in a variable first: `v={{ params.x }}; echo "${v:-none}"`',
    _ARITH: "put the value in a variable first: `n={{ params.n }}; echo $((n + 1))`",
    _APAREN: "put the value in a variable first: `n={{ params.n }}; echo $((n + 1))`",
    _COMMENT: "a line break in the value would end the comment and run the rest: "
    "take the value out of the comment",
    _HEREDOC: "quotes are plain text in a here-document: pass the value as an argument "
    "or set a variable before it (`v={{ params.x }}`) and use `$v` in the document",
}
_SPECIAL = {
    _SH: re.compile(r"[\\'\"`$()#<\n]"),
    _SUB: re.compile(r"[\\'\"`$()#<\n]"),
    _SQ: re.compile(r"'"),
    _DQ: re.compile(r"[\\\"`$]"),
    _BQ: re.compile(r"[\\`]"),
    _PARAM: re.compile(r"[\\'\"`$}]"),
    _ARITH: re.compile(r"[\\'\"`$()]"),
    _APAREN: re.compile(r"[\\'\"`$()]"),
    _COMMENT: re.compile(r"\n"),
}
_WORD_BREAK = frozenset(" \t\n;&|()")
_DELIMITER = re.compile(r"[ \t]*(?:'([^'\n]*)'|\"([^\"\n]*)\"|\\?([^\s;&|<>()'\"]+))")


class _Shell:
    """The quoting state of POSIX sh after the text fed so far."""

    def __init__(self) -> None:
        self.stack = [_SH]
        self.escaped = False  # the last character was an unquoted backslash
        self.prev = "\n"  # the last character, for `#` at a word's start and `$`
        self.pending: list[tuple[str | None, bool]] = []  # here-documents to come
        self.heredoc: tuple[str | None, bool] | None = None
        self.line = ""  # the here-document's line so far

    def where(self) -> int | None:
        """Why a value here would not be one inert word; None when it would."""
        if _BQ in self.stack:
            return _BQ
        top = self.stack[-1]
        return None if top in (_SH, _SUB) else top

    def after_value(self) -> None:
        self.prev = "x"
        if self.stack[-1] == _HEREDOC:
            self.line += "\0"  # a line holding a value is never the delimiter

    def feed(self, s: str) -> None:
        i, n = 0, len(s)
        if self.escaped and n:
            self.escaped = False
            self.prev = "x"
            i = 1
        while i < n:
            top = self.stack[-1]
            if top == _HEREDOC:
                i = self._heredoc_line(s, i)
                continue
            m = _SPECIAL[top].search(s, i)
            if m is None:
                self.prev = s[-1]
                return
            j = m.start()
            c = s[j]
            before = s[j - 1] if j > i else self.prev
            i = j + 1
            if c == "\\":
                if i >= n:
                    self.escaped = top in (_SH, _SUB)
                    self.prev = c
                    return
                i += 1
            elif top == _SQ:  # the only special character there is its end
                self.stack.pop()
            elif c == "\n":
                if top == _COMMENT:
                    self.stack.pop()
                if self.pending and self.stack[-1] in (_SH, _SUB):
                    self._start_heredoc()
            elif c == "'" and top not in (_DQ,):
                self.stack.append(_SQ)
            elif c == '"':
                if top == _DQ:
                    self.stack.pop()
                else:
                    self.stack.append(_DQ)
            elif c == "`":
                if top == _BQ:
                    self.stack.pop()
                else:
                    self.stack.append(_BQ)
            elif c == "$":
                if s.startswith("((", i):
                    self.stack.append(_ARITH)
                    i += 2
                elif s.startswith("(", i):
                    self.stack.append(_SUB)
                    i += 1
                elif s.startswith("{", i):
                    self.stack.append(_PARAM)
                    i += 1
            elif c == "}":  # only special inside ${...}
                self.stack.pop()
            elif c == "(":
                self.stack.append(_APAREN if top in (_ARITH, _APAREN) else _SUB)
            elif c == ")":
                if top == _ARITH:
                    self.stack.pop()
                    i += 1 if s.startswith(")", i) else 0
                elif top in (_SUB, _APAREN):
                    self.stack.pop()
            elif c == "#":
                if before in _WORD_BREAK:
                    self.stack.append(_COMMENT)
            elif c == "<" and s.startswith("<", i):
                if s.startswith("<", i + 1):  # `<<<`, a here-string: an ordinary word
                    i += 2
                else:
                    i = self._delimiter(s, i + 1)
            self.prev = s[i - 1] if i <= n else c

    def _delimiter(self, s: str, i: int) -> int:
        strip = s.startswith("-", i)
        i += strip
        m = _DELIMITER.match(s, i)
        if m is None:
            self.pending.append((None, strip))  # a value or nothing: unknown, runs to the end
            return i
        word = next(g for g in m.groups() if g is not None)
        self.pending.append((word, strip))
        return m.end()

    def _start_heredoc(self) -> None:
        self.heredoc = self.pending.pop(0)
        self.stack.append(_HEREDOC)
        self.line = ""

    def _heredoc_line(self, s: str, i: int) -> int:
        end = s.find("\n", i)
        if end < 0:
            self.line += s[i:]
            self.prev = s[-1]
            return len(s)
        self.line += s[i:end]
        assert self.heredoc is not None
        delimiter, strip = self.heredoc
        line = self.line.lstrip("\t") if strip else self.line
        self.line = ""
        if delimiter is not None and line == delimiter:
            self.stack.pop()
            self.heredoc = None
            if self.pending:
                self._start_heredoc()
        self.prev = "\n"
        return end + 1


# flowbatch's own values are integers, names and ids, which quote to themselves: they
# are inert anywhere, and `echo "child {{ array.index }}"` is too common to refuse.
_PLAIN = re.compile(
    r"\{\{-?(?:\s|array\.index|array\.size|job\.attempt|job\.name|job\.id|\d|[-+*/%()])*-?\}\}"
)
_TAG = re.compile(r"\{[{%#]|Ref::[A-Za-z_][A-Za-z0-9_\-]*")
_RAW_BLOCK = re.compile(r"\{%-?\s*raw\s*-?%\}")
_END_RAW = re.compile(r"\{%-?\s*endraw\s*-?%\}")
_RAW_FILTER = re.compile(r"\|\s*raw\s*-?\}\}\Z")
_TAG_END = re.compile(r"""(}}|%}|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""", re.S)


def _tag_end(text: str, pos: int, close: str) -> int:
    """Where the tag opened before `pos` ends (after `close`); len(text) if it never does.
    String literals inside the tag may hold the closing characters."""
    for m in _TAG_END.finditer(text, pos):
        if m.group() == close:
            return m.end()
    return len(text)


@functools.lru_cache(maxsize=16384)
def misplaced(text: str) -> tuple[Misplaced, ...]:
    """The values in shell command `text` that quoting cannot make inert."""
    if "{{" not in text and "Ref::" not in text:
        return ()
    shell = _Shell()
    found: list[Misplaced] = []

    def value(start: int, end: int, raw: bool) -> None:
        where = shell.where()
        if shell.escaped:
            why, hint = "right after a backslash", "remove the backslash"
        elif where is None and shell.prev == "$":
            why, hint = "right after `$`", "remove the `$`, or put the value in a variable"
        elif where is not None:
            why, hint = _WHERE[where], _HINTS[where]
            if where in (_SQ, _DQ) and text.startswith("Ref::", start):
                hint = _REF_QUOTES_HINT
        else:
            why = ""
        if why and not raw and not _PLAIN.fullmatch(text, start, end):
            found.append(Misplaced(start, end - start, text[start:end], why, hint))
        shell.escaped = False
        shell.after_value()

    pos = 0
    while (m := _TAG.search(text, pos)) is not None:
        shell.feed(text[pos : m.start()])
        tag = m.group()
        if tag.startswith("Ref::"):
            value(m.start(), m.end(), raw=False)
            pos = m.end()
        elif tag == "{#":
            end = text.find("#}", m.end())
            pos = len(text) if end < 0 else end + 2
        elif tag == "{%":
            pos = _tag_end(text, m.end(), "%}")
            if _RAW_BLOCK.fullmatch(text, m.start(), pos):
                close = _END_RAW.search(text, pos)
                stop = len(text) if close is None else close.start()
                # A raw block is the author's text: placeholders there are filled too.
                for ref in REF.finditer(text, pos, stop):
                    shell.feed(text[pos : ref.start()])
                    value(ref.start(), ref.end(), raw=False)
                    pos = ref.end()
                shell.feed(text[pos:stop])
                pos = len(text) if close is None else close.end()
        else:
            end = _tag_end(text, m.end(), "}}")
            value(m.start(), end, raw=_RAW_FILTER.search(text, m.start(), end) is not None)
            pos = end
    return tuple(found)


# -- Jinja, in a sandbox with a budget --------------------------------------------------


class _Budget:
    """What one render may still spend (the MAX_* limits)."""

    __slots__ = ("depth", "steps", "work")

    def __init__(self) -> None:
        self.steps = 0
        self.work = 0
        self.depth = 0

    def step(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > MAX_STEPS:
            raise _over_budget(
                f"template does too much: more than {MAX_STEPS:,} loop iterations and calls"
            )

    def build(self, size: int) -> None:
        """A value of about `size` characters is about to be made."""
        if size > MAX_VALUE:
            raise _over_budget(f"template makes a value of more than {MAX_VALUE:,} characters")
        self.spend(size)

    def spend(self, size: int) -> None:
        self.work += size
        if self.work > MAX_WORK:
            raise _over_budget(f"template builds more than {MAX_WORK:,} characters of text in all")


_BUDGET: contextvars.ContextVar[_Budget] = contextvars.ContextVar("template_budget")


def _budget() -> _Budget:
    # Outside a render (Jinja folding a constant filter call while it compiles), a check
    # gets a budget of its own: each check still holds, and nothing outlives the call.
    budget = _BUDGET.get(None)
    return _Budget() if budget is None else budget


_SIZED: tuple[type, ...] = (list, tuple, set, frozenset, dict, range)
_TEXT = (str, bytes)


def _length(value: object) -> int:
    """len(value) for text and containers; 0 for anything else."""
    return (
        len(value)
        if isinstance(value, str | bytes | list | tuple | set | frozenset | dict | range)
        else 0
    )


def _weight(value: object, limit: int = MAX_VALUE) -> int:
    """About how many characters `str(value)` has, counting no further than `limit`."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, bool) or not isinstance(value, (int, *_SIZED)):
        return 8
    if isinstance(value, int):
        return value.bit_length() // 3 + 1
    if isinstance(value, range):
        return 20
    total = 0
    todo: list[object] = [value]
    while todo and total <= limit:
        item = todo.pop()
        if isinstance(item, dict):
            total += 2 + 4 * len(item)
            todo += item.keys()
            todo += item.values()
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + 2 * len(item)
            todo += item
        elif isinstance(item, KeysView | ValuesView | ItemsView):
            todo.append(list(item))
        elif type(item).__name__ == "Namespace":  # jinja's namespace(): its repr shows all
            todo.append(getattr(item, "_Namespace__attrs", {}))
        else:
            total += _weight(item, limit - total)
    return total


def _check_int(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise _over_budget(f"template makes an integer of more than {MAX_INT_BITS:,} bits")


def _check_widths(numbers: Iterable[str], star_args: Iterable[object] | None) -> None:
    """A format's widths and precisions, and the values given for its `*`s, are values
    that many characters long: `'%0999999999d' % 1`."""
    widths = [int(n) for n in numbers if n.isdigit()]
    if star_args is not None:
        widths += [a for a in star_args if isinstance(a, int)]
    if any(w > MAX_VALUE for w in widths):
        raise _over_budget(f"template makes a value of more than {MAX_VALUE:,} characters")


_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0 +\-]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_percent(fmt: str, args: object) -> None:
    numbers: list[str] = []
    star = False
    for m in _PERCENT.finditer(fmt):
        for g in m.groups():
            if g == "*":
                star = True
            elif g:
                numbers.append(g)
    stars: list[object] | None = None
    if star:
        given = args.values() if isinstance(args, dict) else args
        stars = list(given) if isinstance(given, tuple | list | type({}.values())) else [given]
    _check_widths(numbers, stars)


def _check_format(fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    numbers: list[str] = []
    nested = False
    try:
        for _, _, spec, _ in string.Formatter().parse(fmt):
            if spec:
                numbers += re.findall(r"\d+", spec)
                nested = nested or "{" in spec
    except ValueError:
        return  # the call itself says what is wrong
    _check_widths(numbers, [*args, *kwargs.values()] if nested else None)


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    """`iterable`, one step of the budget for each item."""
    budget = _budget()
    for item in iterable:
        budget.step()
        yield item


def _replace_size(s: str, old: object, new: object, count: object = -1) -> int:
    if not isinstance(old, str) or not isinstance(new, str):
        return len(s)
    times = len(s) + 1 if old == "" else s.count(old)
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    return len(s) + times * max(len(new) - len(old), 0)


def _width(value: object) -> int:
    return value if isinstance(value, int) else 0


# Before a str method that can make its result much longer than its input runs, the
# size of that result: `'a'.center(10**9)`.
_STR_METHOD_SIZES: dict[str, Callable[..., int]] = {
    "center": lambda s, width=0, *_: max(len(s), _width(width)),
    "ljust": lambda s, width=0, *_: max(len(s), _width(width)),
    "rjust": lambda s, width=0, *_: max(len(s), _width(width)),
    "zfill": lambda s, width=0, *_: max(len(s), _width(width)),
    "replace": _replace_size,
}
_SAFE_ATTRIBUTES: dict[type, frozenset[str]] = {
    str: frozenset(
        [
            "capitalize",
            "casefold",
            "center",
            "count",
            "endswith",
            "find",
            "format",
            "index",
            "isalnum",
            "isalpha",
            "isascii",
            "isdecimal",
            "isdigit",
            "isidentifier",
            "islower",
            "isnumeric",
            "isprintable",
            "isspace",
            "istitle",
            "isupper",
            "join",
            "ljust",
            "lower",
            "lstrip",
            "partition",
            "removeprefix",
            "removesuffix",
            "replace",
            "rfind",
            "rindex",
            "rjust",
            "rpartition",
            "rsplit",
            "rstrip",
            "split",
            "splitlines",
            "startswith",
            "strip",
            "swapcase",
            "title",
            "upper",
            "zfill",
        ]
    ),
    int: frozenset(["bit_length", "conjugate", "denominator", "imag", "numerator", "real"]),
    float: frozenset(["conjugate", "imag", "is_integer", "real"]),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
    dict: frozenset({"get", "items", "keys", "values"}),
}


def _join_args(args: tuple[Any, ...], kwargs: dict[str, Any], sep: str) -> tuple[Any, ...]:
    items = list(_counted(args[0])) if args else []
    size = sum(_weight(i) for i in items) + len(sep) * max(len(items) - 1, 0)
    _budget().build(size)
    return (items, *args[1:])


def _filter_sizes() -> dict[str, Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]]:
    """Checks, before a filter runs, on the size of what it will make; each returns the
    arguments to run it with (an iterable it had to read, read into a list)."""

    def center(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        width = kwargs.get("width", args[1] if len(args) > 1 else 80)
        _budget().build(max(_weight(args[0]), _width(width)))
        return args

    def indent(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        width = kwargs.get("width", args[1] if len(args) > 1 else 4)
        text = str(args[0])
        each = width if isinstance(width, int) else len(str(width))
        _budget().build(len(text) + (text.count("\n") + 1) * max(each, 0))
        return args

    def format_(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        _check_percent(str(args[0]), kwargs or args[1:])
        _budget().build(_weight(args) + _weight(kwargs))
        return args

    def join(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        sep = kwargs.get("d", args[1] if len(args) > 1 else "")
        return _join_args(args, kwargs, str(sep))

    def replace(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        _budget().build(_replace_size(str(args[0]), *args[1:], **kwargs))
        return args

    def counts(key: str, at: int) -> Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]:
        def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
            n = kwargs.get(key, args[at] if len(args) > at else 0)
            _budget().build(_width(n))  # `[1] | batch(10**9, 0)` makes that many items
            return args

        return check

    def sum_(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        start = kwargs.get("start", args[2] if len(args) > 2 else 0)
        items = list(_counted(args[0]))
        if not isinstance(start, int | float):  # lists or strings added up: n copies
            _budget().spend(len(items) * _weight(items))
        return (items, *args[1:])

    def tojson(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        indent = kwargs.get("indent", args[1] if len(args) > 1 else None)
        _budget().build(_weight(args[0]) * (1 + max(_width(indent), 0)))
        return args

    return {
        "center": center,
        "indent": indent,
        "format": format_,
        "join": join,
        "replace": replace,
        "batch": counts("linecount", 1),
        "slice": counts("slices", 1),
        "sum": sum_,
        "tojson": tojson,
    }


def _budgeted(f: Callable[..., Any], size: Callable[..., tuple[Any, ...]] | None) -> Any:
    skip = 1 if getattr(f, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(f)
    def filter_(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.step()
        head, rest = args[:skip], args[skip:]
        if rest:
            value = rest[0]
            if isinstance(value, (*_TEXT, *_SIZED)):
                budget.spend(_length(value))  # the filter reads it all, at least
            elif isinstance(value, Iterator):
                rest = (_counted(value), *rest[1:])
            if size is not None:
                rest = size(rest, kwargs)
        result = f(*head, *rest, **kwargs)
        if _length(result) > MAX_VALUE:
            raise _over_budget(f"template makes a value of more than {MAX_VALUE:,} characters")
        return result

    return filter_


def _meter(tree: nodes.Template) -> nodes.Template:
    """`tree` with every loop counted against the budget, every loop and macro body's
    literal text charged, and `~` checked for size."""
    from jinja2 import nodes
    from jinja2.visitor import NodeTransformer

    def call(name: str, args: list[nodes.Expr], lineno: int) -> nodes.Call:
        return nodes.Call(nodes.Name(name, "load"), args, [], None, None, lineno=lineno)

    def charge(body: list[nodes.Node], lineno: int) -> None:
        size = sum(
            len(d.data)
            for n in body
            for d in [n, *n.find_all(nodes.TemplateData)]
            if isinstance(d, nodes.TemplateData)
        )
        if size:
            fee = call("_fb_charge", [nodes.Const(size)], lineno)
            body.insert(0, nodes.ExprStmt(fee, lineno=lineno))

    class Meter(NodeTransformer):
        def visit_For(self, node: nodes.For) -> nodes.Node:
            self.generic_visit(node)
            node.iter = call("_fb_iter", [node.iter], node.lineno)  # type: ignore[list-item]
            charge(node.body, node.lineno)
            return node

        def visit_Macro(self, node: nodes.Macro) -> nodes.Node:
            self.generic_visit(node)
            charge(node.body, node.lineno)
            return node

        def visit_CallBlock(self, node: nodes.CallBlock) -> nodes.Node:
            self.generic_visit(node)
            charge(node.body, node.lineno)
            return node

        def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
            self.generic_visit(node)
            return call(
                "_fb_concat", [n for n in node.nodes if isinstance(n, nodes.Expr)], node.lineno
            )

    out = Meter().visit(tree)
    assert isinstance(out, nodes.Template)
    return out


def _concat(*parts: object) -> str:
    _budget().build(sum(_weight(p) for p in parts))
    return "".join(map(str, parts))


@functools.lru_cache(maxsize=4096)
def _compile(text: str, shell: bool) -> jinja2.Template:
    env = _environment(shell)
    try:
        return env.from_string(text)
    except _jinja().TemplateSyntaxError as exc:
        raise TemplateError(exc.message or "invalid template", line=exc.lineno) from None


@functools.lru_cache(maxsize=2)
def _environment(shell: bool) -> jinja2.Environment:
    from jinja2.ext import Extension
    from jinja2.lexer import Token, TokenStream
    from jinja2.runtime import LoopContext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    jinja2 = _jinja()

    class Placeholders(Extension):
        """`Ref::name` in the template's literal text becomes `{{ _fb_ref("name") }}`,
        a value like any other: filled once, quoted, never read again."""

        def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
            for token in stream:
                if token.type != "data" or "Ref::" not in token.value:
                    yield token
                    continue
                lineno, pos = token.lineno, 0
                for m in REF.finditer(token.value):
                    before = token.value[pos : m.start()]
                    if before:
                        yield Token(lineno, "data", before)
                    lineno += before.count("\n")
                    yield Token(lineno, "variable_begin", "{{")
                    yield Token(lineno, "name", "_fb_ref")
                    yield Token(lineno, "lparen", "(")
                    yield Token(lineno, "string", m.group(1))
                    yield Token(lineno, "rparen", ")")
                    yield Token(lineno, "variable_end", "}}")
                    pos = m.end()
                if pos < len(token.value):
                    yield Token(lineno, "data", token.value[pos:])

    class Sandbox(ImmutableSandboxedEnvironment):
        # Intercepted operators are not folded at compile time either: `{{ 9**9**9 }}`
        # reaches call_binop instead of hanging the compiler.
        intercepted_binops = frozenset({"*", "**", "%", "+"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            budget = _budget()
            budget.step()
            ints = isinstance(left, int) and isinstance(right, int)
            if operator == "**" and ints and right > 0 and abs(left) > 1:
                _check_int(left.bit_length() * right)
            elif operator == "*" and ints:
                _check_int(left.bit_length() + right.bit_length())
            elif operator == "*":
                seq, times = (left, right) if isinstance(right, int) else (right, left)
                if isinstance(times, int) and isinstance(seq, str | bytes | list | tuple):
                    budget.build(_weight(seq) * max(times, 0))
            elif operator == "+" and ints:
                _check_int(max(left.bit_length(), right.bit_length()) + 1)
            elif operator == "+" and not isinstance(left, int | float):
                budget.build(_weight(left) + _weight(right))
            elif operator == "%" and isinstance(left, str):
                _check_percent(left, right)
                budget.build(len(left) + _weight(right))
            return super().call_binop(context, operator, left, right)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            budget = _budget()
            budget.step()
            if isinstance(__obj, LoopContext) and args:  # a recursive loop's `loop(...)`
                args = (_counted(args[0]), *args[1:])
            owner = getattr(__obj, "__self__", None)
            if isinstance(owner, str):
                name = getattr(__obj, "__name__", "")
                if name == "join":
                    args = _join_args(args, kwargs, owner)
                elif name in _STR_METHOD_SIZES:
                    budget.build(_STR_METHOD_SIZES[name](owner, *args, **kwargs))
            budget.depth += 1
            try:
                if budget.depth > MAX_DEPTH:
                    raise _over_budget(
                        f"template calls nest more than {MAX_DEPTH} deep "
                        "(a macro that calls itself?)"
                    )
                result = super().call(__context, __obj, *args, **kwargs)
            finally:
                budget.depth -= 1
            if _length(result) > MAX_VALUE:
                raise _over_budget(f"template makes a value of more than {MAX_VALUE:,} characters")
            return result

        def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
            if not super().is_safe_attribute(obj, attr, value):
                return False
            for kind, names in _SAFE_ATTRIBUTES.items():
                if isinstance(obj, kind):
                    return attr in names
            return True

        def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
            wrapper = super().wrap_str_format(value)
            if wrapper is None:
                return None
            fmt: str = value.__self__
            is_map = value.__name__ == "format_map"

            def format_(*args: Any, **kwargs: Any) -> str:
                given = (
                    (args[0] if args and isinstance(args[0], Mapping) else {}) if is_map else kwargs
                )
                _check_format(fmt, () if is_map else args, given)
                _budget().build(len(fmt) + _weight(args) + _weight(kwargs))
                return wrapper(*args, **kwargs)

            return format_

        def getattr(self, obj: Any, attribute: str) -> Any:
            if isinstance(obj, _Namespace):
                if attribute in obj:
                    return obj[attribute]
                return self.undefined(
                    hint=f"`{obj.label}.{attribute}` is undefined", name=attribute
                )
            return super().getattr(obj, attribute)

        def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
            tree = _meter(super()._parse(source, name, filename))
            tree.set_environment(self)
            return tree

    def finalize(value: Any) -> str:
        _budget().build(_weight(value))
        if isinstance(value, Raw) or not shell:
            return str(value)
        return shlex.quote(str(value))

    env = Sandbox(
        undefined=jinja2.StrictUndefined,
        finalize=finalize,
        autoescape=False,
        keep_trailing_newline=True,
        extensions=[Placeholders],
    )
    sizes = _filter_sizes()
    env.filters = {k: _budgeted(f, sizes.get(k)) for k, f in env.filters.items()}
    env.filters["raw"] = _budgeted(lambda value: Raw(str(value)), None)
    env.globals.pop("lipsum", None)  # `lipsum(10**9)`: text without end, and no use here
    env.globals["_fb_iter"] = _counted
    env.globals["_fb_charge"] = lambda size: _budget().spend(size)
    env.globals["_fb_concat"] = _concat
    return env


def _jinja() -> Any:
    import jinja2

    return jinja2


_UNDEFINED = re.compile(r"[`']([^`']+)[`'] is undefined")


def _undefined_name(message: str) -> str | None:
    m = _UNDEFINED.search(message)
    return m.group(1) if m else None
