"""The server's credentials file (server/credentials.py): made once, 0600 from its first
byte whatever the umask, in the format botocore itself reads; refused when others could
read it or when a profile is incomplete; and its secret never shown anywhere."""

from __future__ import annotations

import logging
import os
import re
import shlex
import stat
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from flowbatch.server import credentials
from flowbatch.server.credentials import CredentialsError, ensure, load, usage


@pytest.fixture
def umask_zero() -> Iterator[None]:
    # The most permissive umask: whatever is created here gets exactly the mode asked for.
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def the_secret(path: Path) -> str:
    (secret,) = re.findall(r"^aws_secret_access_key = (.+)$", path.read_text(), re.M)
    return secret


def write(path: Path, text: str, permissions: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(permissions)
    return path


@pytest.mark.usefixtures("umask_zero")
def test_ensure_creates_a_0600_file_that_botocore_reads_as_profile_flowbatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    path, created = ensure(state)
    assert (path, created) == (state / "credentials", True)
    assert mode(path) == 0o600
    assert os.listdir(state) == ["credentials"]  # nothing left aside
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    read = botocore.session.Session(profile="flowbatch").get_credentials()
    assert read is not None
    assert re.fullmatch(r"AKIA[A-Z2-7]{16}", read.access_key)
    assert len(read.secret_key) == 40
    assert load(path) == {read.access_key: read.secret_key}


def test_ensure_keeps_an_existing_file_and_each_new_file_gets_a_new_key(tmp_path: Path) -> None:
    path, _ = ensure(tmp_path / "a")
    before = path.read_bytes()
    assert ensure(tmp_path / "a") == (path, False)
    assert path.read_bytes() == before
    other, created = ensure(tmp_path / "b")
    assert created
    assert load(other).keys().isdisjoint(load(path).keys())
    assert the_secret(other) != the_secret(path)


def test_ensure_never_writes_through_a_file_someone_put_there(tmp_path: Path) -> None:
    # A symlink (even a dangling one) is "a file there": ensure leaves it for load to judge.
    target = tmp_path / "elsewhere"
    (tmp_path / "credentials").symlink_to(target)
    assert ensure(tmp_path) == (tmp_path / "credentials", False)
    assert not target.exists()


def test_load_reads_every_profile(tmp_path: Path) -> None:
    path = write(
        tmp_path / "credentials",
        "[flowbatch]\naws_access_key_id = AKIAONE\naws_secret_access_key = s%cret/one\n\n"
        "[default]\naws_access_key_id=AKIATWO\naws_secret_access_key=secret+two\n"
        "region = eu-west-1\n",
    )
    assert load(path) == {"AKIAONE": "s%cret/one", "AKIATWO": "secret+two"}


@pytest.mark.parametrize("permissions", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_load_refuses_a_file_others_may_read_or_write(tmp_path: Path, permissions: int) -> None:
    path, _ = ensure(tmp_path)
    path.chmod(permissions)
    with pytest.raises(CredentialsError) as caught:
        load(path)
    message = caught.value.message
    assert f"permissions {permissions:04o}" in message and "too open" in message
    assert f"chmod 600 {path}" in message
    assert the_secret(path) not in message


def test_load_refuses_a_file_another_user_owns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whoever wrote the file decides who may call the server: a file another user left
    # in a directory they can write to (a shared /tmp) was taken as the server's own.
    path, _ = ensure(tmp_path)
    owner = path.stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)
    with pytest.raises(CredentialsError) as caught:
        load(path)
    assert f"belongs to another user (uid {owner})" in caught.value.message
    assert the_secret(path) not in caught.value.message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[p]\naws_access_key_id = AKIAONE\n", "profile [p] has no aws_secret_access_key"),
        ("[p]\naws_secret_access_key = SECRETVALUE123\n", "profile [p] has no aws_access_key_id"),
        ("[p]\naws_access_key_id =\naws_secret_access_key = SECRETVALUE123\n", "has no"),
        ("", "no profile with an access key"),
        (
            "[p]\naws_access_key_id = AKIA/ONE\naws_secret_access_key = SECRETVALUE123\n",
            "must be letters, digits",
        ),
        (
            "[p]\naws_access_key_id = AKIAONE\naws_secret_access_key = SECRETVALUE123\n"
            "[q]\naws_access_key_id = AKIAONE\naws_secret_access_key = SECRETVALUE456\n",
            "AKIAONE appears twice with different secrets",
        ),
    ],
)
def test_load_refuses_an_incomplete_profile(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path / "credentials", text)
    with pytest.raises(CredentialsError) as caught:
        load(path)
    assert words in caught.value.message
    assert str(path) in caught.value.message
    assert "SECRETVALUE" not in caught.value.message


@pytest.mark.parametrize(
    "text",
    [
        # configparser's own errors quote the line: here the line is the secret.
        "aws_secret_access_key = SECRETVALUE123\n[p]\n",
        "[p]\naws_access_key_id = AKIAONE\nSECRETVALUE123 without a delimiter\n",
        "[p]\naws_access_key_id = AKIAONE\naws_secret_access_key = SECRETVALUE123\n"
        "aws_secret_access_key = SECRETVALUE456\n",
        "[p]\naws_access_key_id = AKIAONE\naws_secret_access_key = SECRETVALUE123\n[p]\n",
    ],
)
def test_a_malformed_file_is_refused_without_quoting_its_lines(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "credentials", text)
    with pytest.raises(CredentialsError) as caught:
        load(path)
    assert re.match(rf"{re.escape(str(path))}:\d+: ", caught.value.message)
    # Nor in the traceback a bug report would carry (no chained configparser error).
    shown = "".join(traceback.format_exception(caught.value))
    assert "SECRETVALUE" not in shown


@pytest.mark.parametrize("make", [os.mkdir, os.mkfifo])
def test_load_refuses_what_is_not_a_regular_file_without_hanging(tmp_path: Path, make: Any) -> None:
    make(tmp_path / "credentials", 0o600)
    with pytest.raises(CredentialsError, match="not a regular file"):
        load(tmp_path / "credentials")


def test_load_of_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="cannot read the credentials file"):
        load(tmp_path / "credentials")


def test_usage_says_how_to_use_the_key_and_never_shows_it(tmp_path: Path) -> None:
    path, _ = ensure(tmp_path / "state dir")
    text = usage(path, region="us-east-1", endpoint="http://127.0.0.1:8910")
    exports = text.rpartition("export ")[2]
    assert dict(item.split("=", 1) for item in shlex.split(exports)) == {
        "AWS_SHARED_CREDENTIALS_FILE": str(path),
        "AWS_PROFILE": "flowbatch",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_BATCH": "http://127.0.0.1:8910",
    }
    assert the_secret(path) not in text


@pytest.mark.usefixtures("umask_zero")
def test_the_secret_is_only_ever_in_a_0600_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    state = tmp_path / "state"
    path, _ = ensure(state)
    secret = the_secret(path)
    load(path)
    print(usage(path, region="us-east-1"))
    path.chmod(0o644)
    with pytest.raises(CredentialsError) as caught:
        load(path)
    path.chmod(0o600)
    out, err = capsys.readouterr()
    assert secret not in out + err + caplog.text + str(caught.value)
    holding = [p for p in tmp_path.rglob("*") if p.is_file() and secret in p.read_text()]
    assert holding == [path]
    assert all(mode(p) == 0o600 for p in holding)


def test_new_key_pairs_are_aws_shaped_and_distinct() -> None:
    pairs = {credentials.new_key_pair() for _ in range(50)}
    assert len({key_id for key_id, _ in pairs}) == 50
    for key_id, secret in pairs:
        assert re.fullmatch(r"AKIA[A-Z2-7]{16}", key_id)
        assert re.fullmatch(r"[A-Za-z0-9+/]{40}", secret)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_the_file_is_0600_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    # 0o277 would leave a file its owner cannot read (0400); 0o000 one anybody could.
    previous = os.umask(umask)
    try:
        path, _ = ensure(tmp_path)
    finally:
        os.umask(previous)
    assert mode(path) == 0o600
    assert len(load(path)) == 1
