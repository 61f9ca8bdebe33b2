"""Command templates: Jinja2 in a sandbox, undefined names an error, values shell-quoted.

A `command` string is rendered once per job or array child. Every value a template
inserts into a shell command is quoted with `shlex.quote` unless the template says
`| raw`, so a parameter holding `a b; rm -rf ~` stays one harmless argument. A command
given as a list runs without a shell, so its elements are not quoted.

`Ref::name` placeholders (AWS Batch job-definition parameters) are replaced after
rendering, from the job's `parameters`.

Compiled templates are cached by their text: a pipeline of 10,000 jobs made from one
definition compiles its command once. Jinja is imported only when a command uses it.

Imports: nothing from flowbatch; jinja2 (lazily).
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2

REF = re.compile(r"Ref::([A-Za-z_][A-Za-z0-9_\-]*)")


class TemplateError(Exception):
    """A template that does not compile or render. `line` counts within the template."""

    def __init__(self, message: str, line: int | None = None, name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.name = name  # the undefined name, when that is the problem


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
    if not uses_jinja(text):
        out = text
    else:
        simple = _simple_parts(text)
        out = (
            _render_jinja(text, ctx, shell)
            if simple is None
            else _render_simple(simple, ctx, shell)
        )
    return substitute_refs(out, parameters, shell=shell)


# Most commands only insert values: `render {{ array.index }} --q {{ params.quality }}`.
# Those are rendered here, with Jinja's exact meaning (str() of the value, shell-quoted
# unless `| raw`, an unknown name an error), without compiling a Jinja template: a
# compile costs ~0.7 ms, which is 7 s for a generated pipeline of 10,000 jobs whose
# commands all differ. Anything else (filters, expressions, control flow) goes to Jinja.
_SIMPLE = re.compile(r"\{\{-?\s*(params|array|job)\.([A-Za-z_]\w*)\s*(\|\s*raw\s*)?-?\}\}")
_Part = str | tuple[str, str, bool]


@functools.lru_cache(maxsize=16384)
def _simple_parts(text: str) -> tuple[_Part, ...] | None:
    if "{%" in text or "{#" in text or "{{-" in text or "-}}" in text:
        return None
    parts: list[_Part] = []
    pos = 0
    for m in _SIMPLE.finditer(text):
        parts += [text[pos : m.start()], (m.group(1), m.group(2), m.group(3) is not None)]
        pos = m.end()
    parts.append(text[pos:])
    if any(isinstance(p, str) and ("{{" in p or "}}" in p) for p in parts):
        return None  # an expression this fast path does not read
    return tuple(parts)


def _render_simple(parts: tuple[_Part, ...], ctx: Context, shell: bool) -> str:
    names = ctx.names()
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        space, attr, raw = part
        values = names[space]
        if attr not in values:
            raise TemplateError(f"`{space}.{attr}` is undefined", name=f"{space}.{attr}")
        text = str(values[attr])
        out.append(text if raw or not shell else shlex.quote(text))
    return "".join(out)


def _render_jinja(text: str, ctx: Context, shell: bool) -> str:
    jinja2 = _jinja()
    template = _compile(text, shell)
    try:
        return str(template.render(ctx.as_dict()))
    except jinja2.UndefinedError as exc:
        message = str(exc).replace("'", "`")
        raise TemplateError(message, name=_undefined_name(str(exc))) from None
    except jinja2.TemplateError as exc:
        raise TemplateError(str(exc)) from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateError(f"template failed: {exc}") from None


def render_command(
    command: str | tuple[str, ...], ctx: Context, parameters: Mapping[str, str]
) -> str | tuple[str, ...]:
    """A job's command rendered: a str for /bin/sh -c, or a tuple of arguments."""
    if isinstance(command, str):
        return render(command, ctx, shell=True, parameters=parameters)
    return tuple(render(part, ctx, shell=False, parameters=parameters) for part in command)


def check(text: str, ctx: Context, *, shell: bool, parameters: Mapping[str, str]) -> None:
    """Compile and render `text` once with a representative context, so that syntax
    errors and undefined names are found before anything runs; raises TemplateError."""
    if uses_jinja(text) or "Ref::" in text:
        render(text, ctx, shell=shell, parameters=parameters)


def unresolved_refs(text: str, parameters: Mapping[str, str]) -> list[str]:
    return [m.group(1) for m in REF.finditer(text) if m.group(1) not in parameters]


def substitute_refs(text: str, parameters: Mapping[str, str], *, shell: bool) -> str:
    if "Ref::" not in text:
        return text

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in parameters:
            raise TemplateError(f"unresolved placeholder `Ref::{name}`", name=f"Ref::{name}")
        value = parameters[name]
        return shlex.quote(value) if shell else value

    return REF.sub(repl, text)


@functools.lru_cache(maxsize=4096)
def _compile(text: str, shell: bool) -> jinja2.Template:
    env = _environment(shell)
    try:
        return env.from_string(text)
    except _jinja().TemplateSyntaxError as exc:
        raise TemplateError(exc.message or "invalid template", line=exc.lineno) from None


@functools.lru_cache(maxsize=2)
def _environment(shell: bool) -> jinja2.Environment:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    jinja2 = _jinja()

    def finalize(value: Any) -> str:
        if isinstance(value, Raw) or not shell:
            return str(value)
        return shlex.quote(str(value))

    env = ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        finalize=finalize,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["raw"] = lambda value: Raw(str(value))
    env.getattr = _getattr_or_item(env)  # type: ignore[method-assign]
    return env


def _getattr_or_item(env: jinja2.Environment) -> Any:
    original = env.getattr

    def getattr_(obj: Any, attribute: str) -> Any:
        if isinstance(obj, _Namespace):
            if attribute in obj:
                return obj[attribute]
            return env.undefined(hint=f"`{obj.label}.{attribute}` is undefined", name=attribute)
        return original(obj, attribute)

    return getattr_


def _jinja() -> Any:
    import jinja2

    return jinja2


_UNDEFINED = re.compile(r"[`']([^`']+)[`'] is undefined")


def _undefined_name(message: str) -> str | None:
    m = _UNDEFINED.search(message)
    return m.group(1) if m else None
