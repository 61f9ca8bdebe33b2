"""A standing Frontier (flowbatch server's): jobs, queues and compute environments
arrive after it was made, and dependencies may name jobs that ended long ago."""

from __future__ import annotations

from flowbatch.lang.compile import compile_pipeline
from flowbatch.lang.model import (
    ComputeEnv,
    Dependency,
    DepKind,
    Host,
    JobSpec,
    Pipeline,
    Queue,
)
from flowbatch.run.frontier import Frontier, Placement
from flowbatch.run.state import JobState

S = JobState


def empty() -> Frontier:
    """What a server starts from: no job, no queue, no environment."""
    plan = compile_pipeline(Pipeline(path="<server>", params={}, computes={}, queues={}, jobs={}))
    f = Frontier(plan, job_ids={})
    f.set_compute(local(2))
    f.set_queue(Queue(name="q", compute=("ce",)))
    return f


def local(vcpus: int, name: str = "ce") -> ComputeEnv:
    host = Host(name=name, vcpus=vcpus, memory=8192)
    return ComputeEnv(name=name, vcpus=vcpus, memory=8192, hosts=(host,))


def submit(f: Frontier, *specs: JobSpec) -> None:
    f.add(specs, {s.name: s.name for s in specs})


def job(name: str, *after: Dependency, size: int | None = None, seq: bool = False) -> JobSpec:
    return JobSpec(name=name, command="x", queue="q", array_size=size, sequential=seq, after=after)


def run_all(f: Frontier, fail: set[tuple[str, int | None]] = frozenset()) -> list[Placement]:  # type: ignore[assignment]
    order: list[Placement] = []
    while placed := f.place():
        for p in placed:
            order.append(p)
            f.started(p.name, p.index)
            bad = (p.name, p.index) in fail
            f.ended(p.name, p.index, ok=not bad, reason="exited with code 1")
    return order


def test_jobs_added_later_run_and_wait_for_jobs_still_running() -> None:
    f = empty()
    submit(f, job("a"))
    (pa,) = f.place()
    f.started("a", None)
    submit(f, job("b", Dependency(job="a")))
    assert f.state("b") is S.PENDING and f.place() == []
    f.ended("a", None, ok=True)
    assert [p.name for p in f.place()] == ["b"]
    assert pa.name == "a"


def test_a_dependency_on_a_job_that_already_succeeded_is_met_at_once() -> None:
    f = empty()
    submit(f, job("a"))
    run_all(f)
    assert f.done
    submit(f, job("b", Dependency(job="a")))
    assert not f.done and f.state("b") is S.RUNNABLE
    assert [p.name for p in run_all(f)] == ["b"]
    assert f.done


def test_a_dependency_on_a_job_that_already_failed_fails_the_new_job() -> None:
    f = empty()
    submit(f, job("a"))
    run_all(f, fail={("a", None)})
    submit(f, job("b", Dependency(job="a")))
    assert f.state("b") is S.FAILED
    assert f.reason("b").startswith("Dependency failed: a (job a) exited with code 1")
    assert f.done


def test_element_and_n_to_n_dependencies_on_an_array_that_ended() -> None:
    f = empty()
    submit(f, job("arr", size=3))
    run_all(f, fail={("arr", 1)})
    assert f.state("arr") is S.FAILED
    submit(
        f,
        job("one", Dependency(job="arr", kind=DepKind.ELEMENT, index=2)),
        job("bad", Dependency(job="arr", kind=DepKind.ELEMENT, index=1)),
        job("n2n", Dependency(job="arr", kind=DepKind.N_TO_N), size=3),
    )
    assert f.state("bad") is S.FAILED
    ran = run_all(f)
    assert sorted((p.name, p.index) for p in ran) == [("n2n", 0), ("n2n", 2), ("one", None)]
    assert [f.state("n2n", i) for i in range(3)] == [S.SUCCEEDED, S.FAILED, S.SUCCEEDED]
    assert f.done


def test_n_to_n_on_an_array_half_way_through() -> None:
    f = empty()
    submit(f, job("arr", size=4))
    first = f.place()  # two children on two vCPUs
    for p in first:
        f.started(p.name, p.index)
        f.ended(p.name, p.index, ok=True)
    submit(f, job("n2n", Dependency(job="arr", kind=DepKind.N_TO_N), size=4))
    ran = run_all(f)
    # each partner runs after its own child of arr, never before
    done_at = {(p.name, p.index): i for i, p in enumerate(first + ran)}
    for i in range(4):
        assert done_at[("n2n", i)] > done_at[("arr", i)]
    assert f.done and f.state("n2n") is S.SUCCEEDED


def test_a_queue_added_later_with_a_higher_priority_goes_first() -> None:
    f = empty()
    f.set_compute(local(1))
    submit(f, job("low1"), job("low2"))
    f.set_queue(Queue(name="hi", priority=10, compute=("ce",)))
    urgent = JobSpec(name="urgent", command="x", queue="hi")
    (first,) = f.place()
    f.add([urgent], {"urgent": "urgent"})
    f.started(first.name, None)
    f.ended(first.name, None, ok=True)
    assert [p.name for p in f.place()] == ["urgent"]


def test_a_disabled_compute_environment_takes_no_new_work_until_enabled() -> None:
    f = empty()
    f.set_compute(local(2), enabled=False)
    submit(f, job("a"))
    assert f.place() == [] and f.state("a") is S.RUNNABLE
    f.set_compute(local(2), enabled=True)
    assert [p.name for p in f.place()] == ["a"]


def test_growing_an_environment_while_jobs_run_keeps_their_room() -> None:
    f = empty()
    f.set_compute(local(1))
    submit(f, job("a"), job("b"), job("c"))
    (pa,) = f.place()
    f.started("a", None)
    f.set_compute(local(2))  # one more vCPU: one more job, not two
    assert [p.name for p in f.place()] == ["b"]
    f.ended("a", None, ok=True)
    assert [p.name for p in f.place()] == ["c"]
    assert pa.host == "ce"


def test_a_restart_gives_back_attempts_begun_and_children_that_ended() -> None:
    f = empty()
    f.add(
        [job("single"), job("arr", size=4)],
        {"single": "single", "arr": "arr"},
        begun={("single", None): 2, ("arr", 3): 1},
        ended={"arr": bytes([1, 2, 0, 0])},
    )
    reported = {(c.name, c.index) for c in f.changes}
    assert ("arr", 0) not in reported and ("arr", 1) not in reported
    ran = run_all(f)
    assert sorted((p.name, p.index, p.attempt) for p in ran) == [
        ("arr", 2, 1),
        ("arr", 3, 2),
        ("single", None, 3),
    ]
    assert f.state("arr") is S.FAILED and f.reason("arr") == "arr[1] (job arr:1) failed"
    assert f.done


def test_a_sequential_array_resumes_after_its_last_child_that_ended() -> None:
    f = empty()
    f.add([job("seq", size=3, seq=True)], {"seq": "seq"}, ended={"seq": bytes([1, 0, 0])})
    assert [p.index for p in run_all(f)] == [1, 2]
    assert f.state("seq") is S.SUCCEEDED


def test_an_array_whose_children_had_all_ended_ends_and_releases_its_dependents() -> None:
    f = empty()
    f.add(
        [job("arr", size=2), job("after", Dependency(job="arr"))],
        {"arr": "arr", "after": "after"},
        ended={"arr": bytes([1, 1])},
    )
    assert f.state("arr") is S.SUCCEEDED
    assert [p.name for p in run_all(f)] == ["after"]


def test_a_forgotten_job_is_gone_and_one_still_running_cannot_be_forgotten() -> None:
    f = empty()
    submit(f, job("a"), job("b"))
    (pa, pb) = f.place()
    f.started("a", None)
    f.ended("a", None, ok=True)
    f.forget("a")
    assert "a" not in f
    f.started("b", None)
    try:
        f.forget("b")
    except ValueError as err:
        assert "has not ended" in str(err)
    else:
        raise AssertionError("forgot a running job")
    assert "b" in f and pa.name == "a" and pb.name == "b"


def test_a_job_bigger_than_every_host_waits_runnable_for_one_that_fits() -> None:
    f = empty()
    big = JobSpec(name="big", command="x", queue="q", vcpus=4)
    f.add([big], {"big": "big"})
    assert f.place() == [] and f.state("big") is S.RUNNABLE
    f.set_compute(local(4))  # UpdateComputeEnvironment: maxvCpus 4
    assert [p.name for p in f.place()] == ["big"]


def test_jobs_that_had_finished_are_there_for_dependents_and_never_reported() -> None:
    f = empty()
    f.add(
        [job("ok"), job("bad"), job("arr", size=2), job("next", Dependency(job="ok"))],
        {n: n for n in ("ok", "bad", "arr", "next")},
        finished={"ok": (True, ""), "bad": (False, "exited"), "arr": (True, "")},
        ended={"arr": bytes([1, 1])},
    )
    assert {c.name for c in f.changes} == {"next"}
    assert f.state("ok") is S.SUCCEEDED and f.state("bad") is S.FAILED
    submit(f, job("after-bad", Dependency(job="bad")))
    submit(f, job("n2n", Dependency(job="arr", kind=DepKind.N_TO_N), size=2))
    assert f.state("after-bad") is S.FAILED
    assert sorted((p.name, p.index) for p in run_all(f)) == [("n2n", 0), ("n2n", 1), ("next", None)]
    assert f.done


def test_attempts_a_restart_adopts_run_on_with_their_room_and_nothing_reported() -> None:
    f = empty()  # 2 vCPUs, both taken by the attempts that go on
    f.add(
        [job("single"), job("seq", size=3, seq=True), job("after", Dependency(job="single"))],
        {"single": "single", "seq": "seq", "after": "after"},
        ended={"seq": bytes([1, 0, 0])},
        running={("single", None): (2, "ce", "ce"), ("seq", 1): (1, "ce", "ce")},
    )
    reported = {(c.name, c.index) for c in f.changes}
    assert ("single", None) not in reported and ("seq", 1) not in reported
    assert f.state("single") is S.RUNNING and f.state("seq", 1) is S.RUNNING
    assert f.state("after") is S.PENDING
    f.changes.clear()
    assert f.place() == []  # no room, and seq[2] waits for seq[1]
    f.ended("seq", 1, ok=True)
    assert [(c.index, c.state, c.attempt) for c in f.changes if c.name == "seq"] == [
        (1, S.SUCCEEDED, 1),
        (2, S.SUBMITTED, 0),
        (2, S.PENDING, 0),
        (2, S.RUNNABLE, 0),
    ]
    assert [(p.name, p.index, p.attempt) for p in f.place()] == [("seq", 2, 1)]
    f.ended("single", None, ok=False, retry=True, reason="lost")
    f.requeue("single", None)
    assert [(p.name, p.attempt) for p in f.place()] == [("single", 3)]  # the one after 2
    f.started("seq", 2)
    f.ended("seq", 2, ok=True)
    f.started("single", None)
    f.ended("single", None, ok=True)
    assert [(p.name, p.index) for p in run_all(f)] == [("after", None)]
    assert f.state("seq") is S.SUCCEEDED and f.state("after") is S.SUCCEEDED and f.done


def test_single_jobs_share_empty_array_fields_that_every_dependency_kind_leaves_empty() -> None:
    """A single job holds shared, empty stand-ins for an array's fields (memory: 10,000
    jobs): no path, whatever the dependency kinds and outcomes, may write into them."""
    from flowbatch.run import nodes

    f = empty()
    submit(
        f,
        job("one"),
        job("arr", Dependency(job="one"), size=4, seq=True),
        job("n2n", Dependency(job="arr", kind=DepKind.N_TO_N), size=4),
        job("elem", Dependency(job="arr", index=2)),
        job("after_all", Dependency(job="n2n"), Dependency(job="elem")),
        job("lonely", Dependency(job="one")),
    )
    order = run_all(f, fail={("n2n", 3)})
    assert {(p.name, p.index) for p in order} >= {("one", None), ("arr", 3), ("elem", None)}
    assert f.state("after_all") is S.FAILED and f.state("lonely") is S.SUCCEEDED
    shared = (nodes._NO_STATUS, nodes._NO_CHILDREN, nodes._NO_NEED, nodes._NO_READY)
    assert all(len(x) == 0 for x in shared)


def test_a_dependent_forgotten_before_its_dependency_ends_is_not_looked_for() -> None:
    """A job cancelled while it waits, then expired (forgotten), is no longer a dependent:
    the job it waited for ends later without looking for it (whole, element, N_TO_N)."""
    f = empty()
    submit(f, job("a"), job("arr", size=2))
    placed = f.place()
    assert {(p.name, p.index) for p in placed} == {("a", None), ("arr", 0)}
    f.started("a", None)
    f.started("arr", 0)
    submit(
        f,
        job("b", Dependency(job="a")),
        job("e", Dependency(job="arr", index=0)),
        job("n", Dependency(job="arr", kind=DepKind.N_TO_N), size=2),
    )
    for name in ("b", "e", "n"):
        f.cancel(name, None, "cancelled", terminate=False)
        assert f.state(name) is S.FAILED
        f.forget(name)
    f.ended("a", None, ok=True)
    f.ended("arr", 0, ok=True)
    run_all(f, fail={("arr", 1)})
    assert f.state("a") is S.SUCCEEDED and f.state("arr") is S.FAILED and f.done
