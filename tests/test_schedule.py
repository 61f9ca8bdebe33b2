"""The Frontier without processes or an event loop: dependencies, cascades, queues,
packing, retries and cancellation."""

from __future__ import annotations

from flowbatch.lang.compile import Plan, compile_pipeline
from flowbatch.lang.model import (
    DEFAULT_QUEUE,
    ComputeEnv,
    Dependency,
    DepKind,
    Host,
    JobSpec,
    Pipeline,
    Queue,
    local_compute,
)
from flowbatch.run.frontier import BACKFILL_LIMIT, Frontier, Placement
from flowbatch.run.placement import Pools
from flowbatch.run.state import JobState

S = JobState


def plan_of(
    *jobs: JobSpec,
    computes: dict[str, ComputeEnv] | None = None,
    queues: dict[str, Queue] | None = None,
) -> Plan:
    return compile_pipeline(
        Pipeline(
            path="t.flow",
            params={},
            computes=computes or {"local": local_compute(2, 4096)},
            queues=queues or {"default": DEFAULT_QUEUE},
            jobs={j.name: j for j in jobs},
        )
    )


def frontier(
    *jobs: JobSpec,
    computes: dict[str, ComputeEnv] | None = None,
    queues: dict[str, Queue] | None = None,
) -> Frontier:
    plan = plan_of(*jobs, computes=computes, queues=queues)
    return Frontier(plan, job_ids={n: f"id-{n}" for n in plan.jobs()})


def run_one(f: Frontier, p: Placement, ok: bool = True, reason: str = "") -> JobState:
    f.started(p.name, p.index)
    return f.ended(p.name, p.index, ok=ok, reason=reason, root=reason)


def dep(job: str, kind: DepKind = DepKind.WHOLE, index: int | None = None) -> Dependency:
    return Dependency(job=job, kind=kind, index=index)


def test_whole_dependency_waits_and_failure_names_the_root_cause() -> None:
    f = frontier(
        JobSpec(name="prepare", command="x"),
        JobSpec(name="mid", command="x", after=(dep("prepare"),)),
        JobSpec(name="last", command="x", after=(dep("mid"),)),
    )
    placed = f.place()
    assert [p.name for p in placed] == ["prepare"]
    assert f.state("mid") is S.PENDING
    run_one(f, placed[0], ok=False, reason="exited with code 3")
    assert f.state("mid") is S.FAILED and f.state("last") is S.FAILED
    assert f.reason("last") == "Dependency failed: prepare (job id-prepare) exited with code 3"
    assert f.done and f.place() == []


def test_element_dependency_waits_for_one_child() -> None:
    f = frontier(
        JobSpec(name="frames", command="x", array_size=3),
        JobSpec(name="poster", command="x", after=(dep("frames", DepKind.ELEMENT, 2),)),
    )
    done: list[int | None] = []
    while not f.done:
        for p in f.place():
            if p.name == "poster":
                assert 2 in done
            done.append(p.index)
            run_one(f, p)
    assert done.index(None) > done.index(2)


def test_n_to_n_child_fails_only_its_partner() -> None:
    f = frontier(
        JobSpec(name="a", command="x", array_size=3),
        JobSpec(name="b", command="x", array_size=3, after=(dep("a", DepKind.N_TO_N),)),
    )
    while not f.done:
        for p in f.place():
            run_one(f, p, ok=not (p.name == "a" and p.index == 1), reason="exited with code 1")
    assert [f.state("b", i) for i in range(3)] == [S.SUCCEEDED, S.FAILED, S.SUCCEEDED]
    assert "a[1] (job id-a:1)" in f.reason("b", 1)
    assert f.state("a") is S.FAILED and f.state("b") is S.FAILED


def test_sequential_runs_in_order_and_a_failure_fails_the_rest() -> None:
    f = frontier(JobSpec(name="m", command="x", array_size=4, sequential=True))
    order: list[int | None] = []
    while not f.done:
        placed = f.place()
        assert len(placed) <= 1
        for p in placed:
            order.append(p.index)
            run_one(f, p, ok=p.index != 2, reason="exited with code 9")
    assert order == [0, 1, 2]
    assert f.state("m", 3) is S.FAILED and "m[2]" in f.reason("m", 3)


def test_packing_never_exceeds_vcpus_or_memory() -> None:
    f = frontier(
        JobSpec(name="big", command="x", vcpus=2, memory=1024),
        JobSpec(name="small", command="x", vcpus=1, memory=3000, array_size=4),
    )
    running: list[Placement] = []
    while not f.done:
        running += f.place()
        vcpus, memory, _ = f.pools.used("local")
        assert vcpus <= 2 and memory <= 4096
        p = running.pop(0)
        run_one(f, p)


def test_queue_priority_and_critical_path_order() -> None:
    computes = {"local": local_compute(1, 4096)}
    queues = {
        "low": Queue(name="low", priority=1, compute=("local",)),
        "high": Queue(name="high", priority=5, compute=("local",)),
    }
    f = frontier(
        JobSpec(name="l", command="x", queue="low"),
        JobSpec(name="h", command="x", queue="high"),
        JobSpec(name="short", command="x", queue="high"),
        JobSpec(name="long", command="x", queue="high"),
        JobSpec(name="tail", command="x", queue="high", after=(dep("long"),)),
        computes=computes,
        queues=queues,
    )
    order = []
    while not f.done:
        for p in f.place():
            order.append(p.name)
            run_one(f, p)
    assert order[0] == "long"  # longest critical path first
    assert order.index("l") == len(order) - 1  # the low-priority queue waits


def test_disabled_queue_jobs_stay_runnable() -> None:
    f = frontier(
        JobSpec(name="j", command="x", queue="off"),
        queues={
            "default": DEFAULT_QUEUE,
            "off": Queue(name="off", compute=("local",), state="disabled"),
        },
    )
    assert f.place() == []
    assert f.state("j") is S.RUNNABLE and f.runnable_waiting() == ["j"]


def test_backfill_then_reservation_for_a_starving_job() -> None:
    f = frontier(
        JobSpec(name="first", command="x", vcpus=1),
        JobSpec(name="wide", command="x", vcpus=2),
        JobSpec(name="many", command="x", vcpus=1, array_size=50),
    )
    running = f.place()
    assert [p.name for p in running] == ["first", "many"]  # backfill past `wide`
    starts = 0
    while not any(p.name == "wide" for p in running):
        p = running.pop(0)
        run_one(f, p)
        running += f.place()
        starts += 1
        assert starts < BACKFILL_LIMIT + 4, "the wide job starved"
    assert f.state("many", 49) is S.PENDING  # the rest waited behind the reservation


def test_exclusive_placement_one_job_per_host() -> None:
    hosts = (Host(name="h1", vcpus=4, memory=8192), Host(name="h2", vcpus=4, memory=8192))
    ce = ComputeEnv(name="local", vcpus=8, memory=16384, placement="exclusive", hosts=hosts)
    f = frontier(JobSpec(name="a", command="x", array_size=5), computes={"local": ce})
    placed = f.place()
    assert sorted(p.host for p in placed) == ["h1", "h2"]


def test_pools_are_full_when_no_host_can_take_a_job() -> None:
    hosts = (Host(name="h1", vcpus=1, memory=1024), Host(name="h2", vcpus=1, memory=1024))
    pools = Pools(
        {
            "ex": ComputeEnv(name="ex", vcpus=2, memory=2048, placement="exclusive", hosts=hosts),
            "local": local_compute(1, 1024),
        }
    )
    assert not pools.full("ex") and not pools.all_full(["ex", "local"])
    pools.take("ex", "h1", 0.5, 10, 0)  # room left on h1, but it is exclusive
    pools.lose("ex", "h2")
    assert pools.full("ex") and not pools.all_full(["ex", "local"])
    pools.take("local", "localhost", 1, 1, 0)  # no vCPU left
    assert pools.all_full(["ex", "local"]) and pools.all_full([])
    pools.give("local", "localhost", 1, 1, 0)
    pools.take("local", "localhost", 0.5, 1024, 0)  # no memory left
    assert pools.full("local")
    pools.restore("ex", "h2")
    assert not pools.all_full(["local", "ex"])


def test_retry_goes_to_the_front_after_requeue() -> None:
    computes = {"local": local_compute(1, 4096)}
    f = frontier(
        JobSpec(name="a", command="x"),
        JobSpec(name="b", command="x"),
        computes=computes,
    )
    (p,) = f.place()
    f.started(p.name, p.index)
    assert f.ended(p.name, p.index, ok=False, retry=True, reason="r") is S.RUNNABLE
    assert [q.name for q in f.place()] == ["b"]  # held until requeue
    f.requeue("a", None)
    f.started("b", None)
    f.ended("b", None, ok=True)
    (again,) = f.place()
    assert (again.name, again.attempt) == ("a", 2)


def test_cancel_array_fails_every_child_without_running_any() -> None:
    f = frontier(
        JobSpec(name="gate", command="x"),
        JobSpec(name="arr", command="x", array_size=100, after=(dep("gate"),)),
        JobSpec(name="after", command="x", after=(dep("arr"),)),
    )
    assert f.cancel("arr", None, "user said so", terminate=False) == []
    assert all(f.state("arr", i) is S.FAILED for i in range(100))
    assert f.state("arr") is S.FAILED and f.state("after") is S.FAILED
    assert "user said so" in f.reason("after")


def test_terminate_returns_running_work_and_cancel_leaves_it() -> None:
    f = frontier(JobSpec(name="a", command="x"))
    assert len(f.place()) == 1
    f.started("a", None)
    assert f.cancel("a", None, "no", terminate=False) == []
    assert f.state("a") is S.RUNNING
    assert f.cancel("a", None, "stop", terminate=True) == [("a", None)]
    assert f.ended("a", None, ok=False, reason="stop", terminated=True) is S.FAILED


def test_big_array_costs_no_child_records_until_placed() -> None:
    f = frontier(JobSpec(name="big", command="x", array_size=10_000))
    placed = f.place()
    assert len(placed) == 2
    node = f._nodes["big"]
    assert len(node.children) == 2 and len(f._heaps["default"]) == 1
