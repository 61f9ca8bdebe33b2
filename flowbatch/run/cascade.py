"""The failure cascade: the jobs and array children of a run as records, what each
waits on, and how a success or a failure travels along the dependency edges.

`Cascade` holds the records and the edges; `schedule.Frontier` builds on it, adding
queues and placement, and supplies the two hooks `_release` (a job's job-level
dependencies succeeded) and `_make_runnable` (an array child may start). A failure
fails everything downstream that can no longer run, each with AWS's reason
`Dependency failed: <root cause>`, where the root cause names the job (or child) that
failed first, its job id and why. The propagation uses an explicit worklist, so a
failure at the head of a long chain does not recurse.

Every state change goes through `state.advance()` (array parents through
`state.advance_parent()`) and is appended to `changes`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from flowbatch.lang.model import JobSpec
from flowbatch.run.state import DEPENDENCY_FAILED, Event, JobState, advance, advance_parent

# AWS's status reason prefix for a job that never ran because a dependency failed
# (`junit` tells such jobs apart by it).

S = JobState

# Child status bytes in an array's table.
CHILD_NEW, CHILD_LIVE, CHILD_OK, CHILD_FAILED = 0, 1, 2, 3
_REUSED_TO_OK = bytes([CHILD_NEW, CHILD_OK]) + bytes(254)  # a reuse mask as status bytes

Key = tuple[str, int | None]


@dataclass(frozen=True, slots=True)
class Change:
    """One state change, for the runner to turn into a JobEvent."""

    name: str
    index: int | None
    state: JobState
    reason: str
    attempt: int


class Task:
    """A single job or one array child that exists."""

    __slots__ = ("attempt", "compute", "host", "reason", "state")

    def __init__(self, state: JobState) -> None:
        self.state = state
        self.attempt = 0
        self.reason = ""
        self.compute = ""
        self.host = ""


class Node:
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
        # Arrays only:
        self.per_child = 0  # per-child conditions (n_to_n deps, +1 if sequential)
        self.status = bytearray(self.size or 0)
        self.children: dict[int, Task] = {}  # live children only
        self.cursor = -1  # >= 0: children from here on are released in index order
        self.child_need: dict[int, int] = {}  # index -> per-child conditions still unmet
        self.child_ready: list[int] = []  # per-child conditions met, job-level not yet
        self.ok = 0
        self.failed = 0


class Cascade:
    """Records, dependency edges and failure propagation. See the module docstring."""

    def __init__(self, job_ids: Mapping[str, str]) -> None:
        self.changes: list[Change] = []
        self._ids = job_ids
        self._nodes: dict[str, Node] = {}
        self._whole: dict[str, list[str]] = {}  # job -> jobs waiting for all of it
        self._element: dict[tuple[str, int], list[str]] = {}  # (array, index) -> jobs
        self._n2n: dict[str, list[str]] = {}  # array -> arrays waiting child by child
        self._work: deque[tuple[bool, str, int | None, str]] = deque()
        self._open = 0  # jobs (nodes) not yet done

    # -- hooks for the Frontier -----------------------------------------------------------
    def _release(self, node: Node) -> None:
        """The job-level dependencies of `node` succeeded: its work may start."""
        raise NotImplementedError

    def _make_runnable(self, node: Node, index: int) -> None:
        """Every condition of child `index` of `node` is met: it may start."""
        raise NotImplementedError

    def _create_child(self, node: Node, index: int, target: JobState) -> Task:
        """Bring child `index` into existence and walk it to RUNNABLE (or PENDING)."""
        task = Task(S.SUBMITTED)
        node.status[index] = CHILD_LIVE
        node.children[index] = task
        self._emit(node.name, index, S.SUBMITTED, "", 0)
        has_deps = bool(node.spec.after) or (node.spec.sequential and index > 0)
        task.state = advance(task.state, Event.HAS_DEPS if has_deps else Event.NO_DEPS)
        self._emit(node.name, index, task.state, "", 0)
        if target is S.RUNNABLE and task.state is S.PENDING:
            task.state = advance(task.state, Event.DEPS_SUCCEEDED)
            self._emit(node.name, index, task.state, "", 0)
        return task

    # -- reuse (`run --resume`) --------------------------------------------------------------
    def _mark_reused(self, node: Node, mask: bytes | None) -> None:
        """Before submission: an array's reused children (mask byte 1) are done already,
        in its status table only, so that nothing ever makes them runnable."""
        if mask is not None and node.size is not None:
            node.status[:] = mask.translate(_REUSED_TO_OK)

    def _submit_reused(self, node: Node, reason: str) -> None:
        """Report the reused single job or array children of `node` as SUCCEEDED (through
        Event.REUSED) and let their dependents go: they cost no record."""
        if node.size is None:
            task = node.task = Task(S.SUBMITTED)
            self._emit(node.name, None, S.SUBMITTED, "", 0)
            task.state = advance(task.state, Event.REUSED)
            task.reason = reason
            self._emit(node.name, None, task.state, reason, 0)
            self._work.append((True, node.name, None, ""))
            return
        ok = advance(S.SUBMITTED, Event.REUSED)
        status = node.status
        index = status.find(CHILD_OK)
        while index >= 0:
            self._emit(node.name, index, S.SUBMITTED, "", 0)
            self._emit(node.name, index, ok, reason, 0)
            self._work.append((True, node.name, index, ""))
            index = status.find(CHILD_OK, index + 1)

    # -- the cascade ------------------------------------------------------------------------
    def _root_of(self, name: str, index: int | None, reason: str) -> str:
        label = name if index is None else f"{name}[{index}]"
        job_id = self._ids.get(name, "?")
        if index is not None:
            job_id = f"{job_id}:{index}"
        return f"{label} (job {job_id}) {reason[0].lower()}{reason[1:]}" if reason else label

    def _drain_work(self) -> None:
        # An explicit worklist, not recursion: a failure at the head of a 1,000-job
        # chain would otherwise nest 1,000 calls deep.
        work = self._work
        while work:
            ok, name, index, root = work.popleft()
            node = self._nodes[name]
            if index is None:
                if node.size is None:
                    node.root = root
                    self._job_done(node, ok, root)
                continue
            node.status[index] = CHILD_OK if ok else CHILD_FAILED
            node.children.pop(index, None)
            if ok:
                node.ok += 1
                for dep in self._n2n[name]:
                    self._child_condition_met(self._nodes[dep], index)
                if node.spec.sequential and index + 1 < (node.size or 0):
                    self._child_condition_met(node, index + 1)
                for dep in self._element.get((name, index), ()):
                    self._dep_met(self._nodes[dep])
            else:
                node.failed += 1
                if not node.root:
                    node.root = root
                for dep in self._n2n[name]:
                    self._fail_child(self._nodes[dep], index, _dep_reason(root), root)
                if node.spec.sequential and index + 1 < (node.size or 0):
                    self._fail_child(node, index + 1, _dep_reason(root), root)
                for dep in self._element.get((name, index), ()):
                    self._fail_node(self._nodes[dep], _dep_reason(root), Event.DEP_FAILED, root)
            if node.ok + node.failed == node.size and not node.state.done:
                success = node.failed == 0
                node.state = advance_parent(
                    node.state, Event.EXITED_OK if success else Event.EXITED_FINAL
                )
                reason = "" if success else f"{node.failed} of {node.size} children failed"
                self._emit(name, None, node.state, reason, 0)
                self._job_done(node, success, node.root)

    def _job_done(self, node: Node, ok: bool, root: str) -> None:
        self._open -= 1
        for dep in self._whole[node.name]:
            if ok:
                self._dep_met(self._nodes[dep])
            else:
                self._fail_node(self._nodes[dep], _dep_reason(root), Event.DEP_FAILED, root)

    def _dep_met(self, node: Node) -> None:
        node.waiting -= 1
        if node.waiting == 0 and not self._node_failed(node):
            self._release(node)

    def _child_condition_met(self, node: Node, index: int) -> None:
        if node.status[index] != CHILD_NEW:
            return
        first = node.per_child - (1 if node.spec.sequential and index == 0 else 0)
        need = node.child_need.pop(index, first) - 1
        if need > 0:
            node.child_need[index] = need
        elif node.waiting == 0 and not self._node_failed(node):
            self._make_runnable(node, index)
        else:
            node.child_ready.append(index)

    def _node_failed(self, node: Node) -> bool:
        if node.size is None:
            return node.task is not None and node.task.state.done
        return node.state.done

    def _fail_node(self, node: Node, reason: str, event: Event | None, root: str = "") -> None:
        """`node` will never run: fail it (a single job) or every child not yet done."""
        root = root or reason
        if node.size is None:
            task = node.task
            assert task is not None
            if task.state.done:
                return
            task.state = advance(task.state, event or _never_ran(task.state))
            task.reason = reason
            self._emit(node.name, None, task.state, reason, task.attempt)
            self._work.append((False, node.name, None, root))
            return
        node.cursor = -1
        node.child_ready.clear()
        for i in range(node.size):
            if node.status[i] == CHILD_NEW:
                self._fail_child(node, i, reason, root, event)
            elif node.status[i] == CHILD_LIVE and node.children[i].state in (S.PENDING, S.RUNNABLE):
                task = node.children[i]
                task.state = advance(task.state, event or _never_ran(task.state))
                task.reason = reason
                self._emit(node.name, i, task.state, reason, task.attempt)
                self._work.append((False, node.name, i, root))

    def _fail_child(
        self, node: Node, index: int, reason: str, root: str, event: Event | None = None
    ) -> None:
        if node.status[index] != CHILD_NEW:
            task = node.children.get(index)
            if task is None or task.state not in (S.PENDING, S.RUNNABLE):
                return
        else:
            task = self._create_child(node, index, S.PENDING)
            node.child_need.pop(index, None)
        task.state = advance(task.state, event or _never_ran(task.state))
        task.reason = reason
        self._emit(node.name, index, task.state, reason, task.attempt)
        self._work.append((False, node.name, index, root))

    # -- helpers ------------------------------------------------------------------------
    def _task(self, name: str, index: int | None) -> Task:
        task = self._task_or_none(name, index)
        if task is None:
            raise KeyError(f"{name}[{index}] has not started")
        return task

    def _task_or_none(self, name: str, index: int | None) -> Task | None:
        node = self._nodes[name]
        return node.task if index is None else node.children.get(index)

    def _emit(
        self, name: str, index: int | None, state: JobState, reason: str, attempt: int
    ) -> None:
        self.changes.append(Change(name, index, state, reason, attempt))


def _never_ran(state: JobState) -> Event:
    # The only edges from RUNNABLE to FAILED are CancelJob and TerminateJob.
    return Event.DEP_FAILED if state is S.PENDING else Event.CANCEL


def _dep_reason(root: str) -> str:
    return f"{DEPENDENCY_FAILED}: {root}"
