"""The runner tells its reaper of an ended job with the next job it registers, in one
write (one wake-up of the reaper a job, not two), and of the last ones when it closes
the pipe: the reaper ends knowing of nothing left to stop."""

from __future__ import annotations

import pytest
from proc_helpers import wait_for

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
