"""Reading pipeline files: only regular files of UTF-8 text, at most 16 MiB, are read,
and an error about one that is not text quotes nothing of it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from flowbatch import FlowError, Kind, load, load_text
from flowbatch.lang.load import MAX_FILE_BYTES

JOB = 'job a {\n  command = "x"\n}\n'


def _error_within(deadline: float, call: Callable[[], object], unblock: Callable[[], None]) -> str:
    """The rendered FlowError of `call()`, which must come within `deadline` seconds.
    A call still blocked then is released by `unblock` (so no thread is left behind)
    and the test fails."""
    outcome: list[BaseException | object] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        unblock()
        thread.join(deadline)
        pytest.fail(f"still blocked after {deadline} s")
    (result,) = outcome
    assert isinstance(result, FlowError), result
    assert result.kind is Kind.IMPORT
    return str(result)


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.flow"
    os.mkfifo(path)
    return path


def _release(path: Path) -> Callable[[], None]:
    def unblock() -> None:
        # A writer that opens and closes at once: a reader blocked in open() gets EOF.
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)

    return unblock


def test_a_fifo_is_refused_without_waiting_for_a_writer(fifo: Path) -> None:
    main = fifo.parent / "main.flow"
    main.write_text(f'import "{fifo.name}"\n{JOB}')
    text = _error_within(5, lambda: load(main), _release(fifo))
    assert "main.flow:1:8" in text and "it is a FIFO, not a regular file" in text
    text = _error_within(5, lambda: load(fifo), _release(fifo))
    assert text == f"error: cannot read `{fifo}`: it is a FIFO, not a regular file"


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_is_refused_before_anything_is_read(device: str, tmp_path: Path) -> None:
    if not os.path.exists(device):
        pytest.skip(f"no {device} here")
    main = tmp_path / "main.flow"
    main.write_text(f'import "{device}"\n{JOB}')
    text = _error_within(5, lambda: load(main), lambda: None)
    assert f"cannot import `{device}`: it is a device, not a regular file" in text
    text = _error_within(5, lambda: load(device), lambda: None)
    assert text == f"error: cannot read `{device}`: it is a device, not a regular file"


def test_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    main = tmp_path / "main.flow"
    main.write_text(f'import "lib"\n{JOB}')
    text = _error_within(5, lambda: load(main), lambda: None)
    assert "lib`: it is a directory, not a regular file" in text
    text = _error_within(5, lambda: load(tmp_path / "lib"), lambda: None)
    assert "it is a directory" in text


@pytest.mark.slow
def test_the_environment_is_never_echoed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not os.path.exists("/proc/self/environ"):
        pytest.skip("no /proc here")
    secret = "s3cr3t-value-that-must-not-leak"
    monkeypatch.setenv("FLOWBATCH_TEST_SECRET", secret)
    # /proc/self/environ is this process's environment as it was at exec: a child
    # started after setenv has the secret in its own.
    main = tmp_path / "main.flow"
    main.write_text(f'import "/proc/self/environ"\n{JOB}')
    result = subprocess.run(
        [sys.executable, "-m", "flowbatch", "validate", str(main)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
        check=False,
    )
    assert result.returncode == 2
    assert secret not in result.stderr and secret not in result.stdout
    assert "FLOWBATCH_TEST_SECRET" not in result.stderr
    assert "it is not text (a NUL byte at byte offset" in result.stderr


def test_a_file_over_the_limit_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.flow"
    with big.open("wb") as f:  # 17 MiB of comments: valid, but past the limit
        line = b"# " + b"x" * 1021 + b"\n"
        for _ in range(17 * 1024):
            f.write(line)
    assert big.stat().st_size > MAX_FILE_BYTES
    text = _error_within(10, lambda: load(big), lambda: None)
    assert text == f"error: cannot read `{big}`: it is larger than 16 MiB"


def test_a_file_just_under_the_limit_is_read(tmp_path: Path) -> None:
    # /proc files report a size of 0, so the limit is on what is read, not on st_size.
    ok = tmp_path / "ok.flow"
    ok.write_bytes(JOB.encode() + b"#" * (MAX_FILE_BYTES - len(JOB) - 1) + b"\n")
    assert len(load(ok)) == 1


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b'job a {\n  command = "\x00secret"\n}\n', "a NUL byte at byte offset 21"),
        (b'job a {\n  command = "\x1b]0;owned\x07"\n}\n', "a control character at byte offset 21"),
        (b'job a {\n  command = "\xc2\x9b31m"\n}\n', "a control character at byte offset 21"),
        (b'job a {\n  command = "\xff secret"\n}\n', "not UTF-8 text (byte offset 21)"),
    ],
)
def test_a_file_that_is_not_text_is_named_not_quoted(data: bytes, why: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.flow"
    bad.write_bytes(data)
    main = tmp_path / "main.flow"
    main.write_text('import "bad.flow"\njob b {\n  command = "x"\n}\n')
    for path, head in ((bad, f"error: cannot read `{bad}`"), (main, "main.flow:1:8")):
        with pytest.raises(FlowError) as info:
            load(path)
        text = str(info.value)
        assert info.value.kind is Kind.IMPORT and why in text and head in text
        assert "secret" not in text and "owned" not in text and "\x1b" not in text
        assert "command" not in text


def test_text_given_directly_is_checked_too() -> None:
    with pytest.raises(FlowError) as info:
        load_text('job a {\n  command = "echo \x1b[2J"\n}\n', "t.flow")
    assert str(info.value) == (
        "error: cannot read `t.flow`: it is not text (a control character at byte offset 26)"
    )
    # Tabs, carriage returns and form feeds are text.
    assert len(load_text('job a {\r\n\tcommand = "x"\f\r\n}\r\n', "t.flow")) == 1


def test_a_reader_that_fails_with_bad_utf8_quotes_nothing() -> None:
    def read(path: str) -> str:
        return b"ok \xff secret".decode("utf-8")

    with pytest.raises(FlowError) as info:
        load_text(f'import "lib.flow"\n{JOB}', "t.flow", read=read)
    assert "byte offset 3" in str(info.value) and "secret" not in str(info.value)
