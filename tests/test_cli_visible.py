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
from flowbatch.cli.github import github_annotation
from flowbatch.lang.diagnostics import FlowError, Kind, Source, Span
from flowbatch.lang.load import load_text
from flowbatch.outputs.jobview import visible
from flowbatch.outputs.progress import Reporter
from flowbatch.outputs.step_summary import step_summary
from flowbatch.run.records import JobRecord
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


def _job(status: JobState, reason: str, *, exit_code: int) -> JobRecord:
    return JobRecord(
        job_id="id-a", name="a", run_id=RUN, status=status, status_reason=reason,
        created_at=None, started_at=0, stopped_at=1, queue=None, attempts=1,
        exit_code=exit_code,
    )  # fmt: skip


def test_a_name_cannot_leave_the_mermaid_block_of_the_step_summary() -> None:
    plan = load_text(
        'job a {\n  command = """echo \r```\r# Forged heading\r"""\n}\n',
        path="x\r```\r\n# pwned\u2028.flow",
    )
    jobs = [_job(JobState.SUCCEEDED, "", exit_code=0)]
    markdown = step_summary(plan, jobs, run_id=RUN)
    tokens = MarkdownIt("commonmark").parse(markdown)
    assert not [t for t in tokens if t.type == "heading_open" and t.markup == "#"]
    fences = [t for t in tokens if t.type == "fence"]
    assert [t.info for t in fences] == ["mermaid"]
    body = fences[0].content.splitlines()
    assert body[0] == "flowchart LR" and body[1].startswith("  %% x\\r```\\r")
    assert all(line.startswith("  ") for line in body[1:])


def runner_commands(text: str) -> list[str]:
    """The lines of `text` that GitHub's runner would act on: it reads lines as .NET's
    ReadLine does (a CR alone ends one too), takes a line starting with `::` after
    blanks as a command, and `##[command]` anywhere in a line as an old-style one."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [x for x in lines if x.lstrip().startswith("::") or "##[" in x]


def test_under_github_a_value_cannot_issue_an_old_style_command(tmp_path: Path) -> None:
    reason = "ok ##[add-mask]secret, then\r::set-output name=a::b"
    with Store.open(tmp_path / "state") as store:
        store.begin_run(RUN, pipeline(), {"prep": "id-prep", "align": "id-align",
                        "thumbs": "id-thumbs", "steps": "id-steps"}, created_at=T0)  # fmt: skip
        store.emit(ev("id-prep", S.RUNNING, 1, attempt=1))
        store.emit(ev("id-prep", S.FAILED, 2, attempt=1, exit_code=1, reason=reason))
        store.flush()
    for command in (["describe", "id-prep"], ["jobs", "--json"], ["jobs"]):
        result = cli(tmp_path / "state", *command, github=True)
        assert result.exit_code == 0, result.output
        assert runner_commands(result.output) == [], command
    described = cli(tmp_path / "state", "describe", "id-prep", github=True)
    assert json.loads(described.stdout)["jobs"][0]["statusReason"] == reason


@pytest.mark.parametrize(
    "pieces",
    [
        ["a ##[add-mask]s\n"],
        ["a #", "#[add-mask]s\n"],
        ["a ##", "[add-mask]s\n"],
        ["shown\r::add-mask::s\n"],
        ["shown\r", "::add-mask::s\n"],
        ["shown\r  ", ":", ":error::x\n"],
        ["x\r\n", "::error::y\r\n"],
    ],
)
def test_github_lines_defuse_what_the_runner_would_read_as_a_command(pieces: list[str]) -> None:
    from flowbatch.cli.github import GitHubLines

    out = io.StringIO()
    stream = GitHubLines(out)
    for piece in pieces:
        stream.write(piece)
    stream.flush()
    assert runner_commands(out.getvalue()) == []
    assert out.getvalue().replace("\\", "") == "".join(pieces)


OSC = "\x1b]0;owned\x07\r"  # click strips CSI sequences off a pipe, but not these


def test_file_names_from_the_command_line_are_written_out(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    name = f"p{OSC}.flow"
    Path(name).write_text('job a {\n  command = "true"\n}\n')
    validated = CliRunner().invoke(app, ["validate", name])
    assert validated.exit_code == 0, validated.output
    reported = cli(state, "report", RUN, "-o", f"r{OSC}.html")
    assert reported.exit_code == 0, reported.output
    for result in (validated, reported):
        assert "\\x1b]0;owned\\x07\\r" in result.stderr
        assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", result.stderr)


def test_a_dot_graph_holds_no_control_character_graphviz_would_copy_into_svg() -> None:
    from flowbatch.outputs.dot import to_dot

    plan = load_text('job a {\n  command = "true"\n}\n', path=f"p{OSC}.flow")
    dot = to_dot(plan)
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", dot)
    assert "\\\\x1b]0;owned" in dot or "\\x1b]0;owned" in dot


BAD = "\udcff"  # what Python makes of an argument's byte 0xff, not valid UTF-8


@pytest.mark.parametrize(
    "command",
    [
        ["describe", f"x{BAD}"],
        ["logs", f"x{BAD}"],
        ["jobs", "--children", BAD],
        ["jobs", "--name", BAD],
        ["jobs", "--queue", BAD],
        ["jobs", "--run", BAD],
        ["cancel", BAD],
        ["terminate", BAD],
        ["terminate", "id-prep", "--reason", f"why{BAD}"],
        ["cancel", "id-prep", "--reason", f"why{BAD}"],
        ["report", BAD],
        ["graph", "p.flow", "--run", BAD],
    ],
)
def test_an_argument_that_is_not_utf8_is_an_error_not_a_traceback(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("p.flow").write_text('job a {\n  command = "true"\n}\n')
    result = cli(state, *command)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code in (0, 1, 2), result.output  # a filter may match nothing


def test_a_pipeline_file_whose_name_is_not_utf8_runs_and_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    name = f"p{BAD}.flow"
    Path(name).write_text('job a {\n  command = "true"\n}\n')
    result = CliRunner().invoke(app, ["run", name], env={"GITHUB_ACTIONS": ""})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 0, result.output
    runs = CliRunner().invoke(app, ["runs"])
    assert runs.exit_code == 0 and "p\ufffd.flow" in runs.stdout


def test_a_file_name_that_is_not_utf8_is_drawn_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    name = f"p{BAD}.flow"
    Path(name).write_text('job a {\n  command = "true"\n}\n')
    for args in (["graph", name], ["graph", name, "-o", "g.mmd"], ["graph", name, "-o", "g.json"]):
        result = CliRunner().invoke(app, args)
        assert result.exception is None or isinstance(result.exception, SystemExit), args
        assert result.exit_code == 0, result.output
    assert "p\ufffd.flow" in Path("g.mmd").read_text(encoding="utf-8")
    env = {"GITHUB_ACTIONS": "", "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    result = CliRunner().invoke(app, ["run", name, "--junit", "j.xml"], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 0, result.output
    assert "p\ufffd.flow" in Path("summary.md").read_text(encoding="utf-8")
    assert Path("j.xml").read_text(encoding="utf-8").count("<testcase") == 1


@pytest.mark.parametrize(
    "args",
    [["validate", "p.flow", "-p", f"no-equals{OSC}"], ["graph", "p.flow", "-o", f"g{OSC}.bad"]],
)
def test_a_usage_error_quoting_an_argument_writes_it_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("p.flow").write_text('job a {\n  command = "true"\n}\n')
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "\\x1b]0;owned\\x07\\r" in result.stderr
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", result.stderr)


def test_no_value_becomes_a_mermaid_directive() -> None:
    """Mermaid reads `%%{init: ...}%%` anywhere in a diagram's text, labels included."""
    from flowbatch.outputs.mermaid import to_mermaid

    directive = "%%{init: {'theme': 'dark', 'themeCSS': 'x'}}%%"
    plan = load_text(f'job a {{\n  command = "echo {directive}"\n}}\n', path=f"p{directive}.flow")
    drawn = to_mermaid(plan, states={})
    assert "%%{" not in drawn and "}%%" not in drawn
    assert drawn.splitlines()[1].startswith("  %% p")


def test_a_reason_or_file_name_is_not_markdown_in_the_step_summary() -> None:
    """No image fetched from elsewhere, no link, no emphasis from a value."""
    markup = "![x](https://evil.example/p.png) [go](https://evil.example) **b** _i_ ~s~"
    plan = load_text('job a {\n  command = "true"\n}\n', path=f"{markup}.flow")
    jobs = [_job(JobState.FAILED, markup, exit_code=1)]
    markdown = step_summary(plan, jobs, run_id=RUN)
    inline = [
        child.type
        for token in MarkdownIt("commonmark").enable("strikethrough").parse(markdown)
        for child in token.children or []
    ]
    assert not {"image", "link_open", "strong_open", "em_open", "s_open"} & set(inline)
    assert "| !\\[x\\](https://evil.example/p.png) \\[go\\]" in markdown  # still readable


def test_a_name_of_an_earlier_run_only_says_where_it_ran(tmp_path: Path) -> None:
    import dataclasses

    full = pipeline()
    with Store.open(tmp_path / "state") as store:
        store.begin_run("20251231-000000-0000", full, {n: f"old-{n}" for n in full.jobs},
                        created_at=T0 - 100)  # fmt: skip
        only_steps = dataclasses.replace(full, jobs={"steps": full.jobs["steps"]})
        store.begin_run(RUN, only_steps, {"steps": "id-steps"}, created_at=T0)
        store.flush()
    result = cli(tmp_path / "state", "describe", "prep")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: no job named `prep` in the latest run ({RUN}); it ran in run "
        "20251231-000000-0000 as job `old-prep`\n"
    )


@pytest.mark.parametrize("where", ["env", "option"])
def test_a_state_dir_given_with_a_tilde_is_below_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """As a CI file's `env:` passes it (no shell to expand it), or `--state-dir=~/x`:
    never a directory literally named `~` in the current directory."""
    from flowbatch.cli.common import state_dir

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    if where == "env":
        monkeypatch.setenv("FLOWBATCH_STATE_DIR", "~/st")
        assert state_dir(None) == tmp_path / "home" / "st"
    else:
        assert state_dir(Path("~/st")) == tmp_path / "home" / "st"


def test_a_run_id_given_for_a_job_says_it_is_a_run(state: Path) -> None:
    result = cli(state, "logs", RUN)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: `{RUN}` is a run, not a job: `flowbatch jobs --run {RUN}` lists its jobs\n"
    )
