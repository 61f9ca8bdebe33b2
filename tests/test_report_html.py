"""`flowbatch report`: lanes of the timeline, arrays collapsed, escaping, and the page of a
real run read back by headless Chromium."""

from __future__ import annotations

import dataclasses
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from engine_helpers import engine_unavailable
from proc_helpers import run_to_end

from flowbatch.cli import app
from flowbatch.outputs.report.data import (
    LISTED_CHILDREN,
    AttemptBar,
    FailedJob,
    JobRow,
    RunReport,
    collect,
)
from flowbatch.outputs.report.html import graph_for_html, report_html
from flowbatch.outputs.report.timeline import assign_lanes, timeline_svg
from flowbatch.run.records import AttemptRecord, JobDetail, JobRecord, RunRecord, RunStatus
from flowbatch.run.state import JobState

# -- lanes -----------------------------------------------------------------------------------


def bar(start: float, stop: float | None, *, host: str = "h1", state: str = "SUCCEEDED",
        name: str = "a", label: str | None = None, attempt: int = 1) -> AttemptBar:  # fmt: skip
    return AttemptBar(
        label=label or name, name=name, attempt=attempt, compute="c", host=host,
        start=start, stop=stop, state=state,
    )  # fmt: skip


def test_overlapping_attempts_get_separate_lanes_and_free_lanes_are_reused() -> None:
    lanes = assign_lanes([bar(0, 10, label="x"), bar(5, 8, label="y"), bar(9, 12, label="z")], 12)
    assert [[b.label for b in lane.bars] for lane in lanes] == [["x"], ["y", "z"]]
    assert [lane.slot for lane in lanes] == [1, 2]


def test_each_host_has_its_own_lanes() -> None:
    lanes = assign_lanes([bar(0, 10, host="h2"), bar(0, 10, host="h1")], 10)
    assert [(lane.host, lane.slot) for lane in lanes] == [("h1", 1), ("h2", 1)]


def test_no_lane_holds_overlapping_attempts_and_lanes_are_as_few_as_the_peak() -> None:
    rng = random.Random(7)
    bars = []
    for _ in range(300):
        start = rng.uniform(0, 100)
        bars.append(bar(start, start + rng.uniform(0, 10)))
    lanes = assign_lanes(bars, 110)
    for lane in lanes:
        for before, after in zip(lane.bars, lane.bars[1:], strict=False):
            assert before.stop is not None and before.stop <= after.start
    # Greedy interval partitioning is optimal: as many lanes as attempts at once.
    points = sorted({b.start for b in bars})
    peak = max(sum(1 for b in bars if b.start <= t < (b.stop or 0)) for t in points)
    assert len(lanes) == peak
    assert sum(len(lane.bars) for lane in lanes) == len(bars)


def test_an_unfinished_attempt_lasts_until_the_end_and_blocks_its_lane() -> None:
    lanes = assign_lanes([bar(0, None, state="RUNNING"), bar(5, 6)], end=20)
    assert len(lanes) == 2


def test_ten_thousand_attempts_make_a_small_timeline_and_failures_stay_visible() -> None:
    bars = [bar(i * 0.5, i * 0.5 + 0.5, label=f"a[{i}]") for i in range(10_000)]
    bars[4321] = bar(4321 * 0.5, 4321 * 0.5 + 0.5, label="a[4321]", state="FAILED")
    svg = timeline_svg(bars)
    assert svg.count("<rect") < 50
    assert svg.count('class="bar failed"') == 1 and "a[4321] attempt 1: FAILED" in svg
    assert len(svg) < 20_000


# -- collecting from store-shaped data -------------------------------------------------------


def _job(job_id: str, name: str, status: str, *, reason: str = "", attempts: int = 1,
         exit_code: int | None = None, **extra: Any) -> JobRecord:  # fmt: skip
    return JobRecord(
        job_id=job_id, name=name, run_id="r1", status=JobState(status), status_reason=reason,
        created_at=0, started_at=None, stopped_at=None, queue="default", attempts=attempts,
        exit_code=exit_code, **extra,
    )  # fmt: skip


def _child(parent: str, i: int, status: str) -> JobRecord:
    failed = status == "FAILED"
    return dataclasses.replace(
        _job(f"{parent}:{i}", "frames", status, exit_code=3 if failed else 0, array_index=i,
             reason="Essential container in task exited" if failed else ""),
        started_at=1000 + i, stopped_at=2000 + i,
    )  # fmt: skip


def _describe_from(kids: Sequence[JobRecord], peak: int | None = None) -> Any:
    by_id = {k.job_id: k for k in kids}

    def describe(job_id: str) -> JobRecord:
        k = by_id[job_id]
        attempt = AttemptRecord(
            started_at=k.started_at, stopped_at=k.stopped_at, exit_code=k.exit_code,
            reason=None, status_reason=None, log_path=None, compute="local", host="h",
            peak_memory=None if peak is None else peak + (k.array_index or 0),
        )  # fmt: skip
        detail = JobDetail(
            is_cancelled=False, is_terminated=False, compute="local", attempts=(attempt,),
            depends_on=(), parameters={}, tags={}, retry_attempts=1, command=None, image=None,
            vcpus=1, memory=64, gpus=0, environment={}, reason=None, log_path=None,
            timeout=None, summary_updated_at=None,
        )  # fmt: skip
        return dataclasses.replace(k, detail=detail)

    return describe


RUN = RunRecord(run_id="r1", pipeline="p.flow", params={}, status=RunStatus.FAILED,
                status_reason="", created_at=0, ended_at=9000, counts={})  # fmt: skip


def _array_run(size: int, failing: set[int], peak: int | None = None) -> RunReport:
    summary = {JobState.SUCCEEDED: size - len(failing), JobState.FAILED: len(failing)}
    parent = _job("P", "frames", "FAILED", reason="x", attempts=0, array_size=size,
                  status_summary=summary)  # fmt: skip
    kids = [_child("P", i, "FAILED" if i in failing else "SUCCEEDED") for i in range(size)]
    return collect(
        RUN, [parent], children=lambda _id, _status: kids, describe=_describe_from(kids, peak)
    )


def test_an_array_is_one_row_with_its_failed_children_capped() -> None:
    failing = set(range(0, 400, 5))
    found = _array_run(400, failing)
    (row,) = found.jobs
    assert row.size == 400 and row.attempts == 400 and row.failed_total == len(failing)
    assert len(row.failed_children) == LISTED_CHILDREN
    assert row.failed_children[0].label == "frames[0]" and row.failed_children[0].exit_code == 3
    assert len(found.attempts) == 400
    page = report_html(found)
    assert f"and {len(failing) - LISTED_CHILDREN} more failed" in page
    assert page.count('<tr class="child">') == LISTED_CHILDREN + 1


def test_missing_peak_memory_is_reported_and_present_peak_memory_is_shown() -> None:
    without = _array_run(3, {1})
    assert any("peak memory" in m for m in without.missing)
    with_peak = _array_run(3, {1}, peak=100)
    assert with_peak.missing == () and with_peak.jobs[0].peak_memory == 102
    assert "102 MiB" in report_html(with_peak)


def test_a_job_that_never_ran_does_not_make_peak_memory_missing() -> None:
    never = _job("N", "later", "FAILED", attempts=0, reason="Dependency failed")
    kids = [_child("P", 0, "FAILED")]
    ran = _job("P:0", "first", "FAILED", reason="x", exit_code=3)
    found = collect(
        RUN, [ran, never], children=lambda _i, _s: [], describe=_describe_from(kids, 100)
    )
    assert found.missing == ()
    assert [row.peak_memory for row in found.jobs] == [100, None]


def test_text_from_users_and_processes_is_escaped() -> None:
    failure = FailedJob(label="bad<job>", exit_code=1, reason="<b>r</b>", attempts=1,
                        never_ran=False, log_tail="<script>alert(1)</script> & more")  # fmt: skip
    row = JobRow(name="bad<job>", status=JobState.FAILED, attempts=1, duration=1.0, exit_code=1,
                 reason="<b>r</b>", peak_memory=None, compute="local", failure=failure)  # fmt: skip
    page = report_html(RunReport(
        run_id="r<1>", pipeline="p.flow", status=RunStatus.FAILED, created_at=0.0, ended_at=1.0,
        jobs=(row,), attempts=(bar(0, 1, name="bad<job>", state="FAILED"),),
    ))  # fmt: skip
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert "<b>r</b>" not in page and "bad<job>" not in page


def test_graphviz_prolog_and_doctype_are_dropped() -> None:
    svg = (
        '<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN"\n'
        ' "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n<svg width="1"><g/></svg>\n'
    )
    assert graph_for_html(svg.encode()) == '<svg width="1"><g/></svg>'


# -- a real run, through the CLI and a browser -----------------------------------------------

FLOW = """
job prep {
  command = "echo preparing"
  memory  = 64MiB
}
job frames {
  command = "[ {{ array.index }} -ne 2 ] || { echo 'boom <b>' >&2; exit 3; }"
  memory  = 64MiB
  array   = 4
  after   = [prep]
}
job flaky {
  command = "echo 'went wrong' >&2; exit 7"
  memory  = 64MiB
  after   = [prep]
}
"""
_URL = re.compile(r"""(\w+(?::\w+)?)?=?["']?(https?://[^\s"'<>]+)""")


@pytest.fixture(scope="module")
def recorded_run() -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        flow = Path(tmp) / "demo.flow"
        flow.write_text(FLOW)
        state = Path(tmp) / "state"
        done = run_to_end(
            [sys.executable, "-m", "flowbatch", "run", str(flow), "--state-dir", str(state)]
        )
        assert done.returncode == 1, done.stderr
        yield flow, state


def _report(state: Path, out: Path) -> tuple[str, str]:
    result = CliRunner().invoke(
        app, ["report", "latest", "-o", str(out), "--state-dir", str(state)]
    )
    assert result.exit_code == 0, result.output
    return out.read_text(), result.output


def _network_urls(page: str) -> list[str]:
    """Every http(s) URL in the page that is not an XML namespace name."""
    return [url for attr, url in _URL.findall(page) if not (attr or "").startswith("xmlns")]


@pytest.mark.slow
def test_report_of_a_real_run_has_graph_timeline_failures_and_no_network(
    recorded_run: Any, tmp_path: Path
) -> None:
    _, state = recorded_run
    page, _ = _report(state, tmp_path / "r.html")
    assert '<div class="scroll graph"><svg' in page and 'class="timeline"' in page
    assert "flaky" in page and "went wrong" in page and "boom &lt;b&gt;" in page
    assert "frames[2]" in page and "array of 4" in page
    assert _network_urls(page) == []
    assert "<script" not in page and "<link" not in page


@pytest.mark.slow
def test_without_the_pipeline_file_the_report_says_so(recorded_run: Any, tmp_path: Path) -> None:
    flow, state = recorded_run
    copy = tmp_path / "state"
    shutil.copytree(state, copy)
    moved = flow.with_suffix(".moved")
    flow.rename(moved)
    try:
        page, output = _report(copy, tmp_path / "r.html")
    finally:
        moved.rename(flow)
    assert "No graph: the pipeline file" in page and "is gone" in page and "no graph" in output
    assert 'class="timeline"' in page


@pytest.mark.slow
def test_a_changed_pipeline_file_gets_no_graph(recorded_run: Any, tmp_path: Path) -> None:
    flow, state = recorded_run
    original = flow.read_text()
    flow.write_text(original.replace("exit 7", "exit 8"))
    try:
        page, _ = _report(state, tmp_path / "r.html")
    finally:
        flow.write_text(original)
    assert "changed since the run (jobs defined differently: flaky)" in page
    assert '<div class="scroll graph">' not in page


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        engine_unavailable("chromium", "no chromium on PATH (apt-get install -y chromium)")
    return found


def _browser(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}"]  # fmt: skip
    return subprocess.run([_chromium(), *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.browser
def test_chromium_renders_the_report(recorded_run: Any, tmp_path: Path) -> None:
    _, state = recorded_run
    out = tmp_path / "r.html"
    _report(state, out)
    done = _browser("--dump-dom", out.as_uri(), profile=tmp_path / "profile")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    # The DOM as the browser built it: the failed jobs, their exit codes, both drawings.
    assert re.search(r"<td>flaky</td>.*?<td class=\"num\">7</td>", dom, re.DOTALL)
    assert re.search(r"<td>frames\[2\]</td>.*?<td class=\"num\">3</td>", dom, re.DOTALL)
    assert re.search(r'<div class="scroll graph"><svg[^>]*>.*?class="node"', dom, re.DOTALL)
    bars = re.findall(r'<g class="bar (\w+)"><title>([^<]*)</title>', dom)
    assert ("failed", "flaky attempt 1: FAILED, exit code 7") in [
        (state, title.split("\n")[0]) for state, title in bars
    ]
    shot = tmp_path / "shot.png"
    done = _browser(
        f"--screenshot={shot}", "--window-size=1200,1400", out.as_uri(), profile=tmp_path / "p2"
    )
    assert done.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
