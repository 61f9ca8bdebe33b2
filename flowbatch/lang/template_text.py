"""Reading a template's text without Jinja: the `Ref::` placeholders, the values of the
simple commands rendered without compiling anything, and the text as Jinja reads it
(data with whitespace control and line breaks applied, values, statements).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

REF = re.compile(r"Ref::([A-Za-z_][A-Za-z0-9_\-]*)")


def uses_jinja(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


# Most commands only insert values: `render {{ array.index }} --q {{ params.quality }}`.
# Those are rendered here, with Jinja's exact meaning (str() of the value, shell-quoted
# unless `| raw`, an unknown name an error), without compiling a Jinja template: a
# compile costs ~0.7 ms, which is 7 s for a generated pipeline of 10,000 jobs whose
# commands all differ. Anything else (filters, expressions, control flow) goes to Jinja.
_SIMPLE = re.compile(r"\{\{-?\s*(params|array|job)\.([A-Za-z_]\w*)\s*(\|\s*raw\s*)?-?\}\}")
# A literal piece of the author's text, a value (namespace, name, raw), or a `Ref::`
# placeholder ("Ref", name, False).
Part = str | tuple[str, str, bool]


@functools.lru_cache(maxsize=16384)
def simple_parts(text: str) -> tuple[Part, ...] | None:
    if "{%" in text or "{#" in text or "{{-" in text or "-}}" in text:
        return None
    parts: list[Part] = []
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
    split: list[Part] = []
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


JINJA_TAG = re.compile(r"\{[{%#]")
_RAW_BLOCK = re.compile(r"\{%[-+]?\s*raw\s*[-+]?%\}")
_END_RAW = re.compile(r"\{%[-+]?\s*endraw\s*[-+]?%\}")
_RAW_FILTER = re.compile(r"\|\s*raw\s*-?\}\}\Z")
_TAG_END = re.compile(r"""(}}|%}|#}|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""", re.S)
_STATEMENT = re.compile(r"\{%[-+]?\s*(\w*)")
_NEWLINES = re.compile(r"\r\n?")


def tag_end(text: str, pos: int, close: str) -> int:
    """Where the tag opened before `pos` ends (after `close`); len(text) if it never does.
    String literals inside the tag may hold the closing characters."""
    for m in _TAG_END.finditer(text, pos):
        if m.group() == close:
            return m.end()
    return len(text)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "data" (the author's text, as Jinja will emit it), "value", "ref", "tag"
    start: int
    end: int
    text: str = ""  # data: the text; tag: the statement's name
    raw: bool = False  # value: written `| raw`; tag: `{% set %}` with a body


def tokenize(text: str, jinja: bool) -> list[Token]:
    """`text` as Jinja reads it: data (with Ref:: placeholders split out), values and
    statements. Comments are dropped; whitespace control and newlines applied to data."""
    out: list[Token] = []
    strip_next = False

    def data(start: int, end: int, strip_end: bool) -> None:
        nonlocal strip_next
        pieces: list[Token] = []
        pos = start
        for ref in REF.finditer(text, start, end):
            pieces += [Token("data", pos, ref.start()), Token("ref", ref.start(), ref.end())]
            pos = ref.end()
        pieces.append(Token("data", pos, end))
        for k, piece in enumerate(pieces):
            if piece.kind != "data":
                out.append(piece)
                continue
            chunk = text[piece.start : piece.end]
            if k == 0 and strip_next:
                chunk = chunk.lstrip()
            if k == len(pieces) - 1 and strip_end:
                chunk = chunk.rstrip()
            if jinja:
                chunk = _NEWLINES.sub("\n", chunk)
            if chunk:
                out.append(Token("data", piece.start, piece.end, chunk))
        strip_next = False

    pos = 0
    while (m := JINJA_TAG.search(text, pos)) is not None:
        tag = m.group()
        data(pos, m.start(), text.startswith("-", m.end()))
        if tag == "{#":
            pos = tag_end(text, m.end(), "#}")
        elif tag == "{%":
            pos = tag_end(text, m.end(), "%}")
            if _RAW_BLOCK.fullmatch(text, m.start(), pos):
                close = _END_RAW.search(text, pos)
                stop = len(text) if close is None else close.start()
                strip_next = text[pos - 3 : pos - 2] == "-"
                # A raw block is the author's text: placeholders there are filled too.
                data(pos, stop, close is not None and text.startswith("-", close.start() + 2))
                pos = len(text) if close is None else close.end()
            else:
                name = m2.group(1) if (m2 := _STATEMENT.match(text, m.start())) else ""
                block = name == "set" and "=" not in text[m.start() : pos]
                out.append(Token("tag", m.start(), pos, name, block))
        else:
            pos = tag_end(text, m.end(), "}}")
            raw = _RAW_FILTER.search(text, m.start(), pos) is not None
            out.append(Token("value", m.start(), pos, raw=raw))
        strip_next = text[pos - 3 : pos - 2] == "-"
    data(pos, len(text), False)
    return out


def code_size(text: str) -> int:
    """How many characters of `text` are inside Jinja tags."""
    size, pos = 0, 0
    while (m := JINJA_TAG.search(text, pos)) is not None:
        pos = tag_end(text, m.end(), {"{{": "}}", "{%": "%}", "{#": "#}"}[m.group()])
        size += 0 if m.group() == "{#" else pos - m.start()
    return size
