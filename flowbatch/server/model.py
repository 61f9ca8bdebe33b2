"""AWS Batch's API as botocore's service model defines it: the contract of the server.

The model ships in botocore (`data/batch/*/service-2.json`). From it come the routes
(each operation's `http.method` and `http.requestUri`; `{label}`s in a path are input
members, as `{resourceArn}` of the tag operations, and so are `location: querystring`
members, as UntagResource's `tagKeys`) and the checks of every request's input against
its shape, compiled once per shape into plain functions (SubmitJob is checked hundreds
of times a second).

What the checks decide, as AWS's own front end does:

- `required` members must be present; a JSON `null` counts as absent.
- Types: string, integer and long (whole numbers in their 32/64-bit range; a bool is
  not a number), double and float, boolean, list, map, structure.
- `enum`s, and `min`/`max`: a string's length, a number's value, a list's or a map's
  number of entries. An enum is matched ignoring case where the member's own
  documentation says its values "aren't case sensitive" (EvaluateOnExit's `action`);
  the value is passed on as sent.
- Members the shape does not know are dropped, at every depth, as AWS ignores them:
  an older or newer client keeps working, and the backend sees only members of the
  model. `NaN` and `Infinity` are not JSON and are refused.

Every problem of a request is reported, each named by its path from the input's root
(`containerOverrides.environment[0].name: required`), in one `ClientException`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote, unquote_plus

from botocore.loaders import Loader

from flowbatch.server.errors import ClientException

SERVICE = "batch"

# A request's message names this many problems at most, then counts the rest.
MAX_REPORTED = 10


class _Problem:
    """One thing wrong with a value; the path is gathered on the way back up, innermost
    segment first, so that a valid request never builds a path string."""

    __slots__ = ("segments", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.segments: list[str] = []

    def __str__(self) -> str:
        where = "".join(reversed(self.segments)).removeprefix(".")
        return f"{where}: {self.text}" if where else self.text


_Problems = list[_Problem] | None
# A compiled check: the value cleaned (unknown members dropped) and its problems.
_Check = Callable[[Any], tuple[Any, _Problems]]


def _kind(value: object) -> str:
    """A JSON value's type, as a message names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _plural(count: int, word: str) -> str:
    if count == 1:
        return f"{count} {word}"
    return f"{count} {word[:-1]}ies" if word.endswith("y") else f"{count} {word}s"


def _bounds(shape: Mapping[str, Any], lo: float | None, hi: float | None) -> tuple[Any, Any]:
    return shape.get("min", lo), shape.get("max", hi)


def _size_problem(size: int, lo: int | None, hi: int | None, noun: str) -> _Problems:
    if lo is not None and size < lo:
        return [_Problem(f"must have at least {_plural(lo, noun)} (got {size})")]
    if hi is not None and size > hi:
        return [_Problem(f"must have at most {_plural(hi, noun)} (got {size})")]
    return None


def _string(shape: Mapping[str, Any], fold: bool) -> _Check:
    enum = frozenset(e.casefold() if fold else e for e in shape.get("enum", ()))
    lo, hi = _bounds(shape, None, None)
    listed = ", ".join(shape.get("enum", ()))

    def check(value: Any) -> tuple[Any, _Problems]:
        if not isinstance(value, str):
            return value, [_Problem(f"expected a string, got {_kind(value)}")]
        if enum and (value.casefold() if fold else value) not in enum:
            return value, [_Problem(f"must be one of {listed} (got {_short(value)})")]
        if lo is not None or hi is not None:
            return value, _size_problem(len(value), lo, hi, "character")
        return value, None

    return check


def _whole(shape: Mapping[str, Any], bits: int) -> _Check:
    lo, hi = _bounds(shape, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)

    def check(value: Any) -> tuple[Any, _Problems]:
        # JSON has one number type: 3.0 is the integer 3, as a JSON reader on AWS's
        # side takes it; a bool is never a number, though Python says it is.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            return value, [_Problem(f"expected an integer, got {_kind(value)}")]
        if value < lo:
            return value, [_Problem(f"must be at least {lo} (got {value})")]
        if value > hi:
            return value, [_Problem(f"must be at most {hi} (got {value})")]
        return value, None

    return check


def _real(shape: Mapping[str, Any]) -> _Check:
    lo, hi = _bounds(shape, None, None)

    def check(value: Any) -> tuple[Any, _Problems]:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return value, [_Problem(f"expected a number, got {_kind(value)}")]
        if lo is not None and value < lo:
            return value, [_Problem(f"must be at least {lo} (got {value})")]
        if hi is not None and value > hi:
            return value, [_Problem(f"must be at most {hi} (got {value})")]
        return value, None

    return check


def _boolean(value: Any) -> tuple[Any, _Problems]:
    if isinstance(value, bool):
        return value, None
    return value, [_Problem(f"expected a boolean, got {_kind(value)}")]


def _anything(value: Any) -> tuple[Any, _Problems]:
    """A type this code does not know (a newer botocore's): passed on unchecked."""
    return value, None


def _within(problems: _Problems, segment: str, into: _Problems) -> _Problems:
    """`problems` of a part at `segment` added to `into` (either may be None)."""
    if not problems:
        return into
    for problem in problems:
        problem.segments.append(segment)
    if into is None:
        return problems
    into.extend(problems)
    return into


def _list(shape: Mapping[str, Any], member: _Check) -> _Check:
    lo, hi = _bounds(shape, None, None)

    def check(value: Any) -> tuple[Any, _Problems]:
        if not isinstance(value, list):
            return value, [_Problem(f"expected a list, got {_kind(value)}")]
        out = []
        problems: _Problems = None
        for index, item in enumerate(value):
            cleaned, found = member(item)
            if found:
                problems = _within(found, f"[{index}]", problems)
            out.append(cleaned)
        if lo is not None or hi is not None:
            problems = _within(_size_problem(len(value), lo, hi, "item"), "", problems)
        return out, problems

    return check


def _map(shape: Mapping[str, Any], key: _Check, member: _Check) -> _Check:
    lo, hi = _bounds(shape, None, None)

    def check(value: Any) -> tuple[Any, _Problems]:
        if not isinstance(value, dict):
            return value, [_Problem(f"expected an object, got {_kind(value)}")]
        out = {}
        problems: _Problems = None
        for name, item in value.items():
            _, wrong_key = key(name)
            if wrong_key:
                for problem in wrong_key:
                    problem.text = f"key {_short(name)} {problem.text}"
                problems = _within(wrong_key, "", problems)
            cleaned, found = member(item)
            if found:
                problems = _within(found, f"[{json.dumps(name)}]", problems)
            out[name] = cleaned
        if lo is not None or hi is not None:
            problems = _within(_size_problem(len(value), lo, hi, "entry"), "", problems)
        return out, problems

    return check


def _structure(members: Mapping[str, _Check], required: Iterable[str]) -> _Check:
    needed = tuple(required)

    def check(value: Any) -> tuple[Any, _Problems]:
        if not isinstance(value, dict):
            return value, [_Problem(f"expected an object, got {_kind(value)}")]
        out = {}
        problems: _Problems = None
        for name, item in value.items():
            member = members.get(name)
            if member is None or item is None:
                continue
            cleaned, found = member(item)
            if found:
                problems = _within(found, "." + name, problems)
            out[name] = cleaned
        for name in needed:
            if name not in out:
                problems = _within([_Problem("required")], "." + name, problems)
        return out, problems

    return check


# A member whose documentation says this takes its enum in any case.
_ANY_CASE = re.compile(r"(aren't|isn't|not) case[- ]sensitive", re.IGNORECASE)


class _Compiler:
    """Turns shapes into checks, each shape once (a recursive shape refers to itself
    through a late lookup). `fold`: an enum matched ignoring case."""

    def __init__(self, shapes: Mapping[str, Mapping[str, Any]]) -> None:
        self._shapes = shapes
        self._made: dict[tuple[str, bool], _Check] = {}
        self._making: set[tuple[str, bool]] = set()

    def check(self, name: str, fold: bool = False) -> _Check:
        key = (name, fold)
        made = self._made.get(key)
        if made is not None:
            return made
        if key in self._making:
            return lambda value: self._made[key](value)
        self._making.add(key)
        try:
            made = self._make(self._shapes[name], fold)
        finally:
            self._making.discard(key)
        self._made[key] = made
        return made

    def _member(self, member: Mapping[str, Any]) -> _Check:
        fold = bool(_ANY_CASE.search(member.get("documentation", "")))
        return self.check(member["shape"], fold)

    def _make(self, shape: Mapping[str, Any], fold: bool) -> _Check:
        kind = shape["type"]
        if kind == "structure":
            members = {name: self._member(member) for name, member in shape["members"].items()}
            return _structure(members, shape.get("required", ()))
        if kind == "list":
            return _list(shape, self.check(shape["member"]["shape"]))
        if kind == "map":
            key, value = shape["key"]["shape"], shape["value"]["shape"]
            return _map(shape, self.check(key), self.check(value))
        if kind == "string":
            return _string(shape, fold)
        if kind == "integer":
            return _whole(shape, 32)
        if kind == "long":
            return _whole(shape, 64)
        if kind in ("double", "float"):
            return _real(shape)
        if kind == "boolean":
            return _boolean
        return _anything


def _message(problems: list[_Problem]) -> str:
    shown = "; ".join(str(problem) for problem in problems[:MAX_REPORTED])
    hidden = len(problems) - MAX_REPORTED
    return f"{shown}; and {hidden} more" if hidden > 0 else shown


def _from_text(kind: str, text: str) -> Any:
    """A query-string value as its shape's type, where it reads as one (else the text,
    which the check then refuses by its type)."""
    if kind in ("integer", "long"):
        try:
            return int(text)
        except ValueError:
            return text
    if kind == "boolean" and text in ("true", "false"):
        return text == "true"
    return text


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


class Operation:
    """One operation of the API: where it is routed from, and its input's check."""

    __slots__ = (
        "_check",
        "_located",
        "_path",
        "_query",
        "input_shape",
        "method",
        "name",
        "output_shape",
        "uri",
    )

    def __init__(
        self,
        name: str,
        raw: Mapping[str, Any],
        shapes: Mapping[str, Mapping[str, Any]],
        compiler: _Compiler,
    ) -> None:
        self.name = name
        self.method: str = raw["http"]["method"]
        self.uri: str = raw["http"]["requestUri"]
        self.input_shape: str | None = raw.get("input", {}).get("shape")
        self.output_shape: str | None = raw.get("output", {}).get("shape")
        # (member, path label) and (member, query name, its shape's type, is a list)
        self._path: list[tuple[str, str]] = []
        self._query: list[tuple[str, str, str, bool]] = []
        if self.input_shape is None:
            self._check: _Check = _structure({}, ())
            self._located: tuple[str, ...] = ()
            return
        shape = shapes[self.input_shape]
        for member, spec in shape.get("members", {}).items():
            where = spec.get("location")
            label = spec.get("locationName", member)
            if where == "uri":
                self._path.append((member, label))
            elif where == "querystring":
                target = shapes[spec["shape"]]
                if target["type"] == "list":
                    item = shapes[target["member"]["shape"]]["type"]
                    self._query.append((member, label, item, True))
                else:
                    self._query.append((member, label, target["type"], False))
        self._located = tuple(member for member, _ in self._path) + tuple(
            member for member, *_ in self._query
        )
        self._check = compiler.check(self.input_shape)

    def parse(self, labels: Mapping[str, str], query: str, document: Any) -> dict[str, Any]:
        """The input members of a request: its JSON body (`document`, None when the
        body is empty), with the members of its path `labels` and its raw `query`
        string merged in; checked against the input shape (`ClientException` naming
        every problem)."""
        if document is None:
            document = {}
        if not isinstance(document, dict):
            raise ClientException(f"request body: expected a JSON object, got {_kind(document)}")
        if self._located:
            document = {k: v for k, v in document.items() if k not in self._located}
            for member, label in self._path:
                document[member] = labels[label]
            if self._query and query:
                pairs = query_pairs(query)
                for member, name, kind, many in self._query:
                    values = [_from_text(kind, value) for key, value in pairs if key == name]
                    if values:
                        document[member] = values if many else values[-1]
        cleaned, problems = self._check(document)
        if problems:
            raise ClientException(_message(problems))
        result: dict[str, Any] = cleaned
        return result


class ServiceModel:
    """The operations of one service model, routed by HTTP method and raw path."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.metadata: Mapping[str, Any] = raw["metadata"]
        self._shapes: Mapping[str, Mapping[str, Any]] = raw["shapes"]
        self._compiler = _Compiler(self._shapes)
        self.operations: dict[str, Operation] = {
            name: Operation(name, spec, self._shapes, self._compiler)
            for name, spec in raw["operations"].items()
        }
        self._fixed: dict[tuple[str, str], Operation] = {}
        self._templated: list[tuple[str, re.Pattern[str], Operation]] = []
        for operation in self.operations.values():
            path = operation.uri.partition("?")[0]
            if "{" not in path:
                self._fixed[operation.method, path] = operation
                continue
            # A label matches one encoded segment (botocore encodes a `/` in a label's
            # value as %2F); a greedy `{label+}` matches the rest of the path.
            pattern = re.sub(
                r"\\\{(\w+)(\\\+)?\\\}",
                lambda m: f"(?P<{m[1]}>.+)" if m[2] else f"(?P<{m[1]}>[^/]+)",
                re.escape(path),
            )
            self._templated.append((operation.method, re.compile(pattern), operation))

    def route(self, method: str, raw_path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation at `method` and `raw_path` (percent-encoded, as received) and
        its path labels' values, decoded; None when there is none."""
        operation = self._fixed.get((method, raw_path))
        if operation is not None:
            return operation, {}
        for wanted, pattern, operation in self._templated:
            if wanted == method:
                found = pattern.fullmatch(raw_path)
                if found:
                    return operation, {k: unquote(v) for k, v in found.groupdict().items()}
        return None

    def check(self, shape: str, value: Any) -> list[str]:
        """The problems of `value` as an instance of `shape` (an output shape, say), as
        messages; empty when it conforms."""
        _, problems = self._compiler.check(shape)(value)
        return [str(problem) for problem in problems or ()]


def query_pairs(query: str) -> list[tuple[str, str]]:
    """A raw query string's (name, value) pairs, percent-decoded, `+` a space as in an
    HTML form (AWS's reading; botocore sends a plus as %2B). The signature check rebuilds
    its canonical query from these same pairs, so a member's value is always the one its
    signature covers."""
    pairs = []
    for item in query.split("&") if query else ():
        key, _, value = item.partition("=")
        pairs.append((unquote_plus(key), unquote_plus(value)))
    return pairs


# A `\uD800`-`\uDFFF` escape: JSON can spell a lone surrogate, which is no character
# (no UTF-8 for it: the store cannot write it, no response can carry it).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_json(body: bytes) -> Any:
    """A request body's JSON (None for an empty body); `ClientException` when it is not
    JSON, nests deeper than the parser's stack (an attack, not a request), or spells a
    string that is no Unicode text (a lone surrogate, which AWS refuses as invalid
    UTF-8: kept, it would fail every later response that shows it)."""
    if not body:
        return None
    try:
        document = json.loads(body, parse_constant=_refuse_constant)
    except ValueError as error:
        raise ClientException(f"request body is not valid JSON: {error}") from None
    except RecursionError:
        raise ClientException("request body is not valid JSON: nested too deeply") from None
    # Only a body that spells a surrogate (a pair, most likely: an emoji) is looked at.
    if _SURROGATE_ESCAPE.search(body):
        try:
            json.dumps(document, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise ClientException(
                "request body is not valid JSON: a \\u escape spells a lone surrogate,"
                " which is not a Unicode character"
            ) from None
    return document


class InputCheck:
    """The input check of one operation of another AWS service's botocore model (the
    server answers CloudWatch Logs' GetLogEvents): a JSON object checked as `Operation`
    checks Batch's, `ClientException` naming every problem."""

    def __init__(self, service: str, operation: str) -> None:
        raw = Loader().load_service_model(service, "service-2")
        shape = raw["operations"][operation]["input"]["shape"]
        self._check = _Compiler(raw["shapes"]).check(shape)

    def __call__(self, document: Any) -> dict[str, Any]:
        if not isinstance(document, dict):
            raise ClientException(f"request body: expected a JSON object, got {_kind(document)}")
        cleaned, problems = self._check(document)
        if problems:
            raise ClientException(_message(problems))
        result: dict[str, Any] = cleaned
        return result


@functools.cache
def load() -> ServiceModel:
    """AWS Batch's model from the installed botocore, read once per process."""
    return ServiceModel(Loader().load_service_model(SERVICE, "service-2"))


__all__ = [
    "MAX_REPORTED",
    "SERVICE",
    "InputCheck",
    "Operation",
    "ServiceModel",
    "load",
    "parse_json",
    "query_pairs",
]
