"""Helpers for tests that watch real processes: whether a pid lives, and bounded waits
for a condition (blocking, for tests driving a subprocess; async, for anyio tests).

`from proc_helpers import alive, wait_for`: pytest puts tests/ on sys.path (conftest).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import anyio

__all__ = ["alive", "wait_for", "wait_until"]


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie awaiting its reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(cond: Callable[[], object], timeout: float = 30.0) -> None:
    """Block until `cond()` is true; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


async def wait_until(cond: Callable[[], object], timeout: float = 30.0) -> None:
    """Wait (without blocking the event loop) until `cond()` is true; TimeoutError after
    `timeout` seconds."""
    with anyio.fail_after(timeout):
        while not cond():
            await anyio.sleep(0.01)
