"""The progress reporter: what a person watching `flowbatch run` sees.

On a terminal, one status line that overwrites itself (ninja's), redrawn at most ten
times a second: `[7/12 done, 2 running, 1 failed] align[3] align[4] 00:41`; failures
are printed above it as they happen. Elsewhere (a pipe, a CI log), one plain line per
event: `12:00:01 RUNNING   align[3] attempt 1`. At the end, a summary line with the
counts by final state and every failed job with its reason.

A job here is a unit of work: a single job or one array child. An array parent is not
counted itself, but when it fails before all its children ran, those children count
as failed. The reporter is an event sink: `emit` only records, `flush` (which the
runner calls every 0.2 s) writes. Plain ANSI escapes, so importing this is free.

Names and reasons are shown through `jobview.visible`: a control character in a
status reason (a `--reason`, a process's message) is written out, never sent raw.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Final, TextIO

from flowbatch.outputs.jobview import visible
from flowbatch.run.state import JobEvent, JobState

__all__ = ["Reporter", "color_wanted"]

_S = JobState
_RED: Final = "\x1b[31m"
_GREEN: Final = "\x1b[32m"
_RESET: Final = "\x1b[0m"
_CLEAR_LINE: Final = "\r\x1b[K"
_ACTIVE: Final = frozenset({_S.STARTING, _S.RUNNING})
_STATE_COLORS: Final = {_S.FAILED: _RED, _S.SUCCEEDED: _GREEN}
_MAX_FAILED_LISTED: Final = 20
_MAX_RUNNING_NAMES: Final = 3


def _worth_a_line(ev: JobEvent) -> bool:
    """In a plain log (CI), a line for each attempt that starts and each job that ends,
    and for a retry; SUBMITTED, PENDING, RUNNABLE and STARTING would triple a 10,000-child
    array's log without telling a reader anything the next line does not."""
    if ev.state in (_S.RUNNING, _S.SUCCEEDED, _S.FAILED):
        return True
    return ev.state is _S.RUNNABLE and ev.attempt > 0


def color_wanted(stream: TextIO) -> bool:
    """Whether to color output to `stream`: a terminal, not TERM=dumb, NO_COLOR unset."""
    if os.environ.get("NO_COLOR", "") != "" or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _label(ev: JobEvent) -> str:
    return visible(ev.name if ev.index is None else f"{ev.name}[{ev.index}]")


def _why(ev: JobEvent) -> str:
    """Why an attempt or job failed, in one phrase."""
    parts = []
    if ev.exit_code is not None:
        parts.append(f"exit code {ev.exit_code}")
    reasons = [r for r in (ev.attempt_reason, ev.reason) if r]
    if reasons:
        text = " / ".join(dict.fromkeys(reasons))
        parts.append(f"({text})" if parts else text)
    return visible(" ".join(parts)) or "no reason given"


class Reporter:
    """An EventSink that shows progress on `stream` (normally stderr).

    `total` is how many units (single jobs and array children) the run has; `arrays`
    maps array job names to their sizes so that parents are recognised before any
    child has an event. `clock` measures elapsed time; `utc` prints event times in
    UTC instead of local time; `width` bounds the status line (default: the terminal's).
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        tty: bool,
        color: bool,
        total: int,
        arrays: Mapping[str, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        utc: bool = False,
        width: int | None = None,
        interval: float = 0.1,
    ) -> None:
        self._stream = stream
        self._tty = tty
        self._color = color
        self._total = total
        self._arrays = dict(arrays or {})
        self._clock = clock
        self._start = clock()
        self._utc = utc
        self._width = width
        self._interval = interval
        self._last_draw: float | None = None
        self._drawn_second = -1
        self._dirty = False
        self._status_shown = False
        self._pending: list[str] = []  # lines to write at the next flush or draw
        self._units: dict[str, JobState] = {}
        self._labels: dict[str, str] = {}
        self._reasons: dict[str, str] = {}
        self._running: dict[str, str] = {}  # job id -> label, in start order
        self._parents: set[str] = set()
        self._children_seen: dict[str, int] = {}
        self._unrun: dict[str, tuple[str, int, str]] = {}  # failed parent -> (name, n, why)
        self._counts: dict[JobState, int] = dict.fromkeys(JobState, 0)
        self._closed = False
        self._unwritable = False
        # A plain line's pieces that repeat: its time of day (one strftime a second,
        # not one a line) and each state's padded, painted name.
        self._stamp_second: int | None = None
        self._stamp = ""
        self._state_text = {s: self._paint(s, f"{s.value:<9}") for s in JobState}

    # -- the sink -------------------------------------------------------------------------
    def emit(self, event: JobEvent) -> None:
        job_id = event.job_id
        if event.index is not None:
            parent = job_id.rpartition(":")[0]
            if parent not in self._parents:
                self._note_parent(parent)
            self._unit_event(event)
        elif job_id in self._parents or event.name in self._arrays:
            self._parents.add(job_id)
            self._parent_event(event)
        else:
            self._unit_event(event)
        if self._tty:
            self._dirty = True
            now = self._clock()
            if self._last_draw is None or now - self._last_draw >= self._interval:
                self._draw(now)
        elif _worth_a_line(event):
            self._pending.append(self._line(event))

    def flush(self) -> None:
        if self._tty:
            now = self._clock()
            # Redraw when something changed, or when the elapsed time shown would.
            if self._dirty or self._pending or int(now - self._start) != self._drawn_second:
                self._draw(now)
        elif self._pending:
            self._write("".join(line + "\n" for line in self._pending))
            self._pending.clear()
        self._flush_stream()

    def close(self) -> None:
        """Write what is pending, clear the status line, and print the summary."""
        if self._closed:
            return
        self._closed = True
        if self._tty:
            self._write_pending()
            if self._status_shown:
                self._write(_CLEAR_LINE)
        else:
            self.flush()
        self._write("".join(line + "\n" for line in self.summary()))
        self._flush_stream()

    # -- what the counts say ---------------------------------------------------------------
    @property
    def done(self) -> int:
        unrun = sum(n for _, n, _ in self._unrun.values())
        return self._counts[_S.SUCCEEDED] + self._counts[_S.FAILED] + unrun

    @property
    def failed(self) -> int:
        return self._counts[_S.FAILED] + sum(n for _, n, _ in self._unrun.values())

    @property
    def total(self) -> int:
        """The run's units; never fewer than have been seen (a caller that counted
        array jobs as one must not make `[7/3 done]`)."""
        return max(self._total, len(self._units) + sum(n for _, n, _ in self._unrun.values()))

    @property
    def running(self) -> int:
        return self._counts[_S.STARTING] + self._counts[_S.RUNNING]

    def status_line(self) -> str:
        """The live line: counts, the running jobs, the elapsed time."""
        counts = f"[{self.done}/{self.total} done, {self.running} running"
        failed = f"{self.failed} failed"
        if self._color and self.failed:
            failed = _RED + failed + _RESET
        head = f"{counts}, {failed}]"
        clock = _elapsed(self._clock() - self._start)
        names = list(self._running.values())
        shown = " ".join(names[:_MAX_RUNNING_NAMES])
        if len(names) > _MAX_RUNNING_NAMES:
            shown += f" +{len(names) - _MAX_RUNNING_NAMES}"
        line = " ".join(p for p in (head, shown, clock) if p)
        width = self._width or _terminal_width(self._stream)
        visible = len(line) - (len(_RED) + len(_RESET) if self._color and self.failed else 0)
        if visible >= width and shown:
            room = max(width - 1 - (visible - len(shown)), 0)
            cut = shown[: max(room - 1, 0)] + "…" if room else ""
            line = " ".join(p for p in (head, cut, clock) if p)
        return line

    def summary(self) -> list[str]:
        """The closing lines: counts by final state, then each failed job and why."""
        parts = []
        for state in JobState:
            n = self._counts[state]
            if state is _S.FAILED:
                n = self.failed
            if n:
                parts.append(f"{n} {state.value.lower()}")
        seen = len(self._units) + sum(n for _, n, _ in self._unrun.values())
        if self.total > seen:
            parts.append(f"{self.total - seen} not started")
        head = f"{self.done}/{self.total} done: {', '.join(parts) or 'nothing ran'}"
        lines = [f"{head} in {_elapsed(self._clock() - self._start)}"]
        failures = [
            (self._labels[j], self._reasons.get(j, ""))
            for j, s in self._units.items()
            if s is _S.FAILED
        ]
        failures += [(name, f"{why} ({n} never ran)") for name, n, why in self._unrun.values()]
        for label, why in failures[:_MAX_FAILED_LISTED]:
            lines.append(f"  {self._paint(_S.FAILED, 'FAILED')} {label}: {why}")
        if len(failures) > _MAX_FAILED_LISTED:
            lines.append(f"  ... and {len(failures) - _MAX_FAILED_LISTED} more failed")
        return lines

    # -- internals ------------------------------------------------------------------------
    def _write(self, text: str) -> None:
        # Progress is for watching: a reader that went away (EPIPE), a full disk behind
        # a redirect or a closed stream loses the progress, never the run.
        if not self._unwritable:
            try:
                self._stream.write(text)
            except (OSError, ValueError):
                self._unwritable = True

    def _flush_stream(self) -> None:
        if not self._unwritable:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._unwritable = True

    def _note_parent(self, parent_id: str) -> None:
        if parent_id in self._parents:
            return
        self._parents.add(parent_id)
        # Without `arrays`, a parent's own early events were taken for a single job.
        old = self._units.pop(parent_id, None)
        if old is not None:
            self._counts[old] -= 1
            self._running.pop(parent_id, None)

    def _unit_event(self, ev: JobEvent) -> None:
        job_id, state, counts = ev.job_id, ev.state, self._counts
        old = self._units.get(job_id)
        if old is not None:
            counts[old] -= 1
        self._units[job_id] = state
        counts[state] += 1
        label = self._labels.get(job_id)
        if label is None:  # a job's label (its name and index) is made once
            label = self._labels[job_id] = _label(ev)
        if state in _ACTIVE:
            self._running.setdefault(job_id, label)
        else:
            self._running.pop(job_id, None)
        if state is _S.FAILED:
            self._reasons[job_id] = _why(ev)
            if self._tty:
                self._pending.append(self._line(ev))
        if old is None and ev.index is not None:  # a child's first event
            parent = job_id.rpartition(":")[0]
            self._children_seen[parent] = self._children_seen.get(parent, 0) + 1

    def _parent_event(self, ev: JobEvent) -> None:
        if ev.state is not _S.FAILED:
            return
        size = self._arrays.get(ev.name, 0)
        never_ran = size - self._children_seen.get(ev.job_id, 0)
        if never_ran > 0:
            why = visible(ev.reason) or "array job failed"
            self._unrun[ev.job_id] = (visible(ev.name), never_ran, why)
            if self._tty:
                self._pending.append(self._line(ev))

    def _line(self, ev: JobEvent) -> str:
        second = math.floor(ev.time)
        if second != self._stamp_second:
            stamp = time.gmtime(second) if self._utc else time.localtime(second)
            self._stamp = time.strftime("%H:%M:%S", stamp)
            self._stamp_second = second
        # A job id is always the same name and index: its label is made once.
        label = self._labels.get(ev.job_id) or _label(ev)
        text = f"{self._stamp} {self._state_text[ev.state]} {label}"
        if ev.attempt:
            text += f" attempt {ev.attempt}"
        if ev.state is _S.FAILED:
            text += f": {_why(ev)}"
        elif ev.state is _S.SUCCEEDED and ev.reason:  # e.g. reused by --resume
            text += f" ({visible(ev.reason)})"
        elif ev.state is _S.RUNNABLE and ev.attempt:
            text += f" failed, will retry: {_why(ev)}"
        return text

    def _paint(self, state: JobState, text: str) -> str:
        color = _STATE_COLORS.get(state)
        return f"{color}{text}{_RESET}" if self._color and color else text

    def _write_pending(self) -> None:
        if self._pending:
            if self._status_shown:
                self._write(_CLEAR_LINE)
            self._write("".join(line + "\n" for line in self._pending))
            self._pending.clear()
            self._status_shown = False

    def _draw(self, now: float) -> None:
        self._write_pending()
        self._write(_CLEAR_LINE + self.status_line())
        self._status_shown = True
        self._last_draw = now
        self._drawn_second = int(now - self._start)
        self._dirty = False


def _terminal_width(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 80
