"""Where a piece of a command's template sits in the pipeline's source: the span that an
error about one value (an undefined name, a value inside shell quotes) points at.
"""

from __future__ import annotations

from flowbatch.lang.diagnostics import Span


def narrow(span: Span | None, name: str | None) -> Span | None:
    """The span of `name` inside a one-line string, when it can be found there."""
    if span is None or not name or span.line != span.end_line:
        return span
    line = span.source.line(span.line)
    start = line.find(name, span.col - 1, span.end_col - 1)
    if start < 0:
        return span
    return Span(span.source, span.line, start + 1, span.line, start + 1 + len(name))


def shorten(text: str) -> str:
    """`text`, cut to fit in a one-line message."""
    return text if len(text) <= 60 else text[:57] + "..."


def piece_span(span: Span | None, text: str, offset: int, length: int) -> Span | None:
    """The span of `text[offset:offset + length]`, where `text` is the value of the
    string at `span`; `span` itself when the piece cannot be found in the source (an
    escape sequence before it on its line, say)."""
    if span is None:
        return None
    line_start = text.rfind("\n", 0, offset) + 1
    piece = text[offset : offset + max(length, 1)].split("\n", 1)[0]
    if not piece:
        return span
    nth = text.count(piece, line_start, offset)
    line_no = span.line + text.count("\n", 0, offset)
    opening = span.source.line(span.line)[span.col - 1 :]
    if opening.startswith('"""') and not opening[3:].strip():
        line_no += 1  # a long string's first line starts after its `"""`
    if line_no > span.end_line:
        return span
    source = span.source.line(line_no)
    col = source.find(piece, span.col - 1 if line_no == span.line else 0)
    for _ in range(nth):
        if col < 0:
            break
        col = source.find(piece, col + 1)
    if col < 0:
        return span
    return Span(span.source, line_no, col + 1, line_no, col + 1 + len(piece))
