"""What the Frontier keeps of each job and reports: a node per job (`Node`: a single
job's `Task`, or an array's status table and its live children), the entries of its
queues' heaps, its cascade's worklist, and the `Change`s and `Placement`s it hands to
the runner. Plain records: every decision is the Frontier's (run/frontier.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from flowbatch.lang.model import JobSpec
from flowbatch.run.state import JobState

__all__ = ["Change", "Node", "Placement", "Task"]

S = JobState

# Child status bytes in an array's table.
CHILD_NEW, CHILD_LIVE, CHILD_OK, CHILD_FAILED = 0, 1, 2, 3
REUSED_TO_OK = bytes([CHILD_NEW, CHILD_OK]) + bytes(254)  # a reuse mask as status bytes
ENDED_TO_STATUS = bytes([CHILD_NEW, CHILD_OK, CHILD_FAILED]) + bytes(253)  # `add(ended=)`

Key = tuple[str, int | None]


@dataclass(slots=True)
class Change:
    """One state change, for the runner to turn into a JobEvent. Made five times a job
    and never changed: not frozen, whose __init__ sets each field through
    object.__setattr__ (four times the cost), nor a tuple, 8 bytes more (10,000 jobs
    hold 20,000 at once when they are submitted)."""

    name: str
    index: int | None
    state: JobState
    reason: str
    attempt: int


class Placement(NamedTuple):
    """An attempt to start now, already STARTING, its room taken on `host`."""

    name: str
    index: int | None  # type: ignore[assignment]  # hides tuple.index, which nothing calls
    attempt: int
    compute: str
    host: str


class Entry(NamedTuple):
    """A queue's heap entry. A tuple, so that heapq compares it in C, field by field:
    the fields before `name` are the order (smallest first); `pos` is unique per job
    and `order` per child, so `name` and `child` never decide it."""

    retried: int  # 0 for a retry (it goes first), 1 otherwise
    priority: int  # the job's priority, negated
    crit: int  # the job's critical path, negated
    pos: int  # submission order
    order: int  # the array index (-1 for a single job: it has one entry)
    name: str
    child: int | None  # the array index, None for a single job


class Done(NamedTuple):
    """An item of the cascade's worklist: a task (or a single job) ended."""

    ok: bool
    name: str
    child: int | None
    root: str  # why it failed, as its dependents' reasons name it


class Task:
    """A single job or one array child that exists."""

    __slots__ = ("attempt", "compute", "host", "reason", "state")

    def __init__(self, state: JobState) -> None:
        self.state = state
        self.attempt = 0
        self.reason = ""
        self.compute = ""
        self.host = ""


# What a single job holds for an array's fields (see Node): shared, always empty.
_NO_STATUS = bytearray()
_NO_CHILDREN: dict[int, Task] = {}
_NO_NEED: dict[int, int] = {}
_NO_READY: list[int] = []


class Node:
    """A job of the plan: a single job (with its `task`) or an array (its children)."""

    __slots__ = (
        "child_need",
        "child_ready",
        "children",
        "crit",
        "cursor",
        "failed",
        "name",
        "ok",
        "per_child",
        "pos",
        "root",
        "size",
        "spec",
        "state",
        "status",
        "task",
        "waiting",
    )

    def __init__(self, spec: JobSpec, pos: int, crit: int) -> None:
        self.name = spec.name
        self.spec = spec
        self.pos = pos
        self.crit = crit
        self.size = spec.array_size
        self.state = S.SUBMITTED
        self.waiting = 0  # whole-job and element dependencies not yet succeeded
        self.root = ""  # why this job (or its first failed child) failed, for dependents
        self.task: Task | None = None  # single jobs only
        # Arrays only. A single job shares empty ones (never written: every write is
        # by child index), 250 bytes less a job: 10,000 jobs are 2.4 MiB.
        self.per_child = 0  # per-child conditions (n_to_n deps, +1 if sequential)
        array = self.size is not None
        self.status = bytearray(self.size or 0) if array else _NO_STATUS
        self.children: dict[int, Task] = {} if array else _NO_CHILDREN  # live ones only
        self.cursor = -1  # >= 0: children from here on are released in index order
        # index -> per-child conditions still unmet
        self.child_need: dict[int, int] = {} if array else _NO_NEED
        # per-child conditions met, job-level not yet
        self.child_ready: list[int] = [] if array else _NO_READY
        self.ok = 0
        self.failed = 0
