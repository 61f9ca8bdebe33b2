"""`flowbatch validate`: exit codes, errors on stderr, GitHub annotations."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from proc_helpers import imported_by

from flowbatch.cli import app

GOOD = 'job hello {\n  command = "echo hello"\n}\n'
BAD = 'job a {\n  command = "a"\n  after = [bb]\n}\njob b {\n  command = "b"\n}\n'


def run(tmp_path: Path, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    (tmp_path / "good.flow").write_text(GOOD)
    (tmp_path / "bad.flow").write_text(BAD)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        return CliRunner().invoke(app, ["validate", *args], env=env or {})


def test_valid_file_exits_0(tmp_path: Path) -> None:
    result = run(tmp_path, "good.flow")
    assert result.exit_code == 0
    assert result.stderr == "good.flow: ok (1 job, 0 arrays, 1 process)\n"
    assert result.stdout == ""


def test_invalid_file_exits_2_with_the_error_on_stderr(tmp_path: Path) -> None:
    result = run(tmp_path, "good.flow", "bad.flow")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[1:] == [
        "bad.flow:3:12: error: unknown job `bb` in `after`",
        "  |",
        "3 |   after = [bb]",
        "  |            ^^",
        "  = help: did you mean `b`?",
    ]


def test_github_actions_annotations(tmp_path: Path) -> None:
    result = run(tmp_path, "bad.flow", env={"GITHUB_ACTIONS": "true"})
    assert result.exit_code == 2
    assert (
        "::error file=bad.flow,line=3,col=12::unknown job `bb` in `after` (did you mean `b`?)"
        in result.stderr.splitlines()
    )


def test_a_missing_file_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    result = run(tmp_path, "nothere.flow")
    assert result.exit_code == 2
    assert "cannot read `nothere.flow`" in result.stderr


def test_a_malformed_param_option_is_a_usage_error(tmp_path: Path) -> None:
    result = run(tmp_path, "good.flow", "-p", "oops")
    assert result.exit_code == 2 and "expected NAME=VALUE" in result.stderr


# What a clean pipeline without templates never needs: the quoting check, the render
# budget, the Jinja sandbox, the syntax errors' wording, and the control-character
# writer for a plain file name. Each is imported on first use, so that `validate`
# starts as fast as before they were split out (issue 10).
LAZY = (
    "flowbatch.lang.template_quoting",
    "flowbatch.lang.shell_quoting",
    "flowbatch.lang.template_budget",
    "flowbatch.lang.template_sandbox",
    "flowbatch.lang.template_text",
    "flowbatch.lang.parse_errors",
    "flowbatch.outputs.jobview",
    "jinja2",
    "contextvars",
    "glob",
)


def test_validating_a_plain_pipeline_imports_nothing_it_does_not_need(tmp_path: Path) -> None:
    (tmp_path / "good.flow").write_text(GOOD)
    imported, _ = imported_by(["validate", "good.flow"], LAZY, tmp_path)
    assert imported == []
