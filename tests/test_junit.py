"""JUnit XML of a run: a real run (`flowbatch run` in a subprocess, read back from the
store) read by junitparser, as a CI system reads it; escaping of what jobs print."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from junitparser import Failure, JUnitXml, Skipped, TestSuite
from run_helpers import run_for_real

from flowbatch.outputs.jobview import tail_of
from flowbatch.outputs.junit import junit_xml, log_tail_via
from flowbatch.run.records import JobRecord
from flowbatch.run.state import JobState
from flowbatch.store.jobstore import Store

PIPELINE = """\
job prep {
  command = "echo prep"
}
job bad {
  command = "echo 'about to fail <&> \\"quoted\\"' >&2; exit 3"
  after = [prep]
}
job after_bad {
  command = "echo never"
  after = [bad]
}
job arr {
  command = "echo child {{ array.index }}; test {{ array.index }} -ne 1 || exit 4"
  array = 3
  after = [prep]
}
"""


@dataclass
class Ran:
    run_id: str
    jobs: list[JobRecord]
    store: Store

    def children(self, job_id: str, status: JobState | None) -> list[JobRecord]:
        return self.store.job_records(parent=job_id, status=status)

    def job(self, name: str) -> JobRecord:
        return next(j for j in self.jobs if j.name == name)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Any:
    store, run_id = run_for_real(tmp_path_factory.mktemp("junit"), PIPELINE, exit_code=1)
    yield Ran(run_id, store.job_records(run_id=run_id), store)
    store.close()


def _suite(path: Path) -> TestSuite:
    xml = JUnitXml.fromfile(str(path))
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    assert isinstance(suite, TestSuite)
    return suite


def _cases(suite: TestSuite) -> dict[str, Any]:
    return {case.name: case for case in suite}


@pytest.mark.slow
def test_failing_run_reads_back_with_counts_exit_code_and_log(ran: Ran, tmp_path: Path) -> None:
    text = junit_xml(
        ran.run_id,
        "p.flow",
        ran.jobs,
        log_tail=log_tail_via(ran.store.job),
        children=ran.children,
    )
    out = tmp_path / "report.xml"
    out.write_text(text, encoding="utf-8")
    suite = _suite(out)
    # prep, bad, after_bad and the three children of arr
    assert (suite.tests, suite.failures, suite.skipped, suite.errors) == (6, 2, 1, 0)
    cases = _cases(suite)
    assert set(cases) == {"prep", "bad", "after_bad", "arr[0]", "arr[1]", "arr[2]"}
    (bad,) = cases["bad"].result
    assert isinstance(bad, Failure)
    assert bad.message.startswith("exit code 3")
    assert 'about to fail <&> "quoted"' in (bad.text or "")
    (child,) = cases["arr[1]"].result
    assert isinstance(child, Failure) and "exit code 4" in child.message
    (skipped,) = cases["after_bad"].result
    assert isinstance(skipped, Skipped) and "Dependency failed: bad" in skipped.message
    assert cases["prep"].is_passed and cases["arr[0]"].is_passed
    expected = ran.job("bad").duration
    assert expected is not None
    assert cases["bad"].time == pytest.approx(expected, abs=0.001)


@pytest.mark.slow
def test_big_array_is_one_case_naming_its_failed_children(ran: Ran, tmp_path: Path) -> None:
    text = junit_xml(
        ran.run_id,
        "p.flow",
        ran.jobs,
        log_tail=log_tail_via(ran.store.job),
        children=ran.children,
        max_children=2,
    )
    out = tmp_path / "report.xml"
    out.write_text(text, encoding="utf-8")
    suite = _suite(out)
    assert (suite.tests, suite.failures) == (4, 2)
    (failure,) = _cases(suite)["arr"].result
    assert isinstance(failure, Failure)
    assert "1 of 3 children failed" in failure.message
    assert "arr[1]: exit code 4" in (failure.text or "")
    assert "child 1" in (failure.text or "")  # the failed child's stdout tail
    assert "arr[0]" not in (failure.text or "")


def _row(name: str, status: str, **extra: Any) -> JobRecord:
    fields: dict[str, Any] = {
        "job_id": f"id-{name}",
        "name": name,
        "run_id": "r1",
        "status": JobState(status),
        "status_reason": "",
        "created_at": 1_000,
        "started_at": 2_000,
        "stopped_at": 4_500,
        "queue": "default",
        "attempts": 1,
        "exit_code": 0 if status == "SUCCEEDED" else None,
    }
    fields.update(extra)
    return JobRecord(**fields)


def test_control_characters_and_markup_survive_as_valid_xml() -> None:
    reason = 'killed <by> "user" & \x1b[31mred\x1b[0m'
    jobs = [_row("j", "FAILED", status_reason=reason, exit_code=137)]

    def tail(job: JobRecord) -> str:
        return "line\x00with nul\n\x1b[1mbold</failure>"

    root = ET.fromstring(junit_xml("r1", "x.flow", jobs, log_tail=tail))
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None
    assert failure.get("type") == "ExitCode137"
    assert 'killed <by> "user" & ' in (failure.get("message") or "")
    assert "bold</failure>" in (failure.text or "")
    assert "\x1b" not in (failure.text or "") and "\x00" not in (failure.text or "")


def test_unfinished_jobs_are_skipped_and_suite_time_is_the_run_span() -> None:
    jobs = [
        _row("done", "SUCCEEDED"),
        _row("running", "RUNNING", stopped_at=None),
    ]
    root = ET.fromstring(junit_xml("r1", "x.flow", jobs, log_tail=lambda job: ""))
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "0", "1")
    assert suite.get("time") == "3.500"  # created at 1.0 s, last stop at 4.5 s
    skipped = root.find("testsuite/testcase[@name='running']/skipped")
    assert skipped is not None and "RUNNING" in (skipped.get("message") or "")


def test_children_never_created_are_skipped_cases() -> None:
    parent = _row(
        "arr",
        "FAILED",
        status_reason="Dependency failed: a",
        started_at=None,
        array_size=3,
    )
    child0 = _row("arr", "FAILED", job_id="id-arr:0", array_index=0)
    calls: list[tuple[str, JobState | None]] = []

    def children(job_id: str, status: JobState | None) -> list[JobRecord]:
        calls.append((job_id, status))
        return [child0]

    root = ET.fromstring(
        junit_xml("r1", "x.flow", [parent], log_tail=lambda job: "", children=children)
    )
    names = [c.get("name") for c in root.iter("testcase")]
    assert names == ["arr[0]", "arr[1]", "arr[2]"]
    assert calls == [("id-arr", None)]
    assert len(root.findall(".//skipped")) == 2
    assert len(root.findall(".//failure")) == 1


def test_tail_of_reads_only_the_end(tmp_path: Path) -> None:
    log = tmp_path / "stdout"
    log.write_text("".join(f"line {i}\n" for i in range(100_000)))
    assert tail_of(log, 3) == "line 99997\nline 99998\nline 99999"
    assert tail_of(log, 3, max_bytes=12) == "line 99999"  # the cut first line is dropped
    assert tail_of(tmp_path / "missing") == ""
