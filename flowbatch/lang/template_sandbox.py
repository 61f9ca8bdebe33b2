"""Jinja, in a sandbox with a budget: the environment that renders commands (values
shell-quoted unless `| raw`, `Ref::` placeholders made values, only plain methods of
plain types), the pass over each parsed template that meters loops, slices,
comparisons and `~`, and the cache of compiled templates.
"""

from __future__ import annotations

import functools
import glob
import shlex
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from flowbatch.lang.template_budget import (
    MAX_CODE,
    MAX_DEPTH,
    MAX_OUTPUT,
    MAX_VALUE,
    SLOW_FILTERS,
    STR_METHOD_SIZES,
    budgeted,
    charged,
    check_format,
    check_int,
    check_percent,
    compare,
    concat,
    counted,
    current_budget,
    filter_sizes,
    join_args,
    length,
    over_budget,
    slice_,
    weight,
)
from flowbatch.lang.template_error import TemplateError
from flowbatch.lang.template_text import REF, code_size

if TYPE_CHECKING:
    import jinja2
    from jinja2 import nodes


class Raw(str):
    """A string the template author asked to insert unquoted (`| raw`)."""

    __slots__ = ()


class Namespace(dict[str, object]):
    """A mapping whose keys read as attributes (`params.frames`); a missing one is undefined."""

    __slots__ = ("label",)

    def __init__(self, label: str, items: Mapping[str, object]) -> None:
        super().__init__(items)
        self.label = label


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


def meter(tree: nodes.Template) -> nodes.Template:
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

        def visit_ScopedEvalContextModifier(
            self, node: nodes.ScopedEvalContextModifier
        ) -> nodes.Node:
            # `{% autoescape true %}` would HTML-escape quoted values, and `&#39;` is
            # no quote: `'` becomes `&`, `#` and a comment a value's line break ends.
            self.generic_visit(node)
            node.options = [o for o in node.options if o.key != "autoescape"]
            return node

        def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
            # Jinja writes `s[1:]` as Python's own slice, which no hook sees.
            self.generic_visit(node)
            if not isinstance(node.arg, nodes.Slice) or node.ctx != "load":
                return node
            bounds = [node.arg.start, node.arg.stop, node.arg.step]
            args = [b if b is not None else nodes.Const(None) for b in bounds]
            return call("_fb_slice", [node.node, *args], node.lineno)

        def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
            # `==`, `<` and `in` walk their operands, and Jinja runs them unhooked.
            self.generic_visit(node)
            args: list[nodes.Expr] = [node.expr]
            for operand in node.ops:
                args += [nodes.Const(operand.op), operand.expr]
            return call("_fb_compare", args, node.lineno)

        def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
            self.generic_visit(node)
            return call(
                "_fb_concat", [n for n in node.nodes if isinstance(n, nodes.Expr)], node.lineno
            )

    out = Meter().visit(tree)
    assert isinstance(out, nodes.Template)
    return out


@functools.lru_cache(maxsize=4096)
def compile_template(text: str, shell: bool, paths: bool = False) -> jinja2.Template:
    """`paths`: an `inputs`/`outputs` glob, whose values are glob-escaped (not quoted)."""
    env = _environment(shell, paths)
    if len(text) > MAX_OUTPUT:
        raise over_budget(f"the command's template is longer than {MAX_OUTPUT:,} characters")
    if code_size(text) > MAX_CODE:
        raise over_budget(
            f"the command's template has more than {MAX_CODE:,} characters of template code"
        )
    try:
        return env.from_string(text)
    except jinja().TemplateSyntaxError as exc:
        raise TemplateError(exc.message or "invalid template", line=exc.lineno) from None
    except (RecursionError, SyntaxError, MemoryError):
        # Jinja's parser and compiler recurse once per level of nesting, and Python's
        # own compiler refuses blocks nested 100 deep: `{{ ((((...)))) }}`.
        raise over_budget("template nests too deeply to compile") from None


@functools.lru_cache(maxsize=3)
def _environment(shell: bool, paths: bool = False) -> jinja2.Environment:
    from jinja2.ext import Extension
    from jinja2.lexer import Token, TokenStream
    from jinja2.runtime import LoopContext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    jinja2 = jinja()

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
            budget = current_budget()
            budget.step()
            ints = isinstance(left, int) and isinstance(right, int)
            if operator == "**" and ints and right > 0 and abs(left) > 1:
                check_int(left.bit_length() * right)
            elif operator == "*" and ints:
                check_int(left.bit_length() + right.bit_length())
            elif operator == "*":
                seq, times = (left, right) if isinstance(right, int) else (right, left)
                if isinstance(times, int) and isinstance(seq, str | bytes | list | tuple):
                    budget.build(weight(seq) * max(times, 0))
            elif operator == "+" and ints:
                check_int(max(left.bit_length(), right.bit_length()) + 1)
            elif operator == "+" and not isinstance(left, int | float):
                budget.build(weight(left) + weight(right))
            elif operator == "%" and isinstance(left, str):
                check_percent(left, right)
                budget.build(len(left) + weight(right))
            return super().call_binop(context, operator, left, right)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            budget = current_budget()
            budget.step()
            if isinstance(__obj, LoopContext) and args:  # a recursive loop's `loop(...)`
                args = (counted(args[0]), *args[1:])
            owner = getattr(__obj, "__self__", None)
            budget.spend(length(owner))  # `s.upper()`, `s.count(x)`: a pass over `s`
            if isinstance(owner, str):
                name = getattr(__obj, "__name__", "")
                if name == "join":
                    args = join_args(args, owner)
                elif name in STR_METHOD_SIZES:
                    budget.build(STR_METHOD_SIZES[name](owner, *args, **kwargs))
            budget.depth += 1
            try:
                if budget.depth > MAX_DEPTH:
                    raise over_budget(
                        f"template calls nest more than {MAX_DEPTH} deep "
                        "(a macro that calls itself?)"
                    )
                result = super().call(__context, __obj, *args, **kwargs)
            finally:
                budget.depth -= 1
            if length(result) > MAX_VALUE:
                raise over_budget(f"template makes a value of more than {MAX_VALUE:,} characters")
            budget.spend(length(result))
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
                check_format(fmt, () if is_map else args, given)
                current_budget().build(len(fmt) + weight(args) + weight(kwargs))
                return wrapper(*args, **kwargs)

            return format_

        def getattr(self, obj: Any, attribute: str) -> Any:
            if isinstance(obj, Namespace):
                if attribute in obj:
                    return obj[attribute]
                return self.undefined(
                    hint=f"`{obj.label}.{attribute}` is undefined", name=attribute
                )
            return super().getattr(obj, attribute)

        def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
            tree = meter(super()._parse(source, name, filename))
            tree.set_environment(self)
            return tree

    def finalize(value: Any) -> str:
        current_budget().build(weight(value))
        if isinstance(value, Raw):
            return str(value)
        if shell:
            return shlex.quote(str(value))
        # A value in a path is a name, never a pattern: `-p sample='*'` is the file `*`.
        return glob.escape(str(value)) if paths else str(value)

    env = Sandbox(
        undefined=jinja2.StrictUndefined,
        finalize=finalize,
        autoescape=False,
        keep_trailing_newline=True,
        extensions=[Placeholders],
    )
    sizes = filter_sizes()
    env.filters = {
        k: budgeted(f, sizes.get(k), SLOW_FILTERS.get(k, 1)) for k, f in env.filters.items()
    }
    env.filters["raw"] = budgeted(lambda value: Raw(str(value)), None)
    env.globals.pop("lipsum", None)  # `lipsum(10**9)`: text without end, and no use here
    env.globals["_fb_iter"] = counted
    # Templates can call these too: a charge is never a refund.
    env.globals["_fb_charge"] = lambda size: current_budget().spend(max(int(size), 0))
    env.globals["_fb_concat"] = concat
    env.globals["_fb_compare"] = compare
    env.globals["_fb_slice"] = slice_
    tests: dict[str, Any] = dict(env.tests)
    env.tests = {k: charged(t) for k, t in tests.items()}
    return env


def jinja() -> Any:
    import jinja2

    return jinja2
