"""GetLogEvents over an attempt's stdout and stderr: every line once, in order, across
pages and tokens, whatever the page size."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowbatch.server.errors import ClientException
from flowbatch.server.logs import get_log_events


def files(tmp_path: Path, out: str, err: str) -> list[Path]:
    (tmp_path / "stdout").write_text(out)
    (tmp_path / "stderr").write_text(err)
    return [tmp_path / "stdout", tmp_path / "stderr", tmp_path / "missing"]


@pytest.mark.parametrize("limit", [1, 2, 3, 10_000])
def test_pages_read_every_line_once_in_order(tmp_path: Path, limit: int) -> None:
    paths = files(tmp_path, "one\ntwo\nthree\n", "oops\n")
    seen: list[str] = []
    token = None
    for _ in range(20):
        page = get_log_events(paths, {"limit": limit, **({"nextToken": token} if token else {})})
        seen += [e["message"] for e in page["events"]]
        if page["nextForwardToken"] == token:
            break
        token = page["nextForwardToken"]
    assert seen == ["one", "two", "three", "oops"]


def test_a_last_line_without_a_newline_is_an_event(tmp_path: Path) -> None:
    page = get_log_events(files(tmp_path, "done\nhalf", "err"), {})
    assert [e["message"] for e in page["events"]] == ["done", "half", "err"]


def test_a_forged_token_is_a_client_error(tmp_path: Path) -> None:
    with pytest.raises(ClientException):
        get_log_events(files(tmp_path, "", ""), {"nextToken": "f/../../etc"})


@pytest.mark.parametrize("token", ["f/²", "f/١٢", "b/-1", "f/ 1", "x/1", "f"])
def test_a_token_of_other_digits_is_a_client_error_not_a_crash(tmp_path: Path, token: str) -> None:
    # str.isdigit() holds for '²', which int() refuses: that was a 500.
    with pytest.raises(ClientException) as raised:
        get_log_events(files(tmp_path, "a", ""), {"nextToken": token})
    assert raised.value.code == "InvalidParameterException"
