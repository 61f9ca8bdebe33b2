"""Hosts that dropped out of a run, since when, and when the run stops waiting for them.

A host lost mid-job (an SSH host that stops answering) fails its attempts with AWS's
spot reason, and the runner asks its executor every few seconds whether it is back.
While other work can run, a run goes on without it. When only lost hosts could take
what is left, the run waits for them, as AWS keeps such jobs RUNNABLE; but not forever:
once the host lost last has been gone for `timeout` seconds, the run gives up, and
what is left fails with a reason that names the hosts. A CI job then ends with an
honest exit code instead of hanging until the CI system kills it.
"""

from __future__ import annotations

from collections.abc import Iterator

DEFAULT_TIMEOUT = 600.0  # seconds: `flowbatch run --host-timeout`


class LostHosts:
    """(compute environment, host) pairs that are lost, with the time each was lost."""

    def __init__(self, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout  # None: wait for ever
        self._since: dict[tuple[str, str], float] = {}

    def lose(self, compute: str, host: str, now: float) -> None:
        self._since.setdefault((compute, host), now)

    def back(self, compute: str, host: str) -> None:
        self._since.pop((compute, host), None)

    def __bool__(self) -> bool:
        return bool(self._since)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(sorted(self._since))

    def given_up(self, now: float) -> bool:
        """Whether every lost host has been gone for the timeout: counted from the most
        recent loss, so a host that just dropped gets the whole timeout too."""
        if self.timeout is None or not self._since:
            return False
        return now - max(self._since.values()) >= self.timeout

    def reason(self) -> str:
        """The status reason of the jobs left when the run gives up."""
        hosts = ", ".join(f"{host} of `{compute}`" for compute, host in self)
        return f"Host lost: no host came back within {duration(self.timeout or 0)} ({hosts})"


def duration(seconds: float) -> str:
    """600 -> `10m`, 90 -> `90s`: the way `--host-timeout` is written."""
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"
