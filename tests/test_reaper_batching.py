"""The runner tells its reaper of an ended job with the next job it registers, in one
write (one wake-up of the reaper a job, not two), and of the last ones when it closes
the pipe: the reaper ends knowing of nothing left to stop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from proc_helpers import run_to_end, wait_for

from flowbatch.executors import reaper as reaper_module
from flowbatch.executors.reaper import Reaper


def test_removals_travel_with_the_next_registration(
    reaper: Reaper, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[str] = []
    write = reaper._write

    def recording(text: str) -> bool:
        writes.append(text)
        return write(text)

    monkeypatch.setattr(reaper, "_write", recording)
    reaper.send("+g", "101@5")
    reaper.send("-g", "101@5")
    reaper.send("+c", "/nonexistent/cg-a")
    reaper.send("-c", "/nonexistent/cg-a")
    assert writes == ["+g 101@5\n", "-g 101@5\n+c /nonexistent/cg-a\n"]
    reaper.close()
    assert writes[2:] == ["-c /nonexistent/cg-a\n"]
    # Nothing was left registered: the reaper exits at once, without a grace period.
    wait_for(lambda: reaper.proc.poll() is not None, timeout=10)
    assert reaper.proc.returncode == 0


def test_the_reaper_ends_without_the_interpreters_shutdown(tmp_path: Path) -> None:
    """The runner waits for its reaper's exit at the end of every run: the script leaves
    at once when its pipe closes, not through Python's shutdown (whose atexit handlers
    are one sign of it)."""
    script = reaper_module.__file__
    code = (
        "import atexit, os, runpy, sys\n"
        "atexit.register(lambda: os.write(1, b'shutdown\\n'))\n"
        f"sys.argv = [{script!r}, '1.0']\n"
        f"runpy.run_path({script!r}, run_name='__main__')\n"
    )
    out = run_to_end([sys.executable, "-c", code], stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
