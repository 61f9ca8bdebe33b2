"""Placement: the capacity of every host of every compute environment, and where an
attempt fits.

`Pools` is pure bookkeeping: it never runs anything and never waits. The Frontier asks
it where a job fits (`find`), takes the room when it places an attempt (`take`) and
gives it back when the attempt ends (`give`). It never lets the jobs on a host exceed
that host's vcpus, memory or gpus, and with `placement = "exclusive"` it puts at most
one job on a host at a time (AWS's "one container per instance"). A lost host takes no
new jobs until it is restored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flowbatch.lang.model import ComputeEnv, Host

# vCPUs are floats (a job may ask for 0.5); compare with a little slack so that
# 0.1 + 0.2 jobs never look over capacity because of rounding.
_EPS = 1e-9


@dataclass(slots=True)
class _Room:
    name: str
    vcpus: float
    memory: int
    gpus: int
    free_vcpus: float
    free_memory: int
    free_gpus: int
    jobs: int = 0
    lost: bool = False


class Pools:
    """Free capacity per host, for every compute environment of a run."""

    __slots__ = ("_exclusive", "_rooms")

    def __init__(self, computes: Mapping[str, ComputeEnv]) -> None:
        self._rooms: dict[str, list[_Room]] = {}
        self._exclusive: dict[str, bool] = {}
        for ce in computes.values():
            self.set(ce)

    def set(self, ce: ComputeEnv) -> None:
        """Add a compute environment, or change one's hosts and their capacity (flowbatch
        server's UpdateComputeEnvironment): the room jobs on a host still use stays
        taken, so a host made smaller can be over-full until they end."""
        hosts = ce.hosts or (Host(name=ce.name, vcpus=ce.vcpus, memory=ce.memory, gpus=ce.gpus),)
        old = {r.name: r for r in self._rooms.get(ce.name, ())}
        rooms = []
        for h in hosts:
            room = _Room(h.name, h.vcpus, h.memory, h.gpus, h.vcpus, h.memory, h.gpus)
            was = old.get(h.name)
            if was is not None:
                room.free_vcpus -= was.vcpus - was.free_vcpus
                room.free_memory -= was.memory - was.free_memory
                room.free_gpus -= was.gpus - was.free_gpus
                room.jobs, room.lost = was.jobs, was.lost
            rooms.append(room)
        self._rooms[ce.name] = rooms
        self._exclusive[ce.name] = ce.placement == "exclusive"

    def could_ever_fit(self, ces: Iterable[str], vcpus: float, memory: int, gpus: int) -> bool:
        """Whether some host of `ces`, when empty, is big enough for the job."""
        return any(
            r.vcpus + _EPS >= vcpus and r.memory >= memory and r.gpus >= gpus
            for ce in ces
            for r in self._rooms.get(ce, ())
        )

    def full(self, ce: str) -> bool:
        """True when no host of `ce` could take any job at all right now."""
        # Loops, not any()/all() over generators: asked once or twice a placement.
        exclusive = self._exclusive[ce]
        for r in self._rooms[ce]:
            if r.lost or (exclusive and r.jobs):
                continue
            if r.free_vcpus > _EPS and r.free_memory > 0:
                return False
        return True

    def all_full(self, ces: Iterable[str]) -> bool:
        """True when no host of any of `ces` could take any job right now."""
        for ce in ces:  # noqa: SIM110 (a loop: see `full`)
            if not self.full(ce):
                return False
        return True

    def find(self, ce: str, vcpus: float, memory: int, gpus: int) -> str | None:
        """The host of `ce` where the job fits best (the fullest that still has room:
        binpacking), or None."""
        exclusive = self._exclusive[ce]
        best: _Room | None = None
        for r in self._rooms[ce]:
            if r.lost or (exclusive and r.jobs):
                continue
            if r.free_vcpus + _EPS < vcpus or r.free_memory < memory or r.free_gpus < gpus:
                continue
            if best is None or r.free_vcpus < best.free_vcpus:
                best = r
        return None if best is None else best.name

    def take(self, ce: str, host: str, vcpus: float, memory: int, gpus: int) -> None:
        r = self._room(ce, host)
        r.free_vcpus -= vcpus
        r.free_memory -= memory
        r.free_gpus -= gpus
        r.jobs += 1

    def give(self, ce: str, host: str, vcpus: float, memory: int, gpus: int) -> None:
        r = self._room(ce, host)
        r.free_vcpus += vcpus
        r.free_memory += memory
        r.free_gpus += gpus
        r.jobs -= 1

    def lose(self, ce: str, host: str) -> None:
        """Stop placing on `host` until `restore`."""
        self._room(ce, host).lost = True

    def restore(self, ce: str, host: str) -> None:
        self._room(ce, host).lost = False

    def lost(self) -> list[tuple[str, str]]:
        return [(ce, r.name) for ce, rooms in self._rooms.items() for r in rooms if r.lost]

    def used(self, ce: str) -> tuple[float, int, int]:
        """vCPUs, memory and gpus in use on `ce` (for tests and the benchmark)."""
        rooms = self._rooms[ce]
        return (
            sum(r.vcpus - r.free_vcpus for r in rooms),
            sum(r.memory - r.free_memory for r in rooms),
            sum(r.gpus - r.free_gpus for r in rooms),
        )

    def _room(self, ce: str, host: str) -> _Room:
        for r in self._rooms[ce]:
            if r.name == host:
                return r
        raise KeyError(f"no host {host!r} in compute environment {ce!r}")
