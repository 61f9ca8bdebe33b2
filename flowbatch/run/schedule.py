"""The Frontier: pure, synchronous bookkeeping of which jobs and array children are
ready, running and done, and where the next attempts go (ninja's Plan).

It knows nothing of processes, time or anyio: the runner (run/runner.py) tells it what
happened (`started`, `ended`, `cancel`) and asks it what to start (`place`). Every state
change goes through `state.advance()` (array parents through `state.advance_parent()`,
their smaller lifecycle) and is appended to `changes`, which the runner drains into
JobEvents.

Arrays stay one node. A child exists only from the moment it becomes runnable (or
fails): an array whose children have no per-child dependencies is a cursor in its
queue's heap, so a 10,000-child array costs one heap entry and a 10,000-byte status
table, and a record per child that is actually running.

Order: queues by priority (higher first), then within a queue by retried-first, the
job's `priority`, the longest critical path, submission order, array index. A job that
does not fit lets smaller ones behind it start (backfill) until it has been passed
over `BACKFILL_LIMIT` times; then its queue's compute environments are reserved for it.

Which jobs wait on which, and how failures cascade, is `cascade.Cascade`, which the
Frontier extends with queues, ordering and placement.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

from flowbatch.lang.compile import Plan
from flowbatch.lang.model import DepKind, JobSpec
from flowbatch.run.cascade import (
    CHILD_FAILED,
    CHILD_LIVE,
    CHILD_NEW,
    CHILD_OK,
    Cascade,
    Change,
    Node,
    Task,
)
from flowbatch.run.placement import Pools
from flowbatch.run.state import Event, JobState, advance, advance_parent

__all__ = ["BACKFILL_LIMIT", "SCAN_LIMIT", "Change", "Frontier", "Placement"]

S = JobState

BACKFILL_LIMIT = 8  # times a waiting job may be passed over before room is reserved
SCAN_LIMIT = 64  # entries looked at past a blocked one in one round (keeps place() cheap)

Key = tuple[str, int | None]


@dataclass(frozen=True, slots=True)
class Placement:
    name: str
    index: int | None
    attempt: int
    compute: str
    host: str


class Frontier(Cascade):
    """What is ready, running and done in one run. See the module docstring."""

    def __init__(
        self,
        plan: Plan,
        *,
        job_ids: Mapping[str, str],
        queue_computes: Mapping[str, tuple[str, ...]] | None = None,
        pools: Pools | None = None,
        reuse: Mapping[str, bytes | None] | None = None,
        reuse_reason: str = "",
    ) -> None:
        """`queue_computes` maps each queue to its compute environments after overrides
        (default: as the plan says); `pools` is the capacity to place on. `reuse` names
        the jobs (None) and array children (a mask, 1 = reused) that succeed at once
        with `reuse_reason` (`run --resume`)."""
        super().__init__(job_ids)
        self.plan = plan
        self.pools = pools if pools is not None else Pools(plan.computes)
        self._queue_ces = dict(queue_computes or {q.name: q.compute for q in plan.queues.values()})
        self._queue_order = sorted(plan.queues.values(), key=lambda q: (-q.priority, q.name))
        self._heaps: dict[str, list[tuple[int, int, int, int, int, str]]] = {
            q: [] for q in plan.queues
        }
        self._skips: dict[Key, int] = {}
        self.unplaceable: list[str] = []  # jobs failed because no host could ever hold them
        for pos, name in enumerate(plan.pipeline.jobs):
            spec = plan.job(name)
            node = Node(spec, pos, plan.critical_path(name))
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
        reuse = reuse or {}
        for name, mask in reuse.items():
            self._mark_reused(self._nodes[name], mask)
        for name in plan.jobs():
            node = self._nodes[name]
            if node.size is None and name in reuse:
                self._submit_reused(node, reuse_reason)
                continue
            self._submit(node)
            if name in reuse:
                self._submit_reused(node, reuse_reason)
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
        if st == CHILD_OK:
            return S.SUCCEEDED
        if st == CHILD_FAILED:
            return S.FAILED
        if st == CHILD_LIVE:
            return node.children[index].state
        return S.PENDING if node.state is not S.SUBMITTED else S.SUBMITTED

    def reason(self, name: str, index: int | None = None) -> str:
        node = self._nodes[name]
        if index is None:
            return node.task.reason if node.task is not None else node.root
        task = node.children.get(index)
        return task.reason if task is not None else node.root

    def runnable_enabled(self) -> bool:
        """Whether work is ready to run in an enabled queue: what a run with lost hosts
        waits for them to take (work in a disabled queue waits for no host)."""
        return any(
            self._live_entry(self._nodes[entry[5]], None if entry[4] < 0 else entry[4])
            for q in self._queue_order
            if q.state != "disabled"
            for entry in self._heaps[q.name]
        )

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
    def _submit(self, node: Node) -> None:
        spec = node.spec
        ces = self._queue_ces.get(spec.queue, ())
        if not self.pools.could_ever_fit(ces, spec.vcpus, spec.memory, spec.gpus):
            self.unplaceable.append(node.name)
        has_deps = node.waiting > 0
        if node.size is None:
            task = node.task = Task(S.SUBMITTED)
            self._emit(node.name, None, S.SUBMITTED, "", 0)
            event = Event.HAS_DEPS if has_deps else Event.NO_DEPS
            task.state = advance(task.state, event)
            self._emit(node.name, None, task.state, "", 0)
            if not has_deps:
                self._release(node)
            return
        self._emit(node.name, None, S.SUBMITTED, "", 0)
        node.state = advance_parent(node.state, Event.HAS_DEPS)
        self._emit(node.name, None, node.state, "", 0)
        if node.per_child == 1 and node.spec.sequential:
            node.child_ready.append(0)  # child 0 of a plain sequential array waits for no one
        if not has_deps:
            self._release(node)

    def _release(self, node: Node) -> None:
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
            # Children from the first not reused on are released in index order.
            node.cursor = node.status.find(CHILD_NEW)
            if node.cursor >= 0:
                self._push(node, node.cursor, retried=False)
        else:
            for i in node.child_ready:
                self._make_runnable(node, i)
            node.child_ready.clear()

    def _make_runnable(self, node: Node, index: int) -> None:
        if node.status[index] != CHILD_NEW:
            return
        self._create_child(node, index, S.RUNNABLE)
        self._push(node, index, retried=False)

    def _push(self, node: Node, index: int | None, *, retried: bool) -> None:
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
        if self._open == 0:
            return []  # every job is done (or was failed with the run)
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
                self._advance_cursor(node, index)
            if placed_here:
                for entry in skipped:
                    key = (entry[5], None if entry[4] < 0 else entry[4])
                    self._skips[key] = self._skips.get(key, 0) + 1
            for entry in skipped:
                heapq.heappush(heap, entry)
        return out

    def _advance_cursor(self, node: Node, index: int | None) -> None:
        """Child `index` leaves the cursor (placed, or cancelled before it was): release
        the next child not yet made, so the array goes on."""
        if index is not None and node.cursor >= 0 and index == node.cursor:
            node.cursor = node.status.find(CHILD_NEW, index + 1)
            if node.cursor >= 0:
                self._push(node, node.cursor, retried=False)

    def _live_entry(self, node: Node, index: int | None) -> bool:
        if index is None:
            return node.task is not None and node.task.state is S.RUNNABLE
        if node.cursor >= 0 and index == node.cursor and node.status[index] == CHILD_NEW:
            return True
        task = node.children.get(index)
        return task is not None and task.state is S.RUNNABLE

    def _fit(self, ces: list[str], spec: JobSpec) -> tuple[str, str] | None:
        for ce in ces:
            host = self.pools.find(ce, spec.vcpus, spec.memory, spec.gpus)
            if host is not None:
                return ce, host
        return None

    def _start(self, node: Node, index: int | None, ce: str, host: str) -> Placement:
        if index is None:
            task = node.task
            assert task is not None
        elif node.status[index] == CHILD_NEW:
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
            if task is None and index is not None and node.status[index] == CHILD_NEW:
                self._fail_child(node, index, reason, self._root_of(name, index, reason), event)
                self._advance_cursor(node, index)
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
        """The run is over (interrupted, or its hosts are gone): fail every job and
        created child not yet done."""
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
                    node.state = advance_parent(node.state, Event.TERMINATE)
                    node.root = reason
                    self._emit(node.name, None, node.state, reason, 0)
                # Children not made yet stay unmade: nothing is released after this.
                node.cursor = -1
                node.child_ready.clear()
        for heap in self._heaps.values():
            heap.clear()
        self._open = 0
