"""Command templates: Jinja2 in a sandbox, undefined names an error, values shell-quoted.

A `command` string is rendered once per job or array child. Every value a template
inserts into a shell command is quoted with `shlex.quote` unless the template says
`| raw`, so a parameter holding `a b; rm -rf ~` stays one harmless argument. A command
given as a list runs without a shell, so its elements are not quoted. An `inputs` or
`outputs` path (`paths=True`) is a glob: its values are glob-escaped instead, so that a
value is a file's name, never a pattern.

`Ref::name` placeholders (AWS Batch job-definition parameters) are found in the author's
text only (never in a value a template inserted) and filled in the same pass as the
template's values, quoted like them: a value that spells `Ref::x` stays that text.

This module is the templates' public face; each concept has a module of its own:
- template_text: the template's text read without Jinja (placeholders, simple commands);
- template_quoting: `misplaced()`, the values an author put where quoting cannot
  protect them (inside shell quotes, backticks, comments, here-documents), read with
  shell_quoting, which follows sh's quoting and knows nothing of Jinja;
- template_budget: what one render may spend (`MAX_*`), so that a template that would
  loop, recurse or build values without end fails with a TemplateError;
- template_sandbox: the Jinja environment, its hooks and the compiled-template cache
  (a pipeline of 10,000 jobs made from one definition compiles its command once; Jinja
  is imported only when a command uses it).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowbatch.lang.model import Argv
from flowbatch.lang.template_error import TemplateError

if TYPE_CHECKING:
    from flowbatch.lang.template_budget import (
        MAX_CODE,
        MAX_DEPTH,
        MAX_INT_BITS,
        MAX_OUTPUT,
        MAX_SECONDS,
        MAX_STEPS,
        MAX_VALUE,
        MAX_WORK,
    )
    from flowbatch.lang.template_quoting import Misplaced, program_index, script_index
    from flowbatch.lang.template_sandbox import Raw
    from flowbatch.lang.template_text import REF, Part, uses_jinja

__all__ = [
    "MAX_CODE",
    "MAX_DEPTH",
    "MAX_INT_BITS",
    "MAX_OUTPUT",
    "MAX_SECONDS",
    "MAX_STEPS",
    "MAX_VALUE",
    "MAX_WORK",
    "REF",
    "Context",
    "Misplaced",
    "Raw",
    "TemplateError",
    "check",
    "misplaced",
    "program_index",
    "render",
    "render_command",
    "script_index",
    "uses_jinja",
    "values_in_program",
]

# `validate` of a pipeline whose commands hold no template must start as fast as a
# Python can: the quoting check (shell_quoting's tables), the budget (contextvars,
# string) and the sandbox are imported on first use, and these public names resolve
# through `__getattr__` (PEP 562). `_simple_parts` is the fast path the tests reach for.
_LAZY = {
    **dict.fromkeys(
        (
            "MAX_CODE",
            "MAX_DEPTH",
            "MAX_INT_BITS",
            "MAX_OUTPUT",
            "MAX_SECONDS",
            "MAX_STEPS",
            "MAX_VALUE",
            "MAX_WORK",
        ),
        "template_budget",
    ),
    **dict.fromkeys(("Misplaced", "program_index", "script_index"), "template_quoting"),
    "Raw": "template_sandbox",
    **dict.fromkeys(("REF", "Part", "uses_jinja"), "template_text"),
}


def __getattr__(name: str) -> Any:
    if name == "_simple_parts":
        name, module = "simple_parts", "template_text"
    elif name in _LAZY:
        module = _LAZY[name]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"flowbatch.lang.{module}"), name)


def _plain(text: str) -> bool:
    """`text` holds no template: no Jinja tag (template_text.uses_jinja) and no `Ref::`
    placeholder, so it renders to itself and no value can be misplaced in it."""
    return not ("{{" in text or "{%" in text or "{#" in text or "Ref::" in text)


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
        from flowbatch.lang.template_sandbox import Namespace

        return {
            "params": Namespace("params", self.params),
            # A single job has no `array.*`: using it there is an undefined name.
            "array": Namespace(
                "array", {} if self.index is None else {"index": self.index, "size": self.size}
            ),
            "job": Namespace(
                "job", {"name": self.job_name, "id": self.job_id, "attempt": self.attempt}
            ),
        }


def render(
    text: str,
    ctx: Context,
    *,
    shell: bool,
    parameters: Mapping[str, str],
    paths: bool = False,
) -> str:
    """`text` rendered for one job or array child; raises TemplateError. `paths`: the
    text is an `inputs`/`outputs` glob, and every value it inserts is literal text in
    it (`glob.escape`: a value's `*`, `?` and `[` match themselves)."""
    from flowbatch.lang.template_budget import MAX_OUTPUT, over_budget

    if _plain(text):
        out = text
    else:
        from flowbatch.lang.template_text import simple_parts

        parts = simple_parts(text)
        out = (
            _render_jinja(text, ctx, shell, parameters, paths)
            if parts is None
            else _render_simple(parts, ctx, shell, parameters, paths)
        )
    if "\0" in out:
        # No program can receive it: exec refuses an argument with a NUL in it.
        raise TemplateError("the command holds a NUL character, which no program can receive")
    if len(out) > MAX_OUTPUT:
        raise over_budget(f"the command renders to more than {MAX_OUTPUT:,} characters")
    return out


def _render_simple(
    parts: tuple[Part, ...],
    ctx: Context,
    shell: bool,
    parameters: Mapping[str, str],
    paths: bool = False,
) -> str:
    import glob
    import shlex

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
        if not raw:
            text = shlex.quote(text) if shell else glob.escape(text) if paths else text
        out.append(text)
    return "".join(out)


def _ref_value(parameters: Mapping[str, str], name: str) -> str:
    if name not in parameters:
        raise TemplateError(f"unresolved placeholder `Ref::{name}`", name=f"Ref::{name}")
    return parameters[name]


def _render_jinja(
    text: str,
    ctx: Context,
    shell: bool,
    parameters: Mapping[str, str] | None = None,
    paths: bool = False,
) -> str:
    from flowbatch.lang.template_budget import BUDGET, MAX_OUTPUT, Budget, over_budget
    from flowbatch.lang.template_sandbox import compile_template, jinja

    jinja2 = jinja()
    template = compile_template(text, shell, paths)
    refs = parameters or {}
    names = ctx.as_dict()
    names["_fb_ref"] = lambda name: _ref_value(refs, name)
    token = BUDGET.set(Budget())
    try:
        out: list[str] = []
        size = 0
        for piece in template.generate(names):
            size += len(piece)
            if size > MAX_OUTPUT:
                raise over_budget(f"the command renders to more than {MAX_OUTPUT:,} characters")
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
        raise over_budget(
            "template nests too deeply (a macro or a recursive loop that calls itself?)"
        ) from None
    except MemoryError:
        raise TemplateError("template needs more memory than there is") from None
    except TemplateError:
        raise
    except Exception as exc:
        # Filters assert on their arguments (`truncate(-1)`), `cycler()` raises
        # RuntimeError, Jinja writes a folded `1e400 * 0` as a name it never defines.
        raise TemplateError(f"template failed: {exc or type(exc).__name__}") from None
    finally:
        BUDGET.reset(token)


def render_command(
    command: str | tuple[str, ...], ctx: Context, parameters: Mapping[str, str]
) -> str | tuple[str, ...]:
    """A job's command rendered: a str for /bin/sh -c, or a tuple of arguments (of which
    a shell's script, `["sh", "-c", SCRIPT]`, is rendered like a str command). An
    `Argv` is no template and is returned as it is."""
    if isinstance(command, Argv):
        return command
    if isinstance(command, str):
        return render(command, ctx, shell=True, parameters=parameters)
    from flowbatch.lang.template_quoting import script_index

    script = script_index(command)
    return tuple(
        render(part, ctx, shell=k == script, parameters=parameters)
        for k, part in enumerate(command)
    )


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
    if not _plain(text):
        render(text, ctx, shell=shell, parameters=parameters)


def misplaced(text: str) -> tuple[Misplaced, ...]:
    """The values in shell command `text` that quoting cannot make inert
    (template_quoting.misplaced)."""
    if _plain(text):
        return ()
    from flowbatch.lang import template_quoting

    return template_quoting.misplaced(text)


def values_in_program(text: str, program: str) -> tuple[Misplaced, ...]:
    """The values in `text`, the program of `program` (`python3 -c`), that would be code
    once inserted (template_quoting.values_in_program)."""
    if _plain(text):
        return ()
    from flowbatch.lang import template_quoting

    return template_quoting.values_in_program(text, program)


def _undefined_name(message: str) -> str | None:
    import re  # on an error only

    m = re.search(r"[`']([^`']+)[`'] is undefined", message)
    return m.group(1) if m else None
