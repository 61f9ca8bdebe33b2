"""The Frontier: pure, synchronous bookkeeping of which jobs and array children are
ready, running and done, where the next attempts go, and how a success or a failure
travels along the dependency edges (ninja's Plan).

It knows nothing of processes, time or anyio: the runner (run/runner.py) tells it what
happened (`started`, `ended`, `cancel`) and asks it what to start (`place`). Every state
change goes through `_move` (a task: `state.advance()`) or `_move_parent` (an array
parent: `state.advance_parent()`, its smaller lifecycle), which append it to `changes`;
the runner drains those into JobEvents.

Arrays stay one node. A child exists only from the moment it becomes runnable (or
fails): an array whose children have no per-child dependencies is a cursor in its
queue's heap, so a 10,000-child array costs one heap entry and a 10,000-byte status
table, and a record per child that is actually running.

Order: queues by priority (higher first), then within a queue by retried-first, the
job's `priority`, the longest critical path, submission order, array index (the fields
of `Entry`, compared in that order). A job that does not fit lets smaller ones behind
it start (backfill) until it has been passed over `BACKFILL_LIMIT` times; then its
queue's compute environments are reserved for it.

The failure cascade: a failure fails everything downstream that can no longer run,
each with AWS's reason `Dependency failed: <root cause>`, where the root cause names
the job (or child) that failed first, its job id and why. The propagation uses an
explicit worklist (`Done` records), so a failure at the head of a long chain does not
recurse.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping

from flowbatch.lang.compile import Plan
from flowbatch.lang.model import ComputeEnv, Dependency, DepKind, JobSpec, Queue
from flowbatch.run.nodes import (
    CHILD_FAILED,
    CHILD_LIVE,
    CHILD_NEW,
    CHILD_OK,
    ENDED_TO_STATUS,
    REUSED_TO_OK,
    Change,
    Done,
    Entry,
    Key,
    Node,
    Placement,
    Task,
)
from flowbatch.run.placement import Pools
from flowbatch.run.state import DEPENDENCY_FAILED, Event, JobState, advance, advance_parent
from flowbatch.run.waiters import Waiters

__all__ = ["BACKFILL_LIMIT", "SCAN_LIMIT", "Change", "Frontier", "Placement"]

S = JobState

BACKFILL_LIMIT = 8  # times a waiting job may be passed over before room is reserved
SCAN_LIMIT = 64  # entries looked at past a blocked one in one round (keeps place() cheap)


class Frontier:
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
        self.changes: list[Change] = []
        self.plan = plan
        self.pools = pools if pools is not None else Pools(plan.computes)
        self.unplaceable: list[str] = []  # jobs failed because no host could ever hold them
        # A standing Frontier (flowbatch server) leaves such jobs RUNNABLE, as AWS does:
        # an environment may grow, or be created, later. Set by the first `add`.
        self.standing = False
        self._ids = dict(job_ids)
        self._nodes: dict[str, Node] = {}
        # job -> jobs waiting for all of it; only jobs something waits for have a list
        self._waiters = Waiters()
        self._work: deque[Done] = deque()
        self._open = 0  # jobs (nodes) not yet done
        self._queue_ces = dict(queue_computes or {q.name: q.compute for q in plan.queues.values()})
        self._queue_order = sorted(plan.queues.values(), key=lambda q: (-q.priority, q.name))
        self._heaps: dict[str, list[Entry]] = {q: [] for q in plan.queues}
        self._skips: dict[Key, int] = {}
        self._disabled: set[str] = set()  # compute environments that take no new work
        self._next_pos = len(plan.pipeline.jobs)
        self._begun: dict[Key, int] = {}  # attempts begun before a restart (`add`)
        for pos, name in enumerate(plan.pipeline.jobs):
            spec = plan.job(name)
            node = Node(spec, pos, plan.critical_path(name))
            self._nodes[name] = node
            self._open += 1
        for name, node in self._nodes.items():
            for dep in node.spec.after:
                self._waiters.add(name, dep)
                if dep.kind is DepKind.N_TO_N:
                    node.per_child += 1
                else:
                    node.waiting += 1
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

    def spec(self, name: str) -> JobSpec:
        return self._nodes[name].spec

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

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
            self._live_entry(self._nodes[entry.name], entry.child)
            for q in self._queue_order
            if q.state != "disabled"
            for entry in self._heaps[q.name]
        )

    def runnable_waiting(self) -> list[str]:
        """Jobs with runnable work in a disabled queue (they stay RUNNABLE, as on AWS)."""
        return sorted(
            {
                entry.name
                for q in self._queue_order
                if q.state == "disabled"
                for entry in self._heaps[q.name]
            }
        )

    # -- every state change ----------------------------------------------------------------
    def _move(
        self, name: str, index: int | None, task: Task, event: Event, reason: str = ""
    ) -> JobState:
        """Advance `task` (job `name`, child `index`) by `event`, give it `reason`, and
        record the change. Returns the new state."""
        task.state = state = advance(task.state, event)
        task.reason = reason
        self.changes.append(Change(name, index, state, reason, task.attempt))
        return state

    def _move_parent(self, node: Node, event: Event, reason: str = "") -> None:
        """Advance array `node` itself (its parent record) by `event`, and record it."""
        node.state = advance_parent(node.state, event)
        self.changes.append(Change(node.name, None, node.state, reason, 0))

    def _new_task(self, name: str, index: int | None) -> Task:
        """A task that now exists, SUBMITTED, and the change that says so."""
        self.changes.append(Change(name, index, S.SUBMITTED, "", 0))
        task = Task(S.SUBMITTED)
        if self._begun:
            task.attempt = self._begun.pop((name, index), 0)
        return task

    # -- submission ------------------------------------------------------------------------
    def _submit(self, node: Node) -> None:
        spec = node.spec
        ces = self._queue_ces.get(spec.queue, ())
        if not self.standing and not self.pools.could_ever_fit(
            ces, spec.vcpus, spec.memory, spec.gpus
        ):
            self.unplaceable.append(node.name)
        has_deps = node.waiting > 0
        if node.size is None:
            task = node.task = self._new_task(node.name, None)
            self._move(node.name, None, task, Event.HAS_DEPS if has_deps else Event.NO_DEPS)
        else:
            self.changes.append(Change(node.name, None, S.SUBMITTED, "", 0))
            self._move_parent(node, Event.HAS_DEPS)
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
                self._move(node.name, None, task, Event.DEPS_SUCCEEDED)
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
        """Every condition of child `index` of `node` is met: it may start."""
        if node.status[index] != CHILD_NEW:
            return
        self._create_child(node, index, S.RUNNABLE)
        self._push(node, index, retried=False)

    def _create_child(self, node: Node, index: int, target: JobState) -> Task:
        """Bring child `index` into existence and walk it to RUNNABLE (or PENDING)."""
        task = self._new_task(node.name, index)
        node.status[index] = CHILD_LIVE
        node.children[index] = task
        has_deps = bool(node.spec.after) or (node.spec.sequential and index > 0)
        state = self._move(node.name, index, task, Event.HAS_DEPS if has_deps else Event.NO_DEPS)
        if target is S.RUNNABLE and state is S.PENDING:
            self._move(node.name, index, task, Event.DEPS_SUCCEEDED)
        return task

    def _push(self, node: Node, index: int | None, *, retried: bool) -> None:
        spec = node.spec
        entry = Entry(
            0 if retried else 1,
            -spec.priority,
            -node.crit,
            node.pos,
            -1 if index is None else index,
            node.name,
            index,
        )
        heapq.heappush(self._heaps[spec.queue], entry)

    # -- reuse (`run --resume`) --------------------------------------------------------------
    def _mark_reused(self, node: Node, mask: bytes | None) -> None:
        """Before submission: an array's reused children (mask byte 1) are done already,
        in its status table only, so that nothing ever makes them runnable."""
        if mask is not None and node.size is not None:
            node.status[:] = mask.translate(REUSED_TO_OK)

    def _submit_reused(self, node: Node, reason: str) -> None:
        """Report the reused single job or array children of `node` as SUCCEEDED (through
        Event.REUSED) and let their dependents go: they cost no record."""
        if node.size is None:
            task = node.task = self._new_task(node.name, None)
            self._move(node.name, None, task, Event.REUSED, reason)
            self._work.append(Done(True, node.name, None, ""))
            return
        ok = advance(S.SUBMITTED, Event.REUSED)
        changes = self.changes
        status = node.status
        index = status.find(CHILD_OK)
        while index >= 0:
            changes.append(Change(node.name, index, S.SUBMITTED, "", 0))
            changes.append(Change(node.name, index, ok, reason, 0))
            self._work.append(Done(True, node.name, index, ""))
            index = status.find(CHILD_OK, index + 1)

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
            ces = [
                c
                for c in self._queue_ces[queue.name]
                if c not in reserved and c not in self._disabled
            ]
            skipped: list[Entry] = []
            placed_here = 0
            while heap and ces and len(skipped) < SCAN_LIMIT:
                if self.pools.all_full(ces):
                    break
                entry = heap[0]
                node = self._nodes[entry.name]
                index = entry.child
                if not self._live_entry(node, index):
                    heapq.heappop(heap)
                    continue
                where = self._fit(ces, node.spec)
                if where is None:
                    heapq.heappop(heap)
                    if not skipped and self._skips.get((node.name, index), 0) >= BACKFILL_LIMIT:
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
                    key = (entry.name, entry.child)
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
        task.attempt += 1
        task.compute, task.host = ce, host
        self._move(node.name, index, task, Event.PLACED)
        return Placement(node.name, index, task.attempt, ce, host)

    # -- what the runner reports ---------------------------------------------------------
    def started(self, name: str, index: int | None) -> None:
        self._move(name, index, self._task(name, index), Event.STARTED)

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
        state = self._move(name, index, task, event, "" if ok and not terminated else reason)
        if state is S.SUCCEEDED:
            self._work.append(Done(True, name, index, ""))
        elif state is S.FAILED:
            self._work.append(Done(False, name, index, self._root_of(name, index, root or reason)))
        self._drain_work()
        return state

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
                self._move(name, index, task, event, reason)
                self._work.append(Done(False, name, index, self._root_of(name, index, reason)))
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
                    self._move(node.name, None, task, Event.TERMINATE, reason)
            else:
                for i, task in list(node.children.items()):
                    if not task.state.done:
                        self._move(node.name, i, task, Event.TERMINATE, reason)
                if not node.state.done:
                    node.root = reason
                    self._move_parent(node, Event.TERMINATE, reason)
                # Children not made yet stay unmade: nothing is released after this.
                node.cursor = -1
                node.child_ready.clear()
        for heap in self._heaps.values():
            heap.clear()
        self._open = 0

    # -- a standing Frontier (flowbatch server) -----------------------------------------
    def add(
        self,
        specs: Iterable[JobSpec],
        job_ids: Mapping[str, str],
        *,
        begun: Mapping[Key, int] | None = None,
        ended: Mapping[str, bytes] | None = None,
        finished: Mapping[str, tuple[bool, str]] | None = None,
        running: Mapping[Key, tuple[int, str, str]] | None = None,
    ) -> None:
        """Jobs submitted after the Frontier was made, in submission order. A dependency
        may name any job the Frontier has, running or ended: one that ended is met (or
        failed) at once, as AWS treats a `dependsOn` on a finished job. Every job of
        `specs` has an id in `job_ids`; its queue is known (`set_queue`).

        A restarted server gives back what its jobs had done: `begun` counts the
        attempts a job or child had begun (its next is the one after), `ended` is an
        array's children that had ended (1 succeeded, 2 failed, 0 not), which are not
        reported again, and `finished` the jobs that had ended (succeeded, and why not),
        which are there only for later jobs to depend on. `running` are the attempts
        (number, compute environment, host) that go on running (re-adopted): RUNNING
        again with their room taken, and nothing reported."""
        self.standing = True
        if begun:
            self._begun.update(begun)
        new: list[Node] = []
        for spec in specs:
            node = Node(spec, self._next_pos, 0)
            self._next_pos += 1
            self._ids[spec.name] = job_ids[spec.name]
            mask = (ended or {}).get(spec.name)
            if mask is not None and node.size is not None:
                node.status[:] = mask.translate(ENDED_TO_STATUS)
                node.ok = node.status.count(CHILD_OK)
                node.failed = node.status.count(CHILD_FAILED)
                if node.failed:
                    node.root = self._root_of(spec.name, node.status.find(CHILD_FAILED), "failed")
            self._nodes[spec.name] = node
            outcome = (finished or {}).get(spec.name)
            if outcome is not None:
                ok, root = outcome
                state = S.SUCCEEDED if ok else S.FAILED
                node.root = node.root or root
                if node.size is None:
                    node.task = Task(state)
                    node.task.reason = root
                else:
                    node.state = state
                continue
            self._open += 1
            new.append(node)
        for (name, index), attempt in (running or {}).items():
            self._adopt(self._nodes[name], index, attempt)
        settled: list[tuple[Node, Dependency]] = []  # dependencies that ended already
        for node in new:
            for dep in node.spec.after:
                target = self._nodes[dep.job]
                if dep.kind is DepKind.N_TO_N:
                    self._waiters.add(node.name, dep)
                    node.per_child += 1
                    settled.append((node, dep))  # its children that ended already
                    continue
                met = self._ended(target, dep.index)
                if met is None:
                    self._waiters.add(node.name, dep)
                    node.waiting += 1
                elif not met:  # held PENDING until it is failed below, as it would be
                    node.waiting += 1
                    settled.append((node, dep))
            if node.spec.sequential:
                node.per_child += 1
        for node in new:
            if node.task is None:  # (a single job that goes on running has its task)
                self._submit(node)
        for node in new:
            if node.ok or node.failed:  # an array given back half done
                self._resume_children(node)
        for node, dep in settled:
            target = self._nodes[dep.job]
            if dep.kind is DepKind.N_TO_N:
                for i, st in enumerate(target.status):
                    if st == CHILD_OK:
                        self._child_condition_met(node, i)
                    elif st == CHILD_FAILED:
                        root = target.root or self._root_of(target.name, i, "failed")
                        self._fail_child(node, i, _dep_reason(root), root)
                continue
            if not self._ended(target, dep.index):  # (the ones that succeeded are not here)
                root = target.root or self._root_of(target.name, dep.index, "failed")
                self._fail_node(node, _dep_reason(root), Event.DEP_FAILED, root)
        self._drain_work()

    def _adopt(self, node: Node, index: int | None, running: tuple[int, str, str]) -> None:
        task = Task(S.RUNNING)
        task.attempt, task.compute, task.host = running
        self.pools.take(task.compute, task.host, node.spec.vcpus, node.spec.memory, node.spec.gpus)
        if index is None:
            node.task = task
        else:
            node.status[index] = CHILD_LIVE
            node.children[index] = task

    def _resume_children(self, node: Node) -> None:
        """The per-child conditions that children which ended before a restart meet (a
        sequential array's next child), and the end of an array whose children all had."""
        if node.spec.sequential:
            for i, st in enumerate(node.status[:-1]):
                if st == CHILD_OK:
                    self._child_condition_met(node, i + 1)
                elif st == CHILD_FAILED:
                    self._fail_child(node, i + 1, _dep_reason(node.root), node.root)
        if node.ok + node.failed == node.size and not node.state.done:
            success = node.failed == 0
            reason = "" if success else f"{node.failed} of {node.size} children failed"
            self._move_parent(node, Event.EXITED_OK if success else Event.EXITED_FINAL, reason)
            self._job_done(node, success, node.root)

    def unfinished_in(self, queue: str) -> list[str]:
        """The jobs of `queue` that have not ended (a deleted queue terminates them)."""
        return [
            name
            for name, node in self._nodes.items()
            if node.spec.queue == queue and self._ended(node, None) is None
        ]

    def forget(self, name: str) -> None:
        """Drop a job that ended (flowbatch server keeps one 24 hours): a job submitted
        later cannot depend on it, as AWS no longer knows its id."""
        node = self._nodes[name]
        if self._ended(node, None) is None:
            raise ValueError(f"{name} has not ended")
        del self._nodes[name]
        self._ids.pop(name, None)
        self._waiters.forget(name, node.spec.after)

    def _ended(self, node: Node, index: int | None) -> bool | None:
        """Whether a job (or, with `index`, one child) ended well; None while it has not."""
        if index is not None:
            st = node.status[index]
            return True if st == CHILD_OK else False if st == CHILD_FAILED else None
        state = node.task.state if node.task is not None else node.state
        return state is S.SUCCEEDED if state.done else None

    def set_queue(self, queue: Queue, computes: tuple[str, ...] | None = None) -> None:
        """A queue created or changed: its priority, state and environments
        (`computes`, default the queue's own). Its waiting work keeps its place."""
        self._queue_ces[queue.name] = computes if computes is not None else queue.compute
        self._heaps.setdefault(queue.name, [])
        others = [q for q in self._queue_order if q.name != queue.name]
        self._queue_order = sorted([*others, queue], key=lambda q: (-q.priority, q.name))

    def set_compute(self, ce: ComputeEnv, *, enabled: bool = True) -> None:
        """A compute environment created or changed (its capacity, whether it takes new
        work). Attempts running on it keep their room."""
        self.pools.set(ce)
        if enabled:
            self._disabled.discard(ce.name)
        else:
            self._disabled.add(ce.name)

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
                for dep in self._waiters.of_children(name):
                    self._child_condition_met(self._nodes[dep], index)
                if node.spec.sequential and index + 1 < (node.size or 0):
                    self._child_condition_met(node, index + 1)
                for dep in self._waiters.of_child(name, index):
                    self._dep_met(self._nodes[dep])
            else:
                node.failed += 1
                if not node.root:
                    node.root = root
                for dep in self._waiters.of_children(name):
                    self._fail_child(self._nodes[dep], index, _dep_reason(root), root)
                if node.spec.sequential and index + 1 < (node.size or 0):
                    self._fail_child(node, index + 1, _dep_reason(root), root)
                for dep in self._waiters.of_child(name, index):
                    self._fail_node(self._nodes[dep], _dep_reason(root), Event.DEP_FAILED, root)
            if node.ok + node.failed == node.size and not node.state.done:
                success = node.failed == 0
                reason = "" if success else f"{node.failed} of {node.size} children failed"
                self._move_parent(node, Event.EXITED_OK if success else Event.EXITED_FINAL, reason)
                self._job_done(node, success, node.root)

    def _job_done(self, node: Node, ok: bool, root: str) -> None:
        self._open -= 1
        for dep in self._waiters.of_whole(node.name):
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
            self._move(node.name, None, task, event or _never_ran(task.state), reason)
            self._work.append(Done(False, node.name, None, root))
            return
        node.cursor = -1
        node.child_ready.clear()
        for i in range(node.size):
            if node.status[i] == CHILD_NEW:
                self._fail_child(node, i, reason, root, event)
            elif node.status[i] == CHILD_LIVE and node.children[i].state in (S.PENDING, S.RUNNABLE):
                task = node.children[i]
                self._move(node.name, i, task, event or _never_ran(task.state), reason)
                self._work.append(Done(False, node.name, i, root))

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
        self._move(node.name, index, task, event or _never_ran(task.state), reason)
        self._work.append(Done(False, node.name, index, root))

    # -- helpers ------------------------------------------------------------------------
    def _task(self, name: str, index: int | None) -> Task:
        task = self._task_or_none(name, index)
        if task is None:
            raise KeyError(f"{name}[{index}] has not started")
        return task

    def _task_or_none(self, name: str, index: int | None) -> Task | None:
        node = self._nodes[name]
        return node.task if index is None else node.children.get(index)


def _never_ran(state: JobState) -> Event:
    # The only edges from RUNNABLE to FAILED are CancelJob and TerminateJob.
    return Event.DEP_FAILED if state is S.PENDING else Event.CANCEL


def _dep_reason(root: str) -> str:
    return f"{DEPENDENCY_FAILED}: {root}"
