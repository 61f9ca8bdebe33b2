"""Values never act on the terminal or the CI log: control characters in reasons,
params, names and paths are written out (`\\x1b`) in progress output and tables;
under GitHub Actions no value can start a `::` workflow command, annotations escape
their properties as GitHub's toolkit does, and a name cannot leave the step summary's
Mermaid block."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from markdown_it import MarkdownIt
from test_store import RUN, T0, ev, pipeline

from flowbatch.cli import app
from flowbatch.cli.common import github_annotation
from flowbatch.lang.diagnostics import FlowError, Kind, Source, Span
from flowbatch.lang.load import load_text
from flowbatch.outputs.jobview import visible
from flowbatch.outputs.progress import Reporter
from flowbatch.outputs.step_summary import step_summary
from flowbatch.run.state import JobState
from flowbatch.store.jobstore import Store

S = JobState
NASTY = "\x1b[2J\x1b]0;owned\x07\x9b31m\r\n::error::forged\u202e"
SHOWN = "\\x1b[2J\\x1b]0;owned\\x07\\x9b31m\\r\\n::error::forged\\u202e"


def test_visible_writes_out_every_control_character() -> None:
    assert visible(NASTY) == SHOWN
    assert visible("tab\there", keep="\t") == "tab\there"
    assert visible("plain text, ünïcode ok") == "plain text, ünïcode ok"


@pytest.mark.parametrize("tty", [False, True])
def test_progress_shows_a_reason_with_controls_written_out(tty: bool) -> None:
    out = io.StringIO()
    rep = Reporter(out, tty=tty, color=tty, total=1, utc=True, width=200)
    rep.emit(ev("id-prep", S.RUNNING, 1, attempt=1))
    rep.emit(ev("id-prep", S.FAILED, 2, attempt=1, exit_code=1, reason=NASTY))
    rep.close()
    text = out.getvalue()
    assert SHOWN in text
    # What escapes remain are the reporter's own: colours and the line redraw.
    own = re.sub(r"\x1b\[(?:3[12]|0)m|\r\x1b\[K", "", text)
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", own)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    with Store.open(tmp_path / "state") as store:
        store.begin_run(RUN, pipeline(f"p{NASTY}.flow"), {"prep": "id-prep", "align": "id-align",
                        "thumbs": "id-thumbs", "steps": "id-steps"}, created_at=T0)  # fmt: skip
        store.emit(ev("id-prep", S.RUNNING, 1, attempt=1))
        store.emit(ev("id-prep", S.FAILED, 2, attempt=1, exit_code=1, reason=NASTY))
        store.flush()
    return tmp_path / "state"


def cli(state: Path, *args: str, github: bool = False) -> Result:
    env = {"GITHUB_ACTIONS": "true"} if github else {"GITHUB_ACTIONS": ""}
    return CliRunner().invoke(app, [*args, "--state-dir", str(state)], env=env)


@pytest.mark.parametrize("command", [["jobs"], ["runs"], ["describe", "id-prep"]])
def test_tables_write_out_controls_from_reasons_and_paths(state: Path, command: list[str]) -> None:
    result = cli(state, *command)
    assert result.exit_code == 0, result.output
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]", result.output)
    if command[0] == "describe":  # JSON keeps the value itself, escaped by JSON
        assert json.loads(result.stdout)["jobs"][0]["statusReason"] == NASTY
    else:
        assert "\\x1b[2J" in result.stdout


def test_a_param_value_in_an_error_is_written_out(tmp_path: Path) -> None:
    (tmp_path / "p.flow").write_text('param n = 1\njob a {\n  command = "true"\n}\n')
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "p.flow"), "-p", f"n={NASTY}"])
    assert result.exit_code == 2
    assert "\\x1b[2J" in result.stderr and "\x1b" not in result.stderr


def test_under_github_no_value_starts_a_workflow_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    name = "::warning::named.flow"
    Path(name).write_text('job a {\n  command = "true"\n  after = [b]\n}\n')
    Path("ok.flow").write_text('job a {\n  command = "true"\n}\n')
    Path(f"  {name}").write_text('job a {\n  command = "true"\n}\n')
    env = {"GITHUB_ACTIONS": "true"}
    result = CliRunner().invoke(app, ["validate", name, "ok.flow", f"  {name}"], env=env)
    assert result.exit_code == 2
    commands = [x for x in result.stderr.splitlines() if x.lstrip().startswith("::")]
    # The one workflow command is flowbatch's own annotation, its file= escaped.
    assert len(commands) == 1
    assert commands[0].startswith(
        "::error file=%3A%3Awarning%3A%3Anamed.flow,line=3,col=12::unknown job `b` in `after`"
    )
    assert f"\\{name}:3:12: error: unknown job `b` in `after`" in result.stderr
    assert f"\\  {name}: ok (1 job, 0 arrays, 1 process)" in result.stderr
    plan = CliRunner().invoke(app, ["plan", f"  {name}"], env=env)
    assert plan.stdout.startswith(f"\\  {name}: without --resume")


def test_under_github_a_jobs_output_cannot_issue_commands(tmp_path: Path) -> None:
    with Store.open(tmp_path / "state") as store:
        store.begin_run(RUN, pipeline(), {"prep": "id-prep", "align": "id-align",
                        "thumbs": "id-thumbs", "steps": "id-steps"}, created_at=T0)  # fmt: skip
        logs = tmp_path / "logs"
        logs.mkdir()
        (logs / "stdout").write_bytes(b"hello\n::add-mask::secret\n::error::no newline")
        store.emit(ev("id-prep", S.RUNNING, 1, attempt=1, log_path=str(logs)))
        store.emit(ev("id-prep", S.SUCCEEDED, 2, attempt=1, exit_code=0))
        store.flush()
    result = cli(tmp_path / "state", "logs", "id-prep", github=True)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    token = lines[0].removeprefix("::stop-commands::")
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    assert lines[1:] == ["hello", "::add-mask::secret", "::error::no newline", f"::{token}::"]
    plain = cli(tmp_path / "state", "logs", "id-prep")
    assert plain.stdout_bytes == b"hello\n::add-mask::secret\n::error::no newline"


def test_annotation_properties_are_escaped_as_githubs_toolkit_does() -> None:
    path = "a,b:c%d\re\nf.flow"
    source = Source(path, "job a {\n}\n")
    err = FlowError(Kind.SYNTAX, "bad\r\nthing: 100%", Span(source, 1, 1, 1, 2))
    assert github_annotation(err) == (
        "::error file=a%2Cb%3Ac%25d%0De%0Af.flow,line=1,col=1::bad%0D%0Athing: 100%25"
    )


def test_a_name_cannot_leave_the_mermaid_block_of_the_step_summary() -> None:
    plan = load_text(
        'job a {\n  command = """echo \r```\r# Forged heading\r"""\n}\n',
        path="x\r```\r\n# pwned\u2028.flow",
    )
    jobs = [{"jobId": "id-a", "jobName": "a", "status": "SUCCEEDED", "statusReason": "",
             "container": {"exitCode": 0}, "startedAt": 0, "stoppedAt": 1}]  # fmt: skip
    markdown = step_summary(plan, jobs, run_id=RUN)
    tokens = MarkdownIt("commonmark").parse(markdown)
    assert not [t for t in tokens if t.type == "heading_open" and t.markup == "#"]
    fences = [t for t in tokens if t.type == "fence"]
    assert [t.info for t in fences] == ["mermaid"]
    body = fences[0].content.splitlines()
    assert body[0] == "flowchart LR" and body[1].startswith("  %% x\\r```\\r")
    assert all(line.startswith("  ") for line in body[1:])
