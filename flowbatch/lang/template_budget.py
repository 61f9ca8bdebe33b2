"""The render budget: what one render of a template may do (loop iterations and calls,
value sizes, text built in all, call depth, integer bits, time), and the checks that
charge for it before a value is made. The Jinja sandbox (template_sandbox) calls these
from its hooks.
"""

from __future__ import annotations

import contextvars
import functools
import operator
import re
import string
import time
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import Any

from flowbatch.lang.template_error import TemplateError

# The render budget. A command is one argument of `sh -c`, which Linux caps at 128 KiB,
# so these leave room for any real command and none for a runaway one.
MAX_OUTPUT = 1 << 20  # characters a command renders to
MAX_VALUE = 1 << 20  # characters (roughly, of its text) in any one value a template builds
MAX_WORK = 16 << 20  # characters built or copied in all, over one render
MAX_STEPS = 200_000  # loop iterations and calls, over one render
MAX_DEPTH = 50  # calls inside calls: a macro that calls itself
MAX_INT_BITS = 16_384  # about 4,900 digits
# What every check above leaves: the time one render may take (a last resort, since it
# depends on the machine), and the template code Jinja compiles, which costs ~20 us a
# character of expressions: a command is never near either.
MAX_SECONDS = 10.0
MAX_CODE = 32_768  # characters inside `{{ }}` and `{% %}` tags

BUDGET_HINT = (
    f"a template renders within a budget: values of up to {MAX_VALUE:,} characters, "
    f"{MAX_STEPS:,} loop iterations and calls, calls {MAX_DEPTH} deep, integers of "
    f"{MAX_INT_BITS:,} bits (see `Templates` in docs/language.md)"
)


def over_budget(message: str) -> TemplateError:
    return TemplateError(message, hint=BUDGET_HINT)


class Budget:
    """What one render may still spend (the MAX_* limits)."""

    __slots__ = ("deadline", "depth", "steps", "work")

    def __init__(self) -> None:
        self.steps = 0
        self.work = 0
        self.depth = 0
        self.deadline = time.monotonic() + MAX_SECONDS

    def step(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > MAX_STEPS:
            raise over_budget(
                f"template does too much: more than {MAX_STEPS:,} loop iterations and calls"
            )
        if time.monotonic() > self.deadline:
            raise over_budget(f"template takes more than {MAX_SECONDS:g} seconds to render")

    def build(self, size: int) -> None:
        """A value of about `size` characters is about to be made."""
        if size > MAX_VALUE:
            raise over_budget(f"template makes a value of more than {MAX_VALUE:,} characters")
        self.spend(size)

    def spend(self, size: int) -> None:
        self.work += size
        if self.work > MAX_WORK:
            raise over_budget(f"template builds more than {MAX_WORK:,} characters of text in all")


BUDGET: contextvars.ContextVar[Budget] = contextvars.ContextVar("template_budget")


def current_budget() -> Budget:
    # Outside a render (Jinja folding a constant filter call while it compiles), a check
    # gets a budget of its own: each check still holds, and nothing outlives the call.
    budget = BUDGET.get(None)
    return Budget() if budget is None else budget


SIZED: tuple[type, ...] = (list, tuple, set, frozenset, dict, range)
TEXT = (str, bytes)


def length(value: object) -> int:
    """len(value) for text and containers; 0 for anything else."""
    return (
        len(value)
        if isinstance(value, str | bytes | list | tuple | set | frozenset | dict | range)
        else 0
    )


def weight(value: object, limit: int = MAX_VALUE) -> int:
    """About how many characters `str(value)` has, counting no further than `limit`."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, bool) or not isinstance(value, (int, *SIZED)):
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
            for x in item:  # the common items inline: a list of 300,000 is walked often
                kind = type(x)
                if kind is str:
                    total += len(x)
                elif kind is int:
                    total += x.bit_length() // 3 + 1
                else:
                    todo.append(x)
                if total > limit:
                    break
        elif isinstance(item, KeysView | ValuesView | ItemsView):
            todo.append(list(item))
        elif type(item).__name__ == "Namespace":  # jinja's namespace(): its repr shows all
            todo.append(getattr(item, "_Namespace__attrs", {}))
        else:
            total += weight(item, limit - total)
    return total


def check_int(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise over_budget(f"template makes an integer of more than {MAX_INT_BITS:,} bits")


def _check_widths(numbers: Iterable[str], star_args: Iterable[object] | None) -> None:
    """A format's widths and precisions, and the values given for its `*`s, are values
    that many characters long: `'%0999999999d' % 1`."""
    widths = [int(n) for n in numbers if n.isdigit()]
    if star_args is not None:
        widths += [a for a in star_args if isinstance(a, int)]
    if any(w > MAX_VALUE for w in widths):
        raise over_budget(f"template makes a value of more than {MAX_VALUE:,} characters")


_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0 +\-]*(\*|\d+)?(?:\.(\*|\d+))?")


def check_percent(fmt: str, args: object) -> None:
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


def check_format(fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
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


def counted(iterable: Iterable[Any]) -> Iterator[Any]:
    """`iterable`, one step of the budget for each item."""
    budget = current_budget()
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
STR_METHOD_SIZES: dict[str, Callable[..., int]] = {
    "center": lambda s, width=0, *_: max(len(s), _width(width)),
    "ljust": lambda s, width=0, *_: max(len(s), _width(width)),
    "rjust": lambda s, width=0, *_: max(len(s), _width(width)),
    "zfill": lambda s, width=0, *_: max(len(s), _width(width)),
    "replace": _replace_size,
}


def join_args(args: tuple[Any, ...], sep: str) -> tuple[Any, ...]:
    items = list(counted(args[0])) if args else []
    size = sum(weight(i) for i in items) + len(sep) * max(len(items) - 1, 0)
    current_budget().build(size)
    return (items, *args[1:])


def filter_sizes() -> dict[str, Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]]:
    """Checks, before a filter runs, on the size of what it will make; each returns the
    arguments to run it with (an iterable it had to read, read into a list)."""

    def center(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        width = kwargs.get("width", args[1] if len(args) > 1 else 80)
        current_budget().build(max(weight(args[0]), _width(width)))
        return args

    def indent(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        width = kwargs.get("width", args[1] if len(args) > 1 else 4)
        text = str(args[0])
        each = width if isinstance(width, int) else len(str(width))
        current_budget().build(len(text) + (text.count("\n") + 1) * max(each, 0))
        return args

    def format_(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        check_percent(str(args[0]), kwargs or args[1:])
        current_budget().build(weight(args) + weight(kwargs))
        return args

    def join(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        sep = kwargs.get("d", args[1] if len(args) > 1 else "")
        return join_args(args, str(sep))

    def replace(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        current_budget().build(_replace_size(str(args[0]), *args[1:], **kwargs))
        return args

    def counts(key: str, at: int) -> Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]:
        def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
            n = kwargs.get(key, args[at] if len(args) > at else 0)
            current_budget().build(_width(n))  # `[1] | batch(10**9, 0)` makes that many items
            return args

        return check

    def sum_(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        start = kwargs.get("start", args[2] if len(args) > 2 else 0)
        items = list(counted(args[0]))
        if not isinstance(start, int | float):  # lists or strings added up: n copies
            current_budget().spend(len(items) * weight(items))
        return (items, *args[1:])

    def tojson(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        indent = kwargs.get("indent", args[1] if len(args) > 1 else None)
        current_budget().build(weight(args[0]) * (1 + max(_width(indent), 0)))
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


# Filters that take much longer than a copy for each character or item they read
# (measured: `sort` ~2 us an item, a copy ~1 ns a character), charged that many times over.
SLOW_FILTERS = {
    "sort": 32,
    "wordwrap": 16,
    "max": 8,
    "min": 8,
    "unique": 8,
    "title": 8,
    "batch": 8,
    "groupby": 8,
    "xmlattr": 4,
    "striptags": 4,
    "dictsort": 2,
    "pprint": 2,
    "capitalize": 2,
    "wordcount": 2,
    "urlencode": 2,
}


def budgeted(
    f: Callable[..., Any], size: Callable[..., tuple[Any, ...]] | None, cost: int = 1
) -> Any:
    skip = 1 if getattr(f, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(f)
    def filter_(*args: Any, **kwargs: Any) -> Any:
        budget = current_budget()
        budget.step()
        head, rest = args[:skip], args[skip:]
        if rest:
            value = rest[0]
            if isinstance(value, (*TEXT, *SIZED)):
                budget.spend(length(value) * cost)  # the filter reads it all, at least
            elif isinstance(value, Iterator):
                rest = (counted(value), *rest[1:])
            if size is not None:
                rest = size(rest, kwargs)
        result = f(*head, *rest, **kwargs)
        if length(result) > MAX_VALUE:
            raise over_budget(f"template makes a value of more than {MAX_VALUE:,} characters")
        return result

    return filter_


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "lteq": operator.le,
    "gt": operator.gt,
    "gteq": operator.ge,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}


def compare(left: Any, *rest: Any) -> Any:
    """`left op right op right...`, as Python chains comparisons, each charged for the
    operands it may walk."""
    budget = current_budget()
    result: Any = True
    for op, right in zip(rest[::2], rest[1::2], strict=True):
        budget.spend(length(left) + length(right))
        result = _COMPARE[op](left, right)
        if not result:
            return result
        left = right
    return result


def slice_(value: Any, start: Any, stop: Any, step: Any) -> Any:
    result = value[start:stop:step]
    current_budget().spend(length(result))
    return result


def charged(test: Callable[..., Any]) -> Callable[..., Any]:
    """A test (`x is in s`), charged for the values it may walk."""

    @functools.wraps(test)
    def charged(*args: Any, **kwargs: Any) -> Any:
        budget = current_budget()
        budget.step()
        budget.spend(sum(length(a) for a in (*args, *kwargs.values())))
        return test(*args, **kwargs)

    return charged


def concat(*parts: object) -> str:
    current_budget().build(sum(weight(p) for p in parts))
    return "".join(map(str, parts))
