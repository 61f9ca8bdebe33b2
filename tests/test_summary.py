"""The GitHub step summary of a run: a real failing run (`flowbatch run` in a
subprocess, read back from the store) parsed as Markdown with markdown-it-py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token
from run_helpers import run_for_real

from flowbatch.lang.compile import Plan
from flowbatch.lang.load import load, load_text
from flowbatch.outputs.step_summary import format_duration, outcome, step_summary
from flowbatch.run.records import JobRecord, RunStatus
from flowbatch.run.state import JobState
from flowbatch.store.jobstore import Store

PIPELINE = """\
job prep {
  command = "echo prep"
}
job bad {
  command = "echo failing >&2; exit 3"
  after = [prep]
}
job after_bad {
  command = "echo never"
  after = [bad]
}
job arr {
  command = "test {{ array.index }} -ne 1 || exit 4"
  array = 3
  after = [prep]
}
"""


class Ran:
    def __init__(self, plan: Plan, run_id: str, store: Store) -> None:
        self.plan = plan
        self.run_id = run_id
        self.store = store
        self.jobs = store.job_records(run_id=run_id)

    def children(self, job_id: str, status: JobState | None) -> list[JobRecord]:
        return self.store.job_records(parent=job_id, status=status)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    where = tmp_path_factory.mktemp("summary")
    store, run_id = run_for_real(where, PIPELINE, exit_code=1)
    yield Ran(load(where / "p.flow", {}), run_id, store)
    store.close()


def _tokens(text: str) -> list[Token]:
    return MarkdownIt("commonmark").enable("table").parse(text)


def _tables(tokens: list[Token]) -> dict[str, list[list[str]]]:
    """Every table's rows as the text of their cells, by the header of its 2nd column."""
    tables: list[list[list[str]]] = []
    for i, tok in enumerate(tokens):
        if tok.type == "table_open":
            tables.append([])
        elif tok.type == "tr_open":
            tables[-1].append([])
        elif tok.type in ("td_open", "th_open"):
            inline = tokens[i + 1]
            tables[-1][-1].append("".join(c.content for c in inline.children or []))
    return {table[0][1]: table[1:] for table in tables}


@pytest.mark.slow
def test_failing_run_summary_has_heading_failed_table_and_mermaid(ran: Ran) -> None:
    text = step_summary(ran.plan, ran.jobs, run_id=ran.run_id, children=ran.children)
    tokens = _tokens(text)
    headings = [
        tokens[i + 1].content
        for i, t in enumerate(tokens)
        if t.type == "heading_open" and t.tag == "h2"
    ]
    assert len(headings) == 1 and "failed" in headings[0] and "p.flow" in headings[0]
    fences = [t for t in tokens if t.type == "fence"]
    assert [f.info for f in fences] == ["mermaid"]
    graph = fences[0].content
    assert graph.startswith("flowchart LR")
    assert "classDef failed" in graph and "classDef succeeded" in graph
    tables = _tables(tokens)
    by_job = {r[0]: r for r in tables["Exit code"]}
    assert by_job["bad"][1:] == ["3", "Essential container in task exited"]
    assert by_job["arr[1]"][1] == "4"
    assert by_job["after_bad"][2].startswith("Dependency failed: bad")
    # counts by state: 1 job succeeded, 3 failed; 2 children succeeded, 1 failed
    assert tables["Jobs"] == [["SUCCEEDED", "1", "2"], ["FAILED", "3", "1"]]
    slowest = [r[0] for r in tables["Duration"]]
    assert "bad" in slowest and "arr" not in slowest  # an array parent has no start


@pytest.mark.slow
def test_failed_jobs_that_broke_are_listed_before_those_that_waited(ran: Ran) -> None:
    text = step_summary(ran.plan, ran.jobs, run_id=ran.run_id)
    names = [r[0] for r in _tables(_tokens(text))["Exit code"]]
    assert names.index("bad") < names.index("after_bad")
    assert "arr[1]" not in names  # without a children callback only the array is named


def _row(name: str, status: str, reason: str = "") -> JobRecord:
    return JobRecord(
        job_id=f"id-{name}",
        name=name,
        run_id="r1",
        status=JobState(status),
        status_reason=reason,
        created_at=0,
        started_at=1_000,
        stopped_at=126_000,
        queue="default",
        attempts=1,
        exit_code=0 if status == "SUCCEEDED" else 1,
    )


def test_reasons_cannot_break_the_table_or_inject_html() -> None:
    plan = load_text('job a {\n  command = "true"\n}\n', "x.flow", {})
    jobs = [_row("a", "FAILED", "bad | pipe <script>alert(1)</script>\nnext line")]
    tokens = _tokens(step_summary(plan, jobs, run_id="r1"))
    assert not [t for t in tokens if t.type in ("html_block", "html_inline")]
    failed = _tables(tokens)["Exit code"]
    assert failed == [["a", "1", "bad | pipe <script>alert(1)</script> next line"]]


def test_successful_run_has_no_failed_section() -> None:
    plan = load_text('job a {\n  command = "true"\n}\n', "x.flow", {})
    text = step_summary(plan, [_row("a", "SUCCEEDED")], run_id="r1")
    assert "succeeded" in text.splitlines()[0]
    assert "### Failed" not in text
    assert "2 min 05 s" in text


def test_outcome_and_durations() -> None:
    assert outcome([_row("a", "SUCCEEDED"), _row("b", "FAILED")]) is RunStatus.FAILED
    assert outcome([_row("a", "SUCCEEDED"), _row("b", "RUNNING")]) is RunStatus.INCOMPLETE
    assert outcome([_row("a", "SUCCEEDED")]) is RunStatus.SUCCEEDED
    assert format_duration(0.4) == "0.40 s"
    assert format_duration(59.6) == "1 min 00 s"
    assert format_duration(3725) == "1 h 02 min"
