"""What environment a job gets: the job's `env`, AWS_BATCH_*/FLOWBATCH_*, and only the
runner's variables it names in `env_from_host` (checked at validate time, refused when
missing at run start, fingerprinted by name, never stored); a local job without an
image still inherits the runner's environment, as a make or Snakemake rule does.

The executors' side (what reaches a container, an ssh host or a SLURM job, and that no
value is on a command line) is in test_container.py, test_ssh.py and test_slurm.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowbatch.executors.fake import FakeExecutor
from flowbatch.lang.diagnostics import FlowError, Kind
from flowbatch.lang.load import load_text
from flowbatch.run.fingerprint import Fingerprints
from flowbatch.run.runner import RunOptions, new_job_ids, new_run_id, run_plan

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def errors_of(text: str) -> list[FlowError]:
    with pytest.raises(FlowError) as caught:
        load_text(text, "p.flow")
    return list(caught.value.errors)


# -- the attribute -----------------------------------------------------------------------


def test_env_from_host_is_inherited_and_added_to_like_env() -> None:
    plan = load_text(
        'definition base {\n  env_from_host = ["HF_TOKEN", "HOME"]\n}\n'
        'definition mid: base {\n  env_from_host = ["AWS_PROFILE", "HF_TOKEN"]\n}\n'
        'job a: mid {\n  command = "true"\n  env_from_host = "WANDB_API_KEY"\n}\n'
        'job b {\n  command = "true"\n}\n',
        "p.flow",
    )
    assert plan.job("a").env_from_host == ("HF_TOKEN", "HOME", "AWS_PROFILE", "WANDB_API_KEY")
    assert plan.job("b").env_from_host == ()


@pytest.mark.parametrize(
    ("value", "kind", "message", "col"),
    [
        ('["HF-TOKEN"]', Kind.BAD_VALUE, "`HF-TOKEN` is not a valid environment", 20),
        ('["OK", "9LIVES"]', Kind.BAD_VALUE, "`9LIVES` is not a valid environment", 26),
        ('["A=B"]', Kind.BAD_VALUE, "`A=B` is not a valid environment", 20),
        ('["AWS_BATCH_JOB_ID"]', Kind.RESERVED, "`AWS_BATCH_JOB_ID` is reserved", 20),
        ('["FLOWBATCH_RUN_ID"]', Kind.RESERVED, "`FLOWBATCH_RUN_ID` is reserved", 20),
        ("[1]", Kind.BAD_VALUE, "must be a string", 20),
    ],
)
def test_env_from_host_names_are_checked_at_validate_time(
    value: str, kind: Kind, message: str, col: int
) -> None:
    (err,) = errors_of(f'job a {{\n  command = "true"\n  env_from_host = {value}\n}}\n')
    assert err.kind is kind and message in err.message
    assert err.span is not None and (err.span.line, err.span.col) == (3, col)


def test_a_variable_both_given_and_taken_from_the_host_is_an_error() -> None:
    (err,) = errors_of(
        'definition d {\n  env = { TOKEN = "x" }\n}\n'
        'job a: d {\n  command = "true"\n  env_from_host = ["TOKEN"]\n}\n'
    )
    assert err.kind is Kind.DUPLICATE and "`TOKEN` is in both `env` and `env_from_host`" in str(err)
    assert err.span is not None and err.span.line == 6


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('"MY-VAR" = "x"', "`MY-VAR` is not a valid environment variable name"),
        ('"A=B" = "x"', "`A=B` is not a valid environment variable name"),
        ('FLOWBATCH_RUN_ID = "x"', "`FLOWBATCH_RUN_ID` is reserved"),
        # The shell variables of the ssh wrapper and the SLURM script: a job's fb_dir
        # would move its exit-status file, a job's fb_cr change its other values.
        ('fb_dir = "/elsewhere"', "`fb_dir` is reserved"),
        ('fb_cr = "x"', "`fb_cr` is reserved"),
    ],
)
def test_env_names_must_be_exportable(entry: str, message: str) -> None:
    # A script exports the env of a SLURM or ssh job and an env-file carries a
    # container's: a name with `-` or `=` would break them, or set another variable.
    (err,) = errors_of(f'job a {{\n  command = "true"\n  env = {{ {entry} }}\n}}\n')
    assert message in err.message


def test_a_nul_in_an_env_value_is_an_error() -> None:
    errors = errors_of('job a {\n  command = "true"\n  env = { X = "a\0b" }\n}\n')
    assert any("NUL" in e.message for e in errors), errors


# -- the runner ---------------------------------------------------------------------------

PIPELINE = """
job boxed {
  command = "true"
  image   = "busybox"
  env     = { MODE = "fast" }
  env_from_host = ["FB_TEST_TOKEN"]
}
job plain {
  command = "true"
}
"""


async def test_an_attempt_gets_its_env_the_named_host_variables_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FB_TEST_TOKEN", "tok-123")
    monkeypatch.setenv("FB_TEST_RUNNER_ONLY", "runner-secret")
    plan = load_text(PIPELINE, str(tmp_path / "p.flow"))
    fake = FakeExecutor()
    ids = new_job_ids(plan)
    run_id = new_run_id()
    options = RunOptions(run_id=run_id, job_ids=ids, state_dir=tmp_path / "s")
    await run_plan(plan, options, executors=lambda ce: fake)
    by_name = {a.name: a for a in fake.attempts}
    aws = {
        "AWS_BATCH_JOB_ATTEMPT": "1",
        "AWS_BATCH_JQ_NAME": "default",
        "AWS_BATCH_CE_NAME": "local",
        "FLOWBATCH_RUN_ID": run_id,
    }
    boxed = by_name["boxed"]
    assert boxed.env == {
        "MODE": "fast",
        "FB_TEST_TOKEN": "tok-123",
        "AWS_BATCH_JOB_ID": ids["boxed"],
        **aws,
    }
    assert by_name["plain"].env == {"AWS_BATCH_JOB_ID": ids["plain"], **aws}
    # The runner's environment is there for local processes only: a local job without
    # an image inherits it (as make and Snakemake do), a container's runtime runs in it.
    assert boxed.host_env["FB_TEST_RUNNER_ONLY"] == "runner-secret"
    assert by_name["plain"].process_env()["FB_TEST_RUNNER_ONLY"] == "runner-secret"
    assert by_name["plain"].process_env()["AWS_BATCH_JOB_ID"] == ids["plain"]


async def test_a_named_variable_missing_on_the_host_stops_the_run_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FB_TEST_TOKEN", raising=False)
    plan = load_text(PIPELINE, str(tmp_path / "p.flow"))
    fake = FakeExecutor()
    with pytest.raises(ValueError, match=r"`FB_TEST_TOKEN` \(env_from_host of `boxed`\)"):
        await run_plan(
            plan,
            RunOptions(run_id=new_run_id(), job_ids=new_job_ids(plan), state_dir=tmp_path / "s"),
            executors=lambda ce: fake,
        )
    assert fake.attempts == []


def test_fingerprints_take_the_names_never_the_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fingerprint(names: str) -> str:
        text = f'job a {{\n  command = "true"\n  env_from_host = [{names}]\n}}\n'
        return Fingerprints(load_text(text, str(tmp_path / "p.flow"))).of("a")

    monkeypatch.setenv("FB_TEST_TOKEN", "one")
    first = fingerprint('"FB_TEST_TOKEN"')
    monkeypatch.setenv("FB_TEST_TOKEN", "two")
    assert fingerprint('"FB_TEST_TOKEN"') == first  # a rotated token reruns nothing
    assert fingerprint('"FB_TEST_TOKEN", "HOME"') != first
    plain = Fingerprints(load_text('job a {\n  command = "true"\n}\n', str(tmp_path / "p.flow")))
    assert fingerprint("") == plain.of("a")  # no names: as before the attribute existed


CLI_PIPELINE = """
job a {
  command = "printf '%s|%s' \\"$FB_TEST_TOKEN\\" \\"$FB_TEST_RUNNER_ONLY\\" > got.txt"
  env_from_host = ["FB_TEST_TOKEN"]
}
"""


def _flowbatch_run(where: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (where / "p.flow").write_text(CLI_PIPELINE)
    return subprocess.run(
        [sys.executable, "-m", "flowbatch", "run", "p.flow", "--state-dir", "state"],
        cwd=where, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.slow
def test_run_refuses_a_missing_host_variable_and_never_stores_a_value(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FB_TEST_TOKEN"}
    env["FB_TEST_RUNNER_ONLY"] = "inherited"
    refused = _flowbatch_run(tmp_path, env)
    assert refused.returncode == 2, refused.stderr
    assert "not set in this environment: `FB_TEST_TOKEN` (env_from_host of `a`)" in (refused.stderr)
    assert not (tmp_path / "got.txt").exists()

    secret = "hf_" + os.urandom(8).hex()
    done = _flowbatch_run(tmp_path, {**env, "FB_TEST_TOKEN": secret})
    assert done.returncode == 0, done.stderr
    # A local job without an image gets the named variable, and inherits the rest.
    assert (tmp_path / "got.txt").read_text() == f"{secret}|inherited"
    # The value is nowhere in flowbatch's state: not in the store, not in a fingerprint.
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
