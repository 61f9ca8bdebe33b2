"""The timeline of a run: every attempt on every compute slot, as inline SVG.

Attempts are grouped by compute environment and host, and each group is split into
lanes greedily (an attempt takes the lowest-numbered lane free at its start), so a lane
is one slot of that host: no two attempts in a lane overlap. Each bar carries a
`<title>` (job, attempt, state, times) that browsers show on hover.

A 10,000-child array must not make a 10,000-bar file: neighbours in one lane of the
same job and outcome closer together than one pixel are drawn as one bar (its title
says how many attempts it holds), so the size grows with the drawing's width and the
number of lanes, not with the number of attempts.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Final

from flowbatch.outputs.graph import STATE_LOOK
from flowbatch.outputs.jobview import clip
from flowbatch.outputs.report.data import AttemptBar
from flowbatch.run.state import JobState

__all__ = ["BAR_COLOURS", "Lane", "assign_lanes", "timeline_svg"]

BAR_COLOURS: Final = {
    "SUCCEEDED": STATE_LOOK[JobState.SUCCEEDED].border,
    "FAILED": STATE_LOOK[JobState.FAILED].border,
    "RETRIED": "#e69138",  # failed, then tried again: a warning, not a failure
    "RUNNING": STATE_LOOK[JobState.RUNNING].border,
}
PLOT_WIDTH: Final = 960
LABEL_WIDTH: Final = 170
LANE_HEIGHT: Final = 16
LANE_GAP: Final = 3
AXIS_HEIGHT: Final = 22
MIN_BAR: Final = 1.0  # px: a bar narrower than this would not show at all
MIN_LOUD_BAR: Final = 2.5  # px: failures must be seen at any zoom
_LOUD: Final = frozenset({"FAILED", "RETRIED"})


@dataclass(frozen=True, slots=True)
class Lane:
    """One slot of one host: its attempts in start order, none overlapping."""

    compute: str
    host: str
    slot: int  # from 1 within its host
    bars: tuple[AttemptBar, ...]

    @property
    def title(self) -> str:
        host = self.host or "?"
        return f"{self.compute}/{host} #{self.slot}" if self.compute else f"{host} #{self.slot}"


def assign_lanes(bars: Iterable[AttemptBar], end: float) -> list[Lane]:
    """The attempts laid out in lanes, sorted by (compute, host, slot). An unfinished
    attempt (stop None) is taken to last until `end`."""
    groups: dict[tuple[str, str], list[AttemptBar]] = {}
    for bar in bars:
        groups.setdefault((bar.compute, bar.host), []).append(bar)
    lanes: list[Lane] = []
    for (compute, host), members in sorted(groups.items()):
        members.sort(key=lambda b: (b.start, _stop(b, end), b.label, b.attempt))
        busy: list[tuple[float, int]] = []  # (free from, lane) of lanes in use
        free: list[int] = []  # lanes free now, lowest first
        placed: list[list[AttemptBar]] = []
        for bar in members:
            while busy and busy[0][0] <= bar.start:
                heapq.heappush(free, heapq.heappop(busy)[1])
            if free:
                lane = heapq.heappop(free)
            else:
                lane = len(placed)
                placed.append([])
            placed[lane].append(bar)
            heapq.heappush(busy, (_stop(bar, end), lane))
        lanes.extend(Lane(compute, host, i + 1, tuple(b)) for i, b in enumerate(placed))
    return lanes


def timeline_svg(bars: Sequence[AttemptBar], *, end: float | None = None) -> str:
    """The attempts as an SVG element (no XML prolog, for inlining in HTML); '' when
    no attempt started. `end` closes unfinished attempts (default: the last stop)."""
    if not bars:
        return ""
    t0 = min(b.start for b in bars)
    seen = [b.start for b in bars] + [b.stop for b in bars if b.stop is not None]
    t1 = max([*seen, end] if end is not None else seen)
    span = max(t1 - t0, 1e-3)
    lanes = assign_lanes(bars, t1)
    scale = PLOT_WIDTH / span
    height = AXIS_HEIGHT + len(lanes) * (LANE_HEIGHT + LANE_GAP) + 4
    width = LABEL_WIDTH + PLOT_WIDTH + 10
    out = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}"'
        f' height="{height}" viewBox="0 0 {width} {height}" role="img"'
        ' shape-rendering="crispEdges"'
        f' aria-label="timeline of {len(bars)} attempts on {len(lanes)} slots">'
    ]
    # Stripes first, then the grid over them, then the bars over both.
    for row in range(0, len(lanes), 2):
        y = AXIS_HEIGHT + row * (LANE_HEIGHT + LANE_GAP)
        out.append(
            f'<rect class="lane" x="{LABEL_WIDTH}" y="{y - 1}" width="{PLOT_WIDTH}"'
            f' height="{LANE_HEIGHT + 2}"/>'
        )
    out.extend(_axis(span, scale, height))
    for row, lane in enumerate(lanes):
        y = AXIS_HEIGHT + row * (LANE_HEIGHT + LANE_GAP)
        out.append(
            f'<text class="lane-label" x="{LABEL_WIDTH - 6}" y="{y + LANE_HEIGHT - 4}"'
            f' text-anchor="end">{escape(clip(lane.title, 26))}</text>'
        )
        groups = _merge(lane.bars, t1, scale)
        # Failures last, so that a thin one is never hidden under a long success.
        groups.sort(key=lambda g: g[0].state in _LOUD)
        out.extend(_bar(group, t0, t1, scale, y) for group in groups)
    out.append("</svg>")
    return "".join(out)


def _stop(bar: AttemptBar, end: float) -> float:
    return end if bar.stop is None else bar.stop


def _merge(bars: Sequence[AttemptBar], end: float, scale: float) -> list[list[AttemptBar]]:
    """Runs of neighbouring bars of one job and outcome less than a pixel apart."""
    groups: list[list[AttemptBar]] = []
    for bar in bars:
        if groups:
            last = groups[-1]
            head = last[0]
            gap = (bar.start - _stop(last[-1], end)) * scale
            if head.name == bar.name and head.state == bar.state and gap < MIN_BAR:
                last.append(bar)
                continue
        groups.append([bar])
    return groups


def _bar(group: list[AttemptBar], t0: float, t1: float, scale: float, y: int) -> str:
    first, last = group[0], group[-1]
    start = first.start
    stop = _stop(last, t1)
    x = LABEL_WIDTH + (start - t0) * scale
    w = max((stop - start) * scale, MIN_LOUD_BAR if first.state in _LOUD else MIN_BAR)
    colour = BAR_COLOURS.get(first.state, "#999999")
    if len(group) == 1:
        code = "" if first.exit_code is None else f", exit code {first.exit_code}"
        tip = (
            f"{first.label} attempt {first.attempt}: {first.state}{code}\n"
            f"{_clock(start)} → {_clock(stop)} ({_seconds(stop - start)})"
            f"\n{first.compute}/{first.host}"
        )
    else:
        tip = (
            f"{first.name}: {len(group)} attempts ({first.label} … {last.label}), "
            f"{first.state}\n{_clock(start)} → {_clock(stop)}\n{first.compute}/{first.host}"
        )
    text = ""
    if w > 48:
        # A name inside a wide bar saves a hover; clipped to what fits.
        text = (
            f'<text class="bar-label" x="{x + 3:.1f}" y="{y + LANE_HEIGHT - 4}">'
            f"{escape(clip(first.label if len(group) == 1 else first.name, int(w / 6.5)))}</text>"
        )
    return (
        f'<g class="bar {first.state.lower()}"><title>{escape(tip)}</title>'
        f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{LANE_HEIGHT}" fill="{colour}"/>'
        f"{text}</g>"
    )


def _axis(span: float, scale: float, height: int) -> list[str]:
    step = _nice_step(span / 8)
    out = []
    tick = 0.0
    while tick <= span + 1e-9:
        x = LABEL_WIDTH + tick * scale
        out.append(
            f'<line class="tick" x1="{x:.1f}" y1="{AXIS_HEIGHT - 6}" x2="{x:.1f}" y2="{height}"/>'
            f'<text class="tick-label" x="{x:.1f}" y="{AXIS_HEIGHT - 9}"'
            f' text-anchor="middle">{_offset(tick)}</text>'
        )
        tick += step
    return out


def _nice_step(raw: float) -> float:
    """The smallest of 1, 2, 5 × 10^k seconds (or 1, 2, 5, 10, 15, 30 minutes) ≥ raw."""
    if raw <= 0:
        return 1.0
    for minutes in (1, 2, 5, 10, 15, 30, 60, 120, 240, 480, 720, 1440):
        if 60 <= raw <= minutes * 60:
            return minutes * 60.0
    power = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 5, 10):
        if mult * power >= raw:
            return float(mult * power)
    return float(10 * power)


def _offset(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g}s"
    if seconds < 3600:
        m, s = divmod(round(seconds), 60)
        return f"{m}m" if s == 0 else f"{m}m{s:02d}s"
    h, rest = divmod(round(seconds), 3600)
    return f"{h}h" if rest == 0 else f"{h}h{rest // 60:02d}m"


def _seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 60 else _offset(value)


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S.%f")[:-3]
