"""Errors as the CLI reports them: every FlowbatchError in one shape from one place, and
a bug in flowbatch reported as a bug (a traceback, a request to report it, exit 70),
never as the exit 2 of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from flowbatch.cli import app
from flowbatch.errors import EXIT_BUG, FlowbatchError
from flowbatch.store.jobstore import Store

BUG = "this is a bug in flowbatch: please report it"
ONE_JOB = 'job a {\n  command = "true"\n}\n'


def _raise(exc: BaseException) -> object:
    def broken(*_args: object, **_kwargs: object) -> object:
        raise exc

    return broken


@pytest.mark.slow  # a run, start to end
def test_issue_10_a_bug_inside_a_run_is_a_bug_not_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A ValueError was taken for "an override naming an unknown compute environment"
    # and printed as bad input (exit 2), whatever had raised it.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.flow").write_text(ONE_JOB)
    monkeypatch.setattr(
        "flowbatch.run.runner.placement_inputs", _raise(ValueError("internal: boom"))
    )
    result = CliRunner().invoke(app, ["run", str(tmp_path / "p.flow")])
    assert result.exit_code == EXIT_BUG, result.output
    assert "Traceback (most recent call last)" in result.stderr
    assert "ValueError: internal: boom" in result.stderr
    assert BUG in result.stderr
    with Store.open(tmp_path / ".flowbatch", create=False) as store:
        (run,) = store.runs()
    assert run["status"] == "FAILED"  # not left RUNNING for a later command to judge lost


@pytest.mark.parametrize(
    ("command", "target"),
    [
        (["validate"], "flowbatch.cli.validate.load"),
        (["graph"], "flowbatch.cli.graph.load"),
        (["plan"], "flowbatch.run.resume.decide"),
    ],
)
def test_issue_10_an_injected_key_error_is_reported_as_a_bug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], target: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.flow").write_text(ONE_JOB)
    monkeypatch.setattr(target, _raise(KeyError("no-such-key")))
    result = CliRunner().invoke(app, [*command, str(tmp_path / "p.flow")])
    assert result.exit_code == EXIT_BUG, result.output
    assert "KeyError: 'no-such-key'" in result.stderr
    assert result.stderr.rstrip().endswith(BUG + ", with the command and the traceback above")


def test_a_flowbatch_error_from_any_command_is_printed_once_with_its_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for args in (["jobs"], ["describe", "x"], ["report", "latest"], ["cancel", "x"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.count("error: ") == 1, (args, result.stderr)
        assert result.stderr.startswith("error: no job database at "), (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_an_error_without_a_place_is_a_github_annotation_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["jobs"], env={"GITHUB_ACTIONS": "true"})
    assert result.exit_code == 2
    assert "\n::error::no job database at " in "\n" + result.stderr


class _Odd(FlowbatchError):
    """An error whose text is made from its fields, with an exit code of its own."""

    exit_code = 1

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.count = count

    @property
    def message(self) -> str:
        return f"{self.count} odd things\x1b[2J"

    @property
    def hint(self) -> str | None:
        return "make them even"


def test_report_error_prints_a_message_made_from_fields_and_exits_with_its_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.flow").write_text(ONE_JOB)
    monkeypatch.setattr("flowbatch.cli.validate.load", _raise(_Odd(3)))
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "p.flow")])
    assert result.exit_code == 1
    assert result.stderr == "error: 3 odd things\\x1b[2J\n  = help: make them even\n"


@pytest.mark.slow  # a run, start to end
def test_issue_10_a_bug_in_a_sink_stops_the_run_as_a_bug_not_as_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runner took any exception of a sink's flush for "cannot record" (exit 1,
    # "run stopped: 'jobs'"), a bug included.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.flow").write_text(ONE_JOB)
    monkeypatch.setattr("flowbatch.store.jobstore.Store.flush", _raise(KeyError("jobs")))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "p.flow")])
    assert result.exit_code == EXIT_BUG, result.output
    assert "KeyError: 'jobs'" in result.stderr and BUG in result.stderr


@pytest.mark.slow
def test_issue_10_a_bug_reading_control_requests_is_a_bug_not_a_locked_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ticker took any exception of the store's request table for a database it
    # could not read, and stopped the run as "run stopped: 'requests'" (exit 1).
    monkeypatch.chdir(tmp_path)
    # A job that outlives the first tick, whatever the machine's speed; the bug's run
    # stops it (SIGTERM) as it stops any run.
    (tmp_path / "p.flow").write_text('job a {\n  command = "sleep 30"\n}\n')
    monkeypatch.setattr(
        "flowbatch.store.jobstore.Store.take_requests", _raise(KeyError("requests"))
    )
    result = CliRunner().invoke(app, ["run", str(tmp_path / "p.flow")])
    assert result.exit_code == EXIT_BUG, result.output
    assert "KeyError: 'requests'" in result.stderr and BUG in result.stderr


def test_a_refused_resume_lists_the_strays_under_its_one_error_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flowbatch.cli.control import StrayAttempts
    from flowbatch.store.lost import Stray

    strays = tuple(
        Stray(f"id-{n}", 1, "r1", "hpc", "slurm", None, str(100 + n), False, False)
        for n in range(22)
    )
    monkeypatch.setattr("flowbatch.cli.validate.load", _raise(StrayAttempts("r1", strays, "st")))
    result = CliRunner().invoke(app, ["validate", "p.flow"])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: run r1 lost its runner while these jobs ran")
    assert lines[1] == "  id-0 (attempt 1, slurm `hpc`, 100)"
    assert lines[20] == "  id-19 (attempt 1, slurm `hpc`, 119)"
    assert lines[21:] == [
        "  ... and 2 more",
        "hint: `flowbatch terminate JOB_ID --state-dir st` stops one (an array job's id "
        "stops its children), then resume again",
    ]
