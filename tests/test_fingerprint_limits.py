"""Fingerprinting `inputs` is bounded whatever the values and the files: a value put in
a path is literal text (never a glob), only regular files are read (a FIFO or
`/dev/zero` named through `-p` is recorded by its kind, never opened for reading), a
symlink loop under `**` is no endless tree, a file too big to read is known by its size
and time, and a glob that looks at too many entries is a clear error (exit 2 before a
resume, a failed attempt during a run), never a hang or a traceback.

Every test has a deadline: before the fix several of them hung."""

from __future__ import annotations

import glob
import importlib.util
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import flowbatch.run.fingerprint as fingerprint
from flowbatch.cli import app
from flowbatch.lang.load import load_text
from flowbatch.run.fingerprint import Fingerprints, InputsError

# CI runs with pytest-timeout (ci/test.sh); a checkout without it runs these unbounded.
pytestmark = [pytest.mark.timeout(30)] if importlib.util.find_spec("pytest_timeout") else []

PATH_JOB = """
param sample = "a"
job use {{
  command = "true"
  inputs  = [{inputs}]
}}
"""


def fingerprints(tmp: Path, inputs: str, **params: str) -> Fingerprints:
    text = PATH_JOB.format(inputs=inputs)
    return Fingerprints(load_text(text, str(tmp / "p.flow"), params))


def inputs_digest(tmp: Path, inputs: str, **params: str) -> str:
    return fingerprints(tmp, inputs, **params).inputs("use")


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("value", ["*", "?", "[ab]", "**"])
# The plain placeholder and a Jinja expression take two different renderers.
@pytest.mark.parametrize(
    "inputs", ['"data/{{ params.sample }}.txt"', "\"data/{{ params.sample ~ '' }}.txt\""]
)
def test_a_glob_character_in_a_value_names_a_file(tmp_path: Path, value: str, inputs: str) -> None:
    literal = tmp_path / "data" / f"{value}.txt"
    write(literal, "mine")
    write(tmp_path / "data" / "a.txt", "other")
    write(tmp_path / "data" / "b.txt", "other")
    fps = fingerprints(tmp_path, inputs, sample=value)
    assert fps.patterns("use", fps.plan.job("use").inputs, None) == (
        f"data/{glob.escape(value)}.txt",
    )
    before = inputs_digest(tmp_path, inputs, sample=value)
    write(tmp_path / "data" / "a.txt", "changed")  # a file the value would have matched
    assert inputs_digest(tmp_path, inputs, sample=value) == before
    write(literal, "changed")  # the file the value names
    assert inputs_digest(tmp_path, inputs, sample=value) != before


def test_a_bare_parameter_in_inputs_names_a_file(tmp_path: Path) -> None:
    write(tmp_path / "*", "mine")
    write(tmp_path / "other", "other")
    before = inputs_digest(tmp_path, "params.sample", sample="*")
    write(tmp_path / "other", "changed")
    assert inputs_digest(tmp_path, "params.sample", sample="*") == before
    assert fingerprints(tmp_path, "params.sample", sample="*").plan.job("use").inputs == ("[*]",)


def test_an_empty_value_names_nothing(tmp_path: Path) -> None:
    write(tmp_path / "a", "a")
    # Not the working directory, and not `/` either.
    assert fingerprints(tmp_path, '"{{ params.sample }}"', sample="").records("use") == [
        ("", "(none)", "")
    ]


def test_raw_keeps_a_value_a_pattern(tmp_path: Path) -> None:
    write(tmp_path / "data" / "a.txt", "one")
    inputs = '"data/{{ params.sample | raw }}"'
    before = inputs_digest(tmp_path, inputs, sample="*.txt")
    write(tmp_path / "data" / "a.txt", "two")
    assert inputs_digest(tmp_path, inputs, sample="*.txt") != before


def test_a_value_in_an_outputs_glob_is_literal(tmp_path: Path) -> None:
    text = PATH_JOB.format(inputs="").replace(
        "inputs  = []", 'outputs = ["out/{{ params.sample }}"]'
    )
    write(tmp_path / "out" / "something", "x")
    fps = Fingerprints(load_text(text, str(tmp_path / "p.flow"), {"sample": "*"}))
    assert fps.outputs_missing("use") == ["out/[*]"]


def test_a_fifo_input_is_recorded_by_its_kind_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    fifo = inputs_digest(tmp_path, '"pipe"')  # before the fix: blocked forever in open()
    assert fingerprints(tmp_path, '"pipe"').records("use") == [("pipe", "pipe", "fifo, not read")]
    assert fifo == inputs_digest(tmp_path, '"pipe"')
    (tmp_path / "pipe").unlink()
    write(tmp_path / "pipe", "")
    assert inputs_digest(tmp_path, '"pipe"') != fifo


@pytest.mark.parametrize("value", ["/dev/zero", "../" * 64 + "dev/zero"])
def test_dev_zero_through_a_value_is_not_read(tmp_path: Path, value: str) -> None:
    # Before the fix: read without end (`..` and absolute paths are allowed: an input
    # can live outside the pipeline's directory).
    records = fingerprints(tmp_path, '"{{ params.sample }}"', sample=value).records("use")
    assert [r[2] for r in records] == ["character device, not read"]


def test_a_sparse_huge_file_is_known_by_size_and_time(tmp_path: Path) -> None:
    huge = tmp_path / "huge"
    with open(huge, "wb") as f:
        f.truncate(64 << 30)  # 64 GiB of holes: minutes to read, a moment to stat
    before = inputs_digest(tmp_path, '"huge"')
    os.utime(huge, ns=(0, 10**18))
    assert inputs_digest(tmp_path, '"huge"') != before


def test_small_files_are_read_within_the_jobs_total(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fingerprint, "MAX_READ_JOB", 10)
    write(tmp_path / "a", "123456")
    write(tmp_path / "b", "123456")
    stat = (tmp_path / "b").stat()
    before = inputs_digest(tmp_path, '"a", "b"')
    write(tmp_path / "b", "654321")
    os.utime(tmp_path / "b", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    # Past the job's total, `b` is known by size and time: same size, same time.
    assert inputs_digest(tmp_path, '"a", "b"') == before
    write(tmp_path / "a", "654321")
    os.utime(tmp_path / "a", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert inputs_digest(tmp_path, '"a", "b"') != before  # `a` is read


def test_a_symlink_loop_under_double_star_ends(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in "abcd":
        (data / name).symlink_to(".")
    write(data / "x.txt", "x")
    # Before the fix: glob followed every link, 4**depth paths until the names got too long.
    assert fingerprints(tmp_path, '"data/**/nothing"').records("use") == [
        ("data/**/nothing", "(none)", "")
    ]
    # A link is matched, not descended: `data/a/x.txt`, never `data/a/a/x.txt`.
    paths = [r[1] for r in fingerprints(tmp_path, '"data/**/x.txt"').records("use")]
    assert paths == [*(f"data/{name}/x.txt" for name in "abcd"), "data/x.txt"]


def tree(root: Path, dirs: int, files: int) -> None:
    for d in range(dirs):
        for f in range(files):
            write(root / f"d{d}" / f"sub{d % 3}" / f"f{f}.txt", f"{d}/{f}")


@pytest.mark.parametrize("inputs", ['"big"', '"big/**"', '"big/**/*.txt"', '"{{ params.sample }}"'])
def test_too_many_entries_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inputs: str
) -> None:
    tree(tmp_path / "big", 20, 10)
    assert inputs_digest(tmp_path, inputs, sample="big")  # 200 files: within the default
    monkeypatch.setattr(fingerprint, "MAX_ENTRIES", 100)
    with pytest.raises(InputsError, match=r"job `use` (name|read) more than 100 "):
        inputs_digest(tmp_path, inputs, sample="big")
    # 240 entries (200 files, 40 directories): matching reads a directory at most twice
    # (`**`, then `*.txt` in it), and listing counts apart from matching.
    monkeypatch.setattr(fingerprint, "MAX_ENTRIES", 480)
    assert inputs_digest(tmp_path, inputs, sample="big")


def test_a_value_naming_the_root_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fingerprint, "MAX_ENTRIES", 1000)
    with pytest.raises(InputsError, match="more than 1,000"):
        inputs_digest(tmp_path, '"{{ params.sample }}"', sample="/")


PIPELINE = """
param sample = "big"
job fine {
  command = "echo fine > fine.txt"
  outputs = ["fine.txt"]
}
job use {
  command = "echo used > used.txt"
  inputs  = ["{{ params.sample }}"]
}
"""


@pytest.mark.slow
def test_over_the_cap_fails_the_attempt_and_a_resume_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.flow").write_text(PIPELINE)
    tree(tmp_path / "big", 20, 10)
    monkeypatch.setattr(fingerprint, "MAX_ENTRIES", 100)
    result = CliRunner().invoke(app, ["run", "p.flow"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    jobs = CliRunner().invoke(app, ["describe", "use"])
    assert "more than 100 files and directory entries" in jobs.output
    assert (tmp_path / "fine.txt").exists() and not (tmp_path / "used.txt").exists()
    for command in (["plan", "p.flow", "--resume"], ["run", "p.flow", "--resume"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, result.output
        assert isinstance(result.exception, SystemExit)
        assert "error: the `inputs`/`outputs` of job `use` name more than 100" in result.output
