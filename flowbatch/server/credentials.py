"""The server's access keys: `STATE_DIR/credentials`, in AWS's shared-credentials format.

The file is the one boto3, the AWS CLI and every SDK already read
(`AWS_SHARED_CREDENTIALS_FILE`), so the server and its users share it as it is: the
server accepts the key pair of every profile in it, and a user points a client at the
`flowbatch` profile. On first start without one, `ensure` makes it with a fresh key
pair, never readable by anyone else even for an instant (created 0600, not chmod-ed
after), and never half-written (written aside, then linked into place).

A secret read or made here goes nowhere but the returned mapping: not into a message,
not into a log, not into a traceback (configparser's own errors quote the offending
line, so they are replaced, not chained).
"""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import secrets
import shlex
import stat
from pathlib import Path

from flowbatch.errors import FlowbatchError

FILENAME = "credentials"
PROFILE = "flowbatch"
KEY_ID = "aws_access_key_id"
SECRET = "aws_secret_access_key"

# AWS's long-term key ids are "AKIA" and 16 characters of base32's alphabet; a key that
# looks like one is treated like one by secret scanners, which is what it deserves.
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# AWS's secrets are 40 characters of base64's alphabet.
_SECRET_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_KEY_ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,128}")


class CredentialsError(FlowbatchError):
    """A credentials file the server will not use; the text names the file, never a key's
    secret."""


def new_key_pair() -> tuple[str, str]:
    key_id = "AKIA" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))
    return key_id, secret


def ensure(state_dir: Path) -> tuple[Path, bool]:
    """`STATE_DIR/credentials`, made with a fresh `[flowbatch]` key pair if there is none;
    `created` says whether it was made now (and so whether to tell the user how to use it).
    An existing file is left as it is, whatever it holds: `load` judges it."""
    path = state_dir / FILENAME
    if os.path.lexists(path):
        return path, False
    state_dir.mkdir(parents=True, exist_ok=True)
    key_id, secret = new_key_pair()
    text = f"[{PROFILE}]\n{KEY_ID} = {key_id}\n{SECRET} = {secret}\n"
    aside = state_dir / f".{FILENAME}.{secrets.token_hex(8)}.tmp"
    # O_EXCL: never write into a file (or through a symlink) someone else put there first.
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            # The umask can only take bits away from 0o600; set it exactly so that the
            # owner can read what was written whatever the umask was (0o277 would not).
            os.fchmod(fd, 0o600)
            os.write(fd, text.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            # link, not rename: two servers starting at once must not replace each other's
            # key, and the second keeps the first's (created=False).
            os.link(aside, path)
        except FileExistsError:
            return path, False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aside)
    _fsync_dir(state_dir)
    return path, True


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(path: Path) -> dict[str, str]:
    """`{access key id: secret}` from every profile of `path`."""
    try:
        # O_NONBLOCK: a FIFO put there must not hang the server's start (it is refused below).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise CredentialsError(f"cannot read the credentials file {path}: {exc.strerror}") from None
    # Judged on the open file, not on the path: no window to swap the file in between.
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        os.close(fd)
        raise CredentialsError(f"the credentials file {path} is not a regular file")
    if status.st_uid != os.geteuid():
        # The file says who may call the server: one that another user put in a
        # directory they can write to (a shared /tmp) would let them in.
        os.close(fd)
        raise CredentialsError(
            f"the credentials file {path} belongs to another user (uid {status.st_uid}):"
            " it decides who may call this server, so it must be the server's user's own"
        )
    mode = stat.S_IMODE(status.st_mode)
    if mode & 0o077:
        os.close(fd)
        raise CredentialsError(
            f"permissions {mode:04o} for the credentials file {path} are too open: it "
            "holds secret keys and must be accessible by its owner only. "
            f"Run: chmod 600 {shlex.quote(str(path))}"
        )
    with os.fdopen(fd, encoding="utf-8", errors="strict") as file:
        try:
            text = file.read()
        except UnicodeDecodeError:
            raise CredentialsError(f"the credentials file {path} is not UTF-8 text") from None
    return _parse(text, path)


def _parse(text: str, path: Path) -> dict[str, str]:
    # No interpolation: a '%' in a secret is a character, not a reference.
    # No DEFAULT section either: in this format every [name] is a profile of its own.
    parser = configparser.ConfigParser(interpolation=None, default_section="\0")
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        # `from None`, and a message of our own: configparser's quotes the line, secret and all.
        raise CredentialsError(f"{path}:{_error_line(exc)}: {_error_kind(exc)}") from None
    keys: dict[str, str] = {}
    for profile in parser.sections():
        section = parser[profile]
        for field in (KEY_ID, SECRET):
            if not section.get(field, "").strip():
                raise CredentialsError(f"{path}: profile [{profile}] has no {field}")
        key_id, secret = section[KEY_ID].strip(), section[SECRET].strip()
        if not _KEY_ID_SHAPE.fullmatch(key_id):
            # It is the first part of a SigV4 credential scope, which '/' separates.
            raise CredentialsError(
                f"{path}: profile [{profile}]: {KEY_ID} must be letters, digits, '_' or '-'"
            )
        if keys.get(key_id, secret) != secret:
            raise CredentialsError(
                f"{path}: access key {key_id} appears twice with different secrets"
            )
        keys[key_id] = secret
    if not keys:
        raise CredentialsError(f"{path}: no profile with an access key")
    return keys


def _error_line(exc: configparser.Error) -> str:
    # MissingSectionHeaderError is a ParsingError whose `errors` may be unset: lineno first.
    lineno = getattr(exc, "lineno", None)
    if lineno is None and isinstance(exc, configparser.ParsingError) and exc.errors:
        lineno = exc.errors[0][0]
    return str(lineno) if lineno is not None else "?"


def _error_kind(exc: configparser.Error) -> str:
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return "a line before any [profile] header"
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"profile [{exc.section}] appears twice"
    if isinstance(exc, configparser.DuplicateOptionError):
        return f"{exc.option} appears twice in profile [{exc.section}]"
    return "not a 'name = value' line (AWS's shared-credentials format)"


def usage(path: Path, *, region: str, endpoint: str | None = None) -> str:
    """What to tell the user after `ensure` created the file: how clients find the key.
    It names the file and the profile; the secret stays in the file."""
    exports = [
        f"AWS_SHARED_CREDENTIALS_FILE={shlex.quote(str(path))}",
        f"AWS_PROFILE={PROFILE}",
        f"AWS_DEFAULT_REGION={shlex.quote(region)}",
    ]
    if endpoint is not None:
        # botocore (1.31 and later) and the AWS CLI read a per-service endpoint from it.
        exports.append(f"AWS_ENDPOINT_URL_BATCH={shlex.quote(endpoint)}")
    return (
        f"created an access key for this server in {path} (profile [{PROFILE}], mode 0600).\n"
        "To use it from boto3 or the AWS CLI:\n"
        f"  export {' '.join(exports)}"
    )
