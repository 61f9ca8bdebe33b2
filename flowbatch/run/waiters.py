"""Who waits for whom: the Frontier's index of each job's dependents, by dependency kind.

A job that ends (or an array child that does) wakes the jobs that wait for it: all of
it (WHOLE), one child of it (ELEMENT), or child by child (N_TO_N). Only jobs something
waits for have a list: 10,000 independent jobs hold none.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from flowbatch.lang.model import Dependency, DepKind

_K = TypeVar("_K", str, tuple[str, int])


class Waiters:
    __slots__ = ("_element", "_n2n", "_whole")

    def __init__(self) -> None:
        self._whole: dict[str, list[str]] = {}  # job -> jobs waiting for all of it
        self._element: dict[tuple[str, int], list[str]] = {}  # (array, index) -> jobs
        self._n2n: dict[str, list[str]] = {}  # array -> arrays waiting child by child

    def add(self, name: str, dep: Dependency) -> None:
        """`name` waits for `dep`."""
        if dep.kind is DepKind.WHOLE:
            self._whole.setdefault(dep.job, []).append(name)
        elif dep.kind is DepKind.N_TO_N:
            self._n2n.setdefault(dep.job, []).append(name)
        else:
            assert dep.index is not None
            self._element.setdefault((dep.job, dep.index), []).append(name)

    def of_whole(self, job: str) -> Sequence[str]:
        return self._whole.get(job, ())

    def of_child(self, job: str, index: int) -> Sequence[str]:
        """The jobs waiting for child `index` of array `job` alone (ELEMENT)."""
        return self._element.get((job, index), ())

    def of_children(self, job: str) -> Sequence[str]:
        """The arrays waiting for array `job` child by child (N_TO_N)."""
        return self._n2n.get(job, ())

    def forget(self, name: str, after: Iterable[Dependency]) -> None:
        """Drop job `name`: the lists of those waiting for it, and `name` from the
        lists of what it waited for (`after`): a job that failed while it waited
        (cancelled, a dependency failed) is still in them, and they may run on."""
        self._whole.pop(name, None)
        self._n2n.pop(name, None)
        for key in [k for k in self._element if k[0] == name]:
            del self._element[key]
        for dep in after:
            if dep.kind is DepKind.WHOLE:
                _drop(self._whole, dep.job, name)
            elif dep.kind is DepKind.N_TO_N:
                _drop(self._n2n, dep.job, name)
            elif dep.index is not None:
                _drop(self._element, (dep.job, dep.index), name)


def _drop(lists: dict[_K, list[str]], key: _K, name: str) -> None:
    """`name` out of the dependents `lists[key]` (an emptied list goes too)."""
    waiting = lists.get(key)
    if waiting is not None and name in waiting:
        waiting.remove(name)
        if not waiting:
            del lists[key]
