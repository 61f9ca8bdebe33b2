"""What the environment tests share: a look at every process's command line, which any
user of the machine can read (`ps`, /proc/PID/cmdline), for a value that must not be
there; and a umask as loose as a default one for the tests of file modes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def command_lines_holding(value: str) -> list[str]:
    """The command lines of this machine's processes that contain `value`, except this
    test process's own (which holds it in memory, never on a command line)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if value.encode() in raw:
            words = raw.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry}: {words}")
    return found


@contextmanager
def loose_umask() -> Iterator[None]:
    """umask 022 for the duration: files made with the default mode would be readable
    by every user (the umask is per process, and pytest runs one test at a time)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


# Values an author (of `env`, a `-p` value rendered into it) or the runner's environment
# (`env_from_host`) may hand a job, each aimed at a way a value could turn into shell
# syntax or be cut on its way: quotes, substitutions, the here-document's terminator on
# a line of its own, a final CR, a CRLF, bytes that are not UTF-8 (as os.environ holds them), and
# a line longer than a container runtime's env-file parser takes (64 KiB).
HOSTILE_ENV = {
    "QUOTES": "it's \"x\" '\"'\"' \\' \\",
    "SUBST": "$(touch pwned) `touch pwned` ${IFS} $HOME",
    "LINES": "a\nFLOWBATCH_ENV_END\nb=c; touch pwned\n\n",
    "CR": "ends in a CR\r",
    "CRLF": "a Windows\r\nline break",  # sbatch refuses a script holding one
    "SPACES": "  lead and trail  ",
    "HASH": "#not a comment",
    "BYTES": "raw \udcff\udcfe bytes",
    "LONG": "x" * 70_000,
    "EMPTY": "",
}


def env0(path: Path) -> dict[str, str]:
    """The environment a job wrote with `env -0` to `path`, bytes decoded as os.environ
    decodes them."""
    pairs = (e.partition(b"=") for e in path.read_bytes().split(b"\0") if e)
    return {os.fsdecode(k): os.fsdecode(v) for k, _, v in pairs}
