"""The Frontier: pure, synchronous bookkeeping of which jobs and array children are
ready, running and done, and where the next attempts go (ninja's Plan).

It knows nothing of processes, time or anyio: the runner (run.py) tells it what
happened (`started`, `ended`, `cancel`) and asks it what to start (`place`). Every state
change goes through `state.advance()` (array parents through `_advance_parent`, their
smaller lifecycle) and is appended to `changes`, which the runner drains into JobEvents.

Arrays stay one node. A child exists only from the moment it becomes runnable (or
fails): an array whose children have no per-child dependencies is a cursor in its
queue's heap, so a 10,000-child array costs one heap entry and a 10,000-byte status
table, and a record per child that is actually running.

Order: queues by priority (higher first), then within a queue by retried-first, the
job's `priority`, the longest critical path, submission order, array index. A job that
does not fit lets smaller ones behind it start (backfill) until it has been passed
over `BACKFILL_LIMIT` times; then its queue's compute environments are reserved for it.

Imports: compile, model, placement, state.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from flowbatch.compile import Plan
from flowbatch.model import DepKind, JobSpec
from flowbatch.placement import Pools
from flowbatch.state import Event, IllegalTransition, JobState, advance

S = JobState

BACKFILL_LIMIT = 8  # times a waiting job may be passed over before room is reserved
SCAN_LIMIT = 64  # entries looked at past a blocked one in one round (keeps place() cheap)

# Child status bytes in an array's table.
_NEW, _LIVE, _OK, _FAILED = 0, 1, 2, 3

_PARENT: Mapping[tuple[JobState, Event], JobState] = {
    (S.SUBMITTED, Event.HAS_DEPS): S.PENDING,
    (S.PENDING, Event.EXITED_OK): S.SUCCEEDED,
    (S.PENDING, Event.EXITED_FINAL): S.FAILED,
    (S.PENDING, Event.DEP_FAILED): S.FAILED,
    (S.PENDING, Event.CANCEL): S.FAILED,
    (S.PENDING, Event.TERMINATE): S.FAILED,
}


def _advance_parent(state: JobState, event: Event) -> JobState:
    """Array parents' lifecycle: SUBMITTED -> PENDING -> SUCCEEDED | FAILED."""
    try:
        return _PARENT[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


Key = tuple[str, int | None]


@dataclass(frozen=True, slots=True)
class Change:
    """One state change, for the runner to turn into a JobEvent."""

    name: str
    index: int | None
    state: JobState
    reason: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Placement:
    name: str
    index: int | None
    attempt: int
    compute: str
    host: str


class _Task:
    """A single job or one array child that exists."""

    __slots__ = ("attempt", "compute", "host", "reason", "state")

    def __init__(self, state: JobState) -> None:
        self.state = state
        self.attempt = 0
        self.reason = ""
        self.compute = ""
        self.host = ""


class _Node:
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
        self.task: _Task | None = None  # single jobs only
        # Arrays only:
        self.per_child = 0  # per-child conditions (n_to_n deps, +1 if sequential)
        self.status = bytearray(self.size or 0)
        self.children: dict[int, _Task] = {}  # live children only
        self.cursor = -1  # >= 0: children from here on are released in index order
        self.child_need: dict[int, int] = {}  # index -> per-child conditions still unmet
        self.child_ready: list[int] = []  # per-child conditions met, job-level not yet
        self.ok = 0
        self.failed = 0


class Frontier:
    """What is ready, running and done in one run. See the module docstring."""

    def __init__(
        self,
        plan: Plan,
        *,
        job_ids: Mapping[str, str],
        queue_computes: Mapping[str, tuple[str, ...]] | None = None,
        pools: Pools | None = None,
    ) -> None:
        """`queue_computes` maps each queue to its compute environments after overrides
        (default: as the plan says); `pools` is the capacity to place on."""
        self.plan = plan
        self.changes: list[Change] = []
        self._ids = job_ids
        self.pools = pools if pools is not None else Pools(plan.computes)
        self._queue_ces = dict(queue_computes or {q.name: q.compute for q in plan.queues.values()})
        self._queue_order = sorted(plan.queues.values(), key=lambda q: (-q.priority, q.name))
        self._heaps: dict[str, list[tuple[int, int, int, int, int, str]]] = {
            q: [] for q in plan.queues
        }
        self._skips: dict[Key, int] = {}
        self._nodes: dict[str, _Node] = {}
        self._whole: dict[str, list[str]] = {}
        self._element: dict[tuple[str, int], list[str]] = {}
        self._n2n: dict[str, list[str]] = {}
        self._work: deque[tuple[bool, str, int | None, str]] = deque()
        self._open = 0  # jobs (nodes) not yet done
        self.unplaceable: list[str] = []  # jobs failed because no host could ever hold them
        for pos, name in enumerate(plan.pipeline.jobs):
            spec = plan.job(name)
            node = _Node(spec, pos, plan.critical_path(name))
            self._nodes[name] = node
            self._whole[name] = []
            self._n2n[name] = []
            self._open += 1
        for name, node in self._nodes.items():
            for dep in node.spec.after:
                if dep.kind is DepKind.WHOLE:
                    self._whole[dep.job].append(name)
                    node.waiting += 1
                elif dep.kind is DepKind.ELEMENT:
                    assert dep.index is not None
                    self._element.setdefault((dep.job, dep.index), []).append(name)
                    node.waiting += 1
                else:
                    self._n2n[dep.job].append(name)
                    node.per_child += 1
            if node.spec.sequential:
                node.per_child += 1
        for name in plan.topo_order():
            self._submit(self._nodes[name])
        self._drain_work()

    # -- queries -------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._open == 0

    def state(self, name: str, index: int | None = None) -> JobState:
        node = self._nodes[name]
        if index is None:
            return node.task.state if node.task is not None else node.state
        st = node.status[index]
        if st == _OK:
            return S.SUCCEEDED
        if st == _FAILED:
            return S.FAILED
        if st == _LIVE:
            return node.children[index].state
        return S.PENDING if node.state is not S.SUBMITTED else S.SUBMITTED

    def reason(self, name: str, index: int | None = None) -> str:
        node = self._nodes[name]
        if index is None:
            return node.task.reason if node.task is not None else node.root
        task = node.children.get(index)
        return task.reason if task is not None else node.root

    def runnable_waiting(self) -> list[str]:
        """Jobs with runnable work in a disabled queue (they stay RUNNABLE, as on AWS)."""
        return sorted(
            {
                entry[5]
                for q in self._queue_order
                if q.state == "disabled"
                for entry in self._heaps[q.name]
            }
        )

    # -- submission ------------------------------------------------------------------------
    def _submit(self, node: _Node) -> None:
        spec = node.spec
        ces = self._queue_ces.get(spec.queue, ())
        if not self.pools.could_ever_fit(ces, spec.vcpus, spec.memory, spec.gpus):
            self.unplaceable.append(node.name)
        has_deps = node.waiting > 0
        if node.size is None:
            task = node.task = _Task(S.SUBMITTED)
            self._emit(node.name, None, S.SUBMITTED, "", 0)
            event = Event.HAS_DEPS if has_deps else Event.NO_DEPS
            task.state = advance(task.state, event)
            self._emit(node.name, None, task.state, "", 0)
            if not has_deps:
                self._release(node)
            return
        self._emit(node.name, None, S.SUBMITTED, "", 0)
        node.state = _advance_parent(node.state, Event.HAS_DEPS)
        self._emit(node.name, None, node.state, "", 0)
        if node.per_child == 1 and node.spec.sequential:
            node.child_ready.append(0)  # child 0 of a plain sequential array waits for no one
        if not has_deps:
            self._release(node)

    def _release(self, node: _Node) -> None:
        """The job-level dependencies of `node` succeeded: its work may start."""
        if node.name in self.unplaceable:
            spec = node.spec
            reason = (
                f"no compute environment of queue {spec.queue} has a host with "
                f"{spec.vcpus:g} vCPUs, {spec.memory} MiB and {spec.gpus} GPUs"
            )
            self._fail_node(node, reason, None, self._root_of(node.name, None, reason))
            return
        if node.size is None:
            task = node.task
            assert task is not None
            if task.state is S.PENDING:
                task.state = advance(task.state, Event.DEPS_SUCCEEDED)
                self._emit(node.name, None, task.state, "", 0)
            self._push(node, None, retried=False)
        elif node.per_child == 0:
            node.cursor = 0
            self._push(node, 0, retried=False)
        else:
            for i in node.child_ready:
                self._make_runnable(node, i)
            node.child_ready.clear()

    def _make_runnable(self, node: _Node, index: int) -> None:
        if node.status[index] != _NEW:
            return
        self._create_child(node, index, S.RUNNABLE)
        self._push(node, index, retried=False)

    def _create_child(self, node: _Node, index: int, target: JobState) -> _Task:
        """Bring child `index` into existence and walk it to RUNNABLE (or PENDING)."""
        task = _Task(S.SUBMITTED)
        node.status[index] = _LIVE
        node.children[index] = task
        self._emit(node.name, index, S.SUBMITTED, "", 0)
        has_deps = bool(node.spec.after) or (node.spec.sequential and index > 0)
        task.state = advance(task.state, Event.HAS_DEPS if has_deps else Event.NO_DEPS)
        self._emit(node.name, index, task.state, "", 0)
        if target is S.RUNNABLE and task.state is S.PENDING:
            task.state = advance(task.state, Event.DEPS_SUCCEEDED)
            self._emit(node.name, index, task.state, "", 0)
        return task

    def _push(self, node: _Node, index: int | None, *, retried: bool) -> None:
        entry = (
            0 if retried else 1,
            -node.spec.priority,
            -node.crit,
            node.pos,
            -1 if index is None else index,
            node.name,
        )
        heapq.heappush(self._heaps[node.spec.queue], entry)

    # -- placing ------------------------------------------------------------------------
    def place(self) -> list[Placement]:
        """Attempts to start now, each already moved to STARTING with its room taken."""
        out: list[Placement] = []
        reserved: set[str] = set()
        for queue in self._queue_order:
            heap = self._heaps[queue.name]
            if not heap or queue.state == "disabled":
                continue
            ces = [c for c in self._queue_ces[queue.name] if c not in reserved]
            skipped: list[tuple[int, int, int, int, int, str]] = []
            placed_here = 0
            while heap and ces and len(skipped) < SCAN_LIMIT:
                if all(self.pools.full(c) for c in ces):
                    break
                entry = heap[0]
                node = self._nodes[entry[5]]
                index: int | None = None if entry[4] < 0 else entry[4]
                if not self._live_entry(node, index):
                    heapq.heappop(heap)
                    continue
                spec = node.spec
                where = self._fit(ces, spec)
                if where is None:
                    heapq.heappop(heap)
                    key = (node.name, index)
                    if not skipped and self._skips.get(key, 0) >= BACKFILL_LIMIT:
                        # It has waited long enough: nothing behind it (in this queue or
                        # a lower one) may take its environments until it starts.
                        heapq.heappush(heap, entry)
                        reserved.update(ces)
                        break
                    skipped.append(entry)
                    continue
                heapq.heappop(heap)
                out.append(self._start(node, index, *where))
                placed_here += 1
                if node.cursor >= 0 and index == node.cursor:
                    node.cursor += 1
                    if node.cursor < (node.size or 0):
                        self._push(node, node.cursor, retried=False)
            if placed_here:
                for entry in skipped:
                    key = (entry[5], None if entry[4] < 0 else entry[4])
                    self._skips[key] = self._skips.get(key, 0) + 1
            for entry in skipped:
                heapq.heappush(heap, entry)
        return out

    def _live_entry(self, node: _Node, index: int | None) -> bool:
        if index is None:
            return node.task is not None and node.task.state is S.RUNNABLE
        if node.cursor >= 0 and index == node.cursor and node.status[index] == _NEW:
            return True
        task = node.children.get(index)
        return task is not None and task.state is S.RUNNABLE

    def _fit(self, ces: list[str], spec: JobSpec) -> tuple[str, str] | None:
        for ce in ces:
            host = self.pools.find(ce, spec.vcpus, spec.memory, spec.gpus)
            if host is not None:
                return ce, host
        return None

    def _start(self, node: _Node, index: int | None, ce: str, host: str) -> Placement:
        if index is None:
            task = node.task
            assert task is not None
        elif node.status[index] == _NEW:
            task = self._create_child(node, index, S.RUNNABLE)
        else:
            task = node.children[index]
        self._skips.pop((node.name, index), None)
        spec = node.spec
        self.pools.take(ce, host, spec.vcpus, spec.memory, spec.gpus)
        task.state = advance(task.state, Event.PLACED)
        task.attempt += 1
        task.compute, task.host = ce, host
        self._emit(node.name, index, task.state, "", task.attempt)
        return Placement(node.name, index, task.attempt, ce, host)

    # -- what the runner reports ---------------------------------------------------------
    def started(self, name: str, index: int | None) -> None:
        task = self._task(name, index)
        task.state = advance(task.state, Event.STARTED)
        self._emit(name, index, task.state, "", task.attempt)

    def ended(
        self,
        name: str,
        index: int | None,
        *,
        ok: bool,
        retry: bool = False,
        reason: str = "",
        root: str = "",
        terminated: bool = False,
    ) -> JobState:
        """An attempt ended: succeeded (`ok`), to be retried (`retry`: the job becomes
        RUNNABLE but is held until `requeue`), or failed for good with `reason` (its
        dependents fail with `root`). `terminated` records a TerminateJob. Returns the
        task's new state."""
        node = self._nodes[name]
        task = self._task(name, index)
        spec = node.spec
        self.pools.give(task.compute, task.host, spec.vcpus, spec.memory, spec.gpus)
        if terminated:
            event = Event.TERMINATE
        elif ok:
            event = Event.EXITED_OK
        else:
            event = Event.EXITED_RETRY if retry else Event.EXITED_FINAL
        task.state = advance(task.state, event)
        if task.state is S.SUCCEEDED:
            self._emit(name, index, task.state, "", task.attempt)
            self._work.append((True, name, index, ""))
        elif task.state is S.FAILED:
            task.reason = reason
            self._emit(name, index, task.state, reason, task.attempt)
            self._work.append((False, name, index, self._root_of(name, index, root or reason)))
        else:
            task.reason = reason
            self._emit(name, index, task.state, reason, task.attempt)
        self._drain_work()
        return task.state

    def requeue(self, name: str, index: int | None) -> None:
        """A retried task's backoff is over: put it at the front of its queue."""
        node = self._nodes[name]
        if self._task(name, index).state is S.RUNNABLE:
            self._push(node, index, retried=True)

    def lose_host(self, compute: str, host: str) -> None:
        self.pools.lose(compute, host)

    def restore_host(self, compute: str, host: str) -> None:
        self.pools.restore(compute, host)

    def cancel(
        self, name: str, index: int | None, reason: str, *, terminate: bool
    ) -> list[tuple[str, int | None]]:
        """CancelJob (`terminate` False) or TerminateJob on a job, a child, or (index None
        on an array) every child. Jobs not yet started fail now; the running ones that
        `terminate` must stop are returned for the runner to kill and report through
        `ended(..., terminated=True)`. Cancel leaves STARTING and RUNNING jobs alone (AWS)."""
        node = self._nodes[name]
        event = Event.TERMINATE if terminate else Event.CANCEL
        to_kill: list[tuple[str, int | None]] = []
        if node.size is None or index is not None:
            task = self._task_or_none(name, index)
            if task is None and index is not None and node.status[index] == _NEW:
                self._fail_child(node, index, reason, self._root_of(name, index, reason), event)
            elif task is not None and task.state in (S.STARTING, S.RUNNING):
                if terminate:
                    to_kill.append((name, index))
            elif task is not None and not task.state.done:
                task.state = advance(task.state, event)
                task.reason = reason
                self._emit(name, index, task.state, reason, task.attempt)
                self._work.append((False, name, index, self._root_of(name, index, reason)))
        else:
            for i in range(node.size):
                to_kill += self.cancel(name, i, reason, terminate=terminate)
            node.cursor = -1
        self._drain_work()
        return to_kill

    def fail_all(self, reason: str) -> None:
        """The run is over (interrupted): fail every job and created child not yet done."""
        for node in self._nodes.values():
            if node.size is None:
                task = node.task
                assert task is not None
                if not task.state.done:
                    task.state = advance(task.state, Event.TERMINATE)
                    task.reason = reason
                    self._emit(node.name, None, task.state, reason, task.attempt)
            else:
                for i, task in list(node.children.items()):
                    if not task.state.done:
                        task.state = advance(task.state, Event.TERMINATE)
                        task.reason = reason
                        self._emit(node.name, i, task.state, reason, task.attempt)
                if not node.state.done:
                    node.state = _advance_parent(node.state, Event.TERMINATE)
                    node.root = reason
                    self._emit(node.name, None, node.state, reason, 0)
        self._open = 0

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
            node.status[index] = _OK if ok else _FAILED
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
                node.state = _advance_parent(
                    node.state, Event.EXITED_OK if success else Event.EXITED_FINAL
                )
                reason = "" if success else f"{node.failed} of {node.size} children failed"
                self._emit(name, None, node.state, reason, 0)
                self._job_done(node, success, node.root)

    def _job_done(self, node: _Node, ok: bool, root: str) -> None:
        self._open -= 1
        for dep in self._whole[node.name]:
            if ok:
                self._dep_met(self._nodes[dep])
            else:
                self._fail_node(self._nodes[dep], _dep_reason(root), Event.DEP_FAILED, root)

    def _dep_met(self, node: _Node) -> None:
        node.waiting -= 1
        if node.waiting == 0 and not self._node_failed(node):
            self._release(node)

    def _child_condition_met(self, node: _Node, index: int) -> None:
        if node.status[index] != _NEW:
            return
        first = node.per_child - (1 if node.spec.sequential and index == 0 else 0)
        need = node.child_need.pop(index, first) - 1
        if need > 0:
            node.child_need[index] = need
        elif node.waiting == 0 and not self._node_failed(node):
            self._make_runnable(node, index)
        else:
            node.child_ready.append(index)

    def _node_failed(self, node: _Node) -> bool:
        if node.size is None:
            return node.task is not None and node.task.state.done
        return node.state.done

    def _fail_node(self, node: _Node, reason: str, event: Event | None, root: str = "") -> None:
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
            if node.status[i] == _NEW:
                self._fail_child(node, i, reason, root, event)
            elif node.status[i] == _LIVE and node.children[i].state in (S.PENDING, S.RUNNABLE):
                task = node.children[i]
                task.state = advance(task.state, event or _never_ran(task.state))
                task.reason = reason
                self._emit(node.name, i, task.state, reason, task.attempt)
                self._work.append((False, node.name, i, root))

    def _fail_child(
        self, node: _Node, index: int, reason: str, root: str, event: Event | None = None
    ) -> None:
        if node.status[index] != _NEW:
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
    def _task(self, name: str, index: int | None) -> _Task:
        task = self._task_or_none(name, index)
        if task is None:
            raise KeyError(f"{name}[{index}] has not started")
        return task

    def _task_or_none(self, name: str, index: int | None) -> _Task | None:
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
    return f"Dependency failed: {root}"
