"""Showing what a job record holds to a reader: its text with control characters
written out, clipped to a width, and the tail of its log. Shared by the JUnit file,
the step summary, the HTML report and the CLI. (A record's label, duration and
whether it ever ran are its own: `flowbatch.run.records.JobRecord`.)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# C0 and C1 controls (ESC starts a terminal escape sequence, CSI U+009B is one on its
# own), DEL, and the Unicode marks that reorder or break lines where a reader sees one.
_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible(text: str, *, keep: str = "") -> str:
    """`text` with terminal control characters (and line or direction marks) written
    out, `\\x1b`, `\\n`, `\\u202e`, so that a reason, a param or a name printed to a
    terminal or a CI log can never move the cursor, recolour, clear or forge a line.
    Characters in `keep` (e.g. "\\n") pass as they are."""
    if _INVISIBLE.search(text) is None:  # the usual case, asked of every event shown
        return text

    def shown(found: re.Match[str]) -> str:
        ch = found.group()
        if ch in keep:
            return ch
        code = ord(ch)
        return _NAMED.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")

    return _INVISIBLE.sub(shown, text)


def clip(text: str, width: int) -> str:
    """`text` on one line, cut to `width` characters with an ellipsis ("" below 2)."""
    text = " ".join(text.split())
    if width <= 1:
        return ""
    return text if len(text) <= width else text[: width - 1] + "…"


def tail_of(path: Path | str, lines: int = 30, *, max_bytes: int = 64 * 1024) -> str:
    """The last `lines` lines of a file, reading at most `max_bytes` from its end (a
    log may be gigabytes); '' for a missing file."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(size - max_bytes, 0)
            f.seek(start)
            data = f.read()
    except OSError:
        return ""
    found = data.decode("utf-8", errors="replace").splitlines()
    if start > 0 and found:
        found = found[1:]  # began mid-line: that line's start was not read
    kept = found[-lines:] if lines > 0 else []
    return "\n".join(kept)
