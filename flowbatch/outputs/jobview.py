"""Reading a job the way the store shows it (a DescribeJobs-shaped dict): its label,
duration, exit code, whether it ever ran, and the tail of its log. Shared by the JUnit
file, the step summary, the HTML report and `flowbatch jobs`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flowbatch.run.state import DEPENDENCY_FAILED

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


def label(job: Mapping[str, Any]) -> str:
    """`name`, or `name[index]` for an array child."""
    index = (job.get("arrayProperties") or {}).get("index")
    return str(job["jobName"]) if index is None else f"{job['jobName']}[{index}]"


def duration_seconds(job: Mapping[str, Any]) -> float | None:
    """Seconds from the job's start to its stop, or None if it has not both."""
    started, stopped = job.get("startedAt"), job.get("stoppedAt")
    if started is None or stopped is None:
        return None
    return max(float(stopped) - float(started), 0.0) / 1000


def exit_code(job: Mapping[str, Any]) -> int | None:
    code = (job.get("container") or {}).get("exitCode")
    return None if code is None else int(code)


def never_ran(job: Mapping[str, Any]) -> bool:
    """A job that failed because something it waits for failed (AWS's reason text)."""
    return job.get("status") == "FAILED" and str(job.get("statusReason") or "").startswith(
        DEPENDENCY_FAILED
    )


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
