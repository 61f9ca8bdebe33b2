"""The server's registry: compute environments, job queues, job definitions and tags as
AWS Batch's API manages them, their AWS rules and messages, the model the scheduler
is told of, the config's declarations, and the catalog written through and loaded back.

Every response is checked against botocore's output shape for its operation."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from shape_check import batch_model, check_output, output_problems

from flowbatch.lang.model import ComputeEnv, Host, Queue
from flowbatch.server.arns import ACCOUNT, Arns
from flowbatch.server.errors import ClientException
from flowbatch.server.registry import Registry
from flowbatch.store.catalog import Catalog
from flowbatch.store.jobstore import Store, StoreError

PREFIX = f"arn:aws:batch:us-east-1:{ACCOUNT}:"
CPUS, MEMORY = 4, 8192


class Scheduler:
    """Records what the registry tells the scheduler."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, str, bool | None]] = []

    def compute_changed(self, ce: ComputeEnv | None, name: str, enabled: bool) -> None:
        self.calls.append(("compute", ce, name, enabled))

    def queue_changed(self, queue: Queue | None, name: str) -> None:
        self.calls.append(("queue", queue, name, None))


class JobTagStore:
    def __init__(self, jobs: Mapping[str, dict[str, str]]) -> None:
        self.tags = {job: dict(tags) for job, tags in jobs.items()}

    def get(self, job_id: str) -> Mapping[str, str] | None:
        return self.tags.get(job_id)

    def set(self, job_id: str, tags: Mapping[str, str]) -> None:
        self.tags[job_id].update(tags)

    def remove(self, job_id: str, keys: Sequence[str]) -> None:
        for key in keys:
            self.tags[job_id].pop(key, None)


class Api:
    """A registry called as the app calls it, each response checked against its
    operation's output shape."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.ops = registry.operations()

    def __call__(self, operation: str, **params: Any) -> dict[str, Any]:
        response = self.ops[operation](params)
        check_output(operation, response)
        return response


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path) as opened:
        yield opened


def make(
    catalog: Catalog, scheduler: Scheduler | None = None, jobs: JobTagStore | None = None
) -> Registry:
    return Registry(
        catalog,
        region="us-east-1",
        account=ACCOUNT,
        machine_vcpus=CPUS,
        machine_memory=MEMORY,
        scheduling=scheduler or Scheduler(),
        job_tags=jobs,
    )


@pytest.fixture
def scheduler() -> Scheduler:
    return Scheduler()


@pytest.fixture
def api(store: Store, scheduler: Scheduler) -> Api:
    return Api(make(store.catalog, scheduler))


def managed(name: str, max_vcpus: int = 16, kind: str = "EC2") -> dict[str, Any]:
    resources = {"type": kind, "maxvCpus": max_vcpus, "subnets": ["s-1"]}
    return {"computeEnvironmentName": name, "type": "MANAGED", "computeResources": resources}


def order(*names: str) -> list[dict[str, Any]]:
    return [{"order": i, "computeEnvironment": name} for i, name in enumerate(names, start=1)]


def container(**extra: Any) -> dict[str, Any]:
    return {"image": "busybox", "command": ["echo", "Ref::word"], **extra}


def refused(match: str) -> Any:
    return pytest.raises(ClientException, match=match)


# -- compute environments -------------------------------------------------------------------
def test_a_managed_environment_runs_here_with_its_max_vcpus(api: Api, scheduler: Scheduler) -> None:
    created = api("CreateComputeEnvironment", **managed("ce1", 16))
    assert created == {
        "computeEnvironmentName": "ce1",
        "computeEnvironmentArn": PREFIX + "compute-environment/ce1",
    }
    (detail,) = api("DescribeComputeEnvironments")["computeEnvironments"]
    assert detail["status"] == "VALID" and detail["state"] == "ENABLED"
    assert detail["statusReason"] == "ComputeEnvironment Healthy"
    assert detail["computeResources"] == {
        "type": "EC2", "maxvCpus": 16, "minvCpus": 0, "desiredvCpus": 0, "subnets": ["s-1"],
    }  # fmt: skip
    ce = api.registry.computes()["ce1"]
    assert (ce.type, ce.vcpus, ce.memory, ce.managed, ce.spot) == ("local", 16, MEMORY, True, False)
    assert ce.hosts == (Host(name="localhost", vcpus=16, memory=MEMORY),)
    assert scheduler.calls == [("compute", ce, "ce1", True)]
    assert api.registry.compute_enabled("ce1")


def test_spot_is_marked_spot_and_unmanaged_has_its_vcpus_or_this_machines(api: Api) -> None:
    api("CreateComputeEnvironment", **managed("spot", 8, "SPOT"))
    api("CreateComputeEnvironment", computeEnvironmentName="u1", type="UNMANAGED")
    api("CreateComputeEnvironment", computeEnvironmentName="u2", type="UNMANAGED", unmanagedvCpus=2)
    computes = api.registry.computes()
    assert computes["spot"].spot and computes["spot"].vcpus == 8
    assert (computes["u1"].vcpus, computes["u1"].managed) == (CPUS, False)
    assert computes["u2"].vcpus == 2 and computes["u2"].hosts[0].vcpus == 2


@pytest.mark.parametrize("name", ["", "has space", "dot.ted", "x" * 129, "ünï"])
def test_names_are_1_to_128_letters_digits_hyphens_underscores(api: Api, name: str) -> None:
    with refused("computeEnvironmentName: .* is not a valid name"):
        api("CreateComputeEnvironment", **{**managed("x"), "computeEnvironmentName": name})
    with refused("jobQueueName: .* is not a valid name"):
        api("CreateJobQueue", jobQueueName=name, priority=1, computeEnvironmentOrder=[])
    with refused("jobDefinitionName: .* is not a valid name"):
        api("RegisterJobDefinition", jobDefinitionName=name, type="container")


def test_a_name_of_128_is_fine_and_a_duplicate_already_exists(api: Api) -> None:
    api("CreateComputeEnvironment", **managed("A-z_9" + "x" * 123))
    api("CreateComputeEnvironment", **managed("dup"))
    with refused("^Object already exists$"):
        api("CreateComputeEnvironment", computeEnvironmentName="dup", type="UNMANAGED")


def test_compute_resources_rules(api: Api) -> None:
    with refused("computeResources must be specified for a MANAGED"):
        api("CreateComputeEnvironment", computeEnvironmentName="m", type="MANAGED")
    with refused("computeResources can't be specified for an UNMANAGED"):
        api("CreateComputeEnvironment", **{**managed("u"), "type": "UNMANAGED"})
    with refused("unmanagedvCpus is only for an UNMANAGED"):
        api("CreateComputeEnvironment", **managed("m"), unmanagedvCpus=3)
    bad = managed("m")
    bad["computeResources"] |= {"minvCpus": 8, "maxvCpus": 4}
    with refused(r"maxvCpus \(4\) must be at least minvCpus \(8\)"):
        api("CreateComputeEnvironment", **bad)
    bad["computeResources"] |= {"minvCpus": 0, "desiredvCpus": 5}
    with refused(r"desiredvCpus \(5\) must be between"):
        api("CreateComputeEnvironment", **bad)
    with refused("eksConfiguration: flowbatch server does not support"):
        api("CreateComputeEnvironment", **managed("m"), eksConfiguration={"eksClusterArn": "a"})
    assert api("DescribeComputeEnvironments") == {"computeEnvironments": []}


def test_describe_by_name_or_arn_and_unknown_ones_are_left_out(api: Api) -> None:
    for name in ("a", "b", "c"):
        api("CreateComputeEnvironment", **managed(name))
    found = api(
        "DescribeComputeEnvironments",
        computeEnvironments=["c", PREFIX + "compute-environment/a", "nope", "arn:aws:batch:eu"],
    )
    assert [d["computeEnvironmentName"] for d in found["computeEnvironments"]] == ["a", "c"]
    other_region = "arn:aws:batch:eu-west-1:" + ACCOUNT + ":compute-environment/b"
    assert api("DescribeComputeEnvironments", computeEnvironments=[other_region]) == {
        "computeEnvironments": []
    }


def test_pages_follow_next_token_without_repeat_or_loss(api: Api) -> None:
    names = [f"ce{i}" for i in range(7)]
    for name in names:
        api("CreateComputeEnvironment", **managed(name))
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params: dict[str, Any] = {"maxResults": 3} | ({"nextToken": token} if token else {})
        page = api("DescribeComputeEnvironments", **params)
        pages += 1
        seen += [d["computeEnvironmentName"] for d in page["computeEnvironments"]]
        if pages == 1:  # a resource made between pages is found where it sorts
            api("CreateComputeEnvironment", **managed("ce9"))
        token = page.get("nextToken")
        if token is None:
            break
    assert seen == [*names, "ce9"] and pages == 3
    with refused("Invalid nextToken"):
        api("DescribeComputeEnvironments", nextToken="not a token")
    # Tokens a caller made up, of a number where a name goes or a name where a
    # revision goes: refused, where comparing them with the keys was a 500.
    for made_up in ([1], [1, "x"]):
        token = base64.urlsafe_b64encode(json.dumps(made_up).encode()).decode()
        with refused("Invalid nextToken"):
            api("DescribeComputeEnvironments", nextToken=token)
    with refused("maxResults must be at least 1"):
        api("DescribeComputeEnvironments", maxResults=0)


def test_update_tells_the_scheduler_what_changed_and_only_then(
    api: Api, scheduler: Scheduler
) -> None:
    api("CreateComputeEnvironment", **managed("ce", 16))
    scheduler.calls.clear()
    api("UpdateComputeEnvironment", computeEnvironment="ce", state="DISABLED")
    assert scheduler.calls == [("compute", api.registry.computes()["ce"], "ce", False)]
    assert not api.registry.compute_enabled("ce")
    api("UpdateComputeEnvironment", computeEnvironment="ce", serviceRole="arn:role")
    assert len(scheduler.calls) == 1
    response = api(
        "UpdateComputeEnvironment",
        computeEnvironment=PREFIX + "compute-environment/ce",
        computeResources={"maxvCpus": 2, "updateToLatestImageVersion": True},
    )
    assert response["computeEnvironmentName"] == "ce"
    _, ce, _, enabled = scheduler.calls[-1]
    assert (ce.vcpus, ce.hosts[0].vcpus, enabled) == (2, 2, False)
    (detail,) = api("DescribeComputeEnvironments")["computeEnvironments"]
    assert detail["computeResources"]["maxvCpus"] == 2 and detail["serviceRole"] == "arn:role"


def test_update_rules(api: Api) -> None:
    api("CreateComputeEnvironment", **managed("ce", 16))
    api("CreateComputeEnvironment", computeEnvironmentName="u", type="UNMANAGED")
    with refused("ComputeEnvironment nope not found"):
        api("UpdateComputeEnvironment", computeEnvironment="nope", state="DISABLED")
    with refused("unmanagedvCpus is only for an UNMANAGED"):
        api("UpdateComputeEnvironment", computeEnvironment="ce", unmanagedvCpus=3)
    with refused("computeResources can't be specified for an UNMANAGED"):
        api("UpdateComputeEnvironment", computeEnvironment="u", computeResources={"maxvCpus": 1})
    with refused("computeResources.type can't change from EC2 to FARGATE"):
        api(
            "UpdateComputeEnvironment",
            computeEnvironment="ce",
            computeResources={"type": "FARGATE"},
        )
    with refused(r"maxvCpus \(1\) must be at least minvCpus \(2\)"):
        change = {"minvCpus": 2, "maxvCpus": 1}
        api("UpdateComputeEnvironment", computeEnvironment="ce", computeResources=change)
    api("UpdateComputeEnvironment", computeEnvironment="u", unmanagedvCpus=3)
    assert api.registry.computes()["u"].vcpus == 3
    api("UpdateComputeEnvironment", computeEnvironment="ce", computeResources={"type": "SPOT"})
    assert api.registry.computes()["ce"].spot


def test_delete_only_when_disabled_and_no_queue_uses_it(api: Api, scheduler: Scheduler) -> None:
    api("CreateComputeEnvironment", **managed("ce"))
    api("CreateJobQueue", jobQueueName="q", priority=1, computeEnvironmentOrder=order("ce"))
    with refused("Cannot delete, compute environment ce is not DISABLED"):
        api("DeleteComputeEnvironment", computeEnvironment="ce")
    api("UpdateComputeEnvironment", computeEnvironment="ce", state="DISABLED")
    with refused("^Cannot delete, found existing JobQueue relationship$"):
        api("DeleteComputeEnvironment", computeEnvironment="ce")
    api("UpdateJobQueue", jobQueue="q", state="DISABLED")
    api("DeleteJobQueue", jobQueue="q")
    assert (
        api("DeleteComputeEnvironment", computeEnvironment=PREFIX + "compute-environment/ce") == {}
    )
    assert scheduler.calls[-1] == ("compute", None, "ce", False)
    assert api("DescribeComputeEnvironments") == {"computeEnvironments": []}
    assert api.registry.computes() == {}
    with refused("ComputeEnvironment ce not found"):
        api("DeleteComputeEnvironment", computeEnvironment="ce")


# -- job queues -------------------------------------------------------------------------------
def test_a_queue_runs_on_its_environments_in_order(api: Api, scheduler: Scheduler) -> None:
    for name in ("a", "b", "c"):
        api("CreateComputeEnvironment", **managed(name))
    scheduler.calls.clear()
    entries = [
        {"order": 5, "computeEnvironment": "c"},
        {"order": 1, "computeEnvironment": PREFIX + "compute-environment/a"},
        {"order": 3, "computeEnvironment": "b"},
    ]
    created = api("CreateJobQueue", jobQueueName="q", priority=7, computeEnvironmentOrder=entries)
    assert created == {"jobQueueName": "q", "jobQueueArn": PREFIX + "job-queue/q"}
    queue = Queue(name="q", priority=7, compute=("a", "b", "c"), state="enabled")
    assert api.registry.queues() == {"q": queue}
    assert scheduler.calls == [("queue", queue, "q", None)]
    (detail,) = api("DescribeJobQueues")["jobQueues"]
    assert detail["computeEnvironmentOrder"] == [
        {"order": 1, "computeEnvironment": PREFIX + "compute-environment/a"},
        {"order": 3, "computeEnvironment": PREFIX + "compute-environment/b"},
        {"order": 5, "computeEnvironment": PREFIX + "compute-environment/c"},
    ]
    assert (detail["state"], detail["status"], detail["statusReason"]) == (
        "ENABLED", "VALID", "JobQueue Healthy",
    )  # fmt: skip
    assert api.registry.queue(PREFIX + "job-queue/q") == detail == api.registry.queue("q")


def test_queue_order_rules(api: Api) -> None:
    for name in ("a", "b", "c", "d"):
        api("CreateComputeEnvironment", **managed(name))
    api("CreateComputeEnvironment", **managed("f", kind="FARGATE"))
    api("CreateComputeEnvironment", computeEnvironmentName="u", type="UNMANAGED")

    def create(entries: list[dict[str, Any]]) -> None:
        api("CreateJobQueue", jobQueueName="q", priority=1, computeEnvironmentOrder=entries)

    with refused("between 1 and 3 compute environments"):
        create([])
    with refused("between 1 and 3 compute environments"):
        create(order("a", "b", "c", "d"))
    with refused("ComputeEnvironment nope not found"):
        create(order("a", "nope"))
    with refused("each order must be different"):
        create([{"order": 1, "computeEnvironment": "a"}, {"order": 1, "computeEnvironment": "b"}])
    with refused("a compute environment is listed twice"):
        create(order("a", PREFIX + "compute-environment/a"))
    with refused("must all be EC2 .* or all Fargate"):
        create(order("a", "f"))
    with refused("priority must be 0 or more"):
        api("CreateJobQueue", jobQueueName="q", priority=-1, computeEnvironmentOrder=order("a"))
    with refused("serviceEnvironmentOrder: flowbatch server does not support"):
        create_args = {"serviceEnvironmentOrder": [{"order": 1, "serviceEnvironment": "s"}]}
        api("CreateJobQueue", jobQueueName="q", priority=1, **create_args)
    create(order("a", "u"))  # UNMANAGED is EC2 for the mixing rule
    with refused("^Object already exists$"):
        create(order("a"))


def test_queue_update_and_delete(api: Api, scheduler: Scheduler) -> None:
    api("CreateComputeEnvironment", **managed("a"))
    api("CreateComputeEnvironment", **managed("b"))
    api("CreateJobQueue", jobQueueName="q", priority=1, computeEnvironmentOrder=order("a"))
    scheduler.calls.clear()
    response = api(
        "UpdateJobQueue", jobQueue=PREFIX + "job-queue/q", priority=9, state="DISABLED",
        computeEnvironmentOrder=order("b", "a"),
    )  # fmt: skip
    assert response == {"jobQueueName": "q", "jobQueueArn": PREFIX + "job-queue/q"}
    queue = Queue(name="q", priority=9, compute=("b", "a"), state="disabled")
    assert scheduler.calls == [("queue", queue, "q", None)]
    api("UpdateJobQueue", jobQueue="q", schedulingPolicyArn="arn:policy")  # nothing to schedule
    assert len(scheduler.calls) == 1
    api("UpdateJobQueue", jobQueue="q", state="ENABLED")
    with refused("Cannot delete, job queue q is not DISABLED"):
        api("DeleteJobQueue", jobQueue="q")
    api("UpdateJobQueue", jobQueue="q", state="DISABLED")
    assert api("DeleteJobQueue", jobQueue="q") == {}
    assert scheduler.calls[-1] == ("queue", None, "q", None)
    with refused(r"^JobQueue q not found\.$"):
        api.registry.queue("q")
    with refused(r"JobQueue q not found"):
        api("UpdateJobQueue", jobQueue="q", state="ENABLED")
    assert api("DescribeJobQueues", jobQueues=["q"]) == {"jobQueues": []}


# -- job definitions -------------------------------------------------------------------------
def test_revisions_count_per_name_and_deregistered_stay_describable(api: Api) -> None:
    first = api(
        "RegisterJobDefinition", jobDefinitionName="d", type="container",
        containerProperties=container(), parameters={"word": "hi"},
    )  # fmt: skip
    assert first == {
        "jobDefinitionName": "d", "jobDefinitionArn": PREFIX + "job-definition/d:1", "revision": 1,
    }  # fmt: skip
    assert api("RegisterJobDefinition", jobDefinitionName="d", type="container",
               containerProperties=container())["revision"] == 2  # fmt: skip
    api("RegisterJobDefinition", jobDefinitionName="e", type="container",
        containerProperties=container())  # fmt: skip
    described = api("DescribeJobDefinitions")["jobDefinitions"]
    assert [(d["jobDefinitionName"], d["revision"]) for d in described] == [
        ("d", 2), ("d", 1), ("e", 1),
    ]  # fmt: skip
    one = described[1]
    assert one["status"] == "ACTIVE" and one["parameters"] == {"word": "hi"}
    assert one["containerProperties"] == container() and one["type"] == "container"

    assert api("DeregisterJobDefinition", jobDefinition="d:2") == {}
    assert api.registry.definition("d")["revision"] == 1  # the latest ACTIVE one
    with refused(f"^JobDefinition {PREFIX}job-definition/d:2 is not in ACTIVE status$"):
        api.registry.definition("d:2")
    (inactive,) = api("DescribeJobDefinitions", jobDefinitions=["d:2"])["jobDefinitions"]
    assert inactive["status"] == "INACTIVE"
    third = api("RegisterJobDefinition", jobDefinitionName="d", type="container",
                containerProperties=container())  # fmt: skip
    assert third["revision"] == 3  # a revision is never reused


def test_describe_definitions_by_reference_name_and_status(api: Api) -> None:
    for name in ("d", "d", "e"):
        api("RegisterJobDefinition", jobDefinitionName=name, type="container",
            containerProperties=container())  # fmt: skip
    api("DeregisterJobDefinition", jobDefinition=PREFIX + "job-definition/d:1")

    def found(**params: Any) -> list[str]:
        described = api("DescribeJobDefinitions", **params)["jobDefinitions"]
        return [f"{d['jobDefinitionName']}:{d['revision']}" for d in described]

    assert found(jobDefinitions=["e", PREFIX + "job-definition/d:1", "nope:1"]) == ["d:1", "e:1"]
    assert found(jobDefinitions=["d"]) == ["d:2", "d:1"]
    assert found(jobDefinitionName="d", status="ACTIVE") == ["d:2"]
    assert found(status="INACTIVE") == ["d:1"]
    assert found(jobDefinitionName="nope") == []
    assert found(maxResults=2) == ["d:2", "d:1"]
    token = api("DescribeJobDefinitions", maxResults=2)["nextToken"]
    assert found(maxResults=2, nextToken=token) == ["e:1"]
    forged = base64.urlsafe_b64encode(json.dumps(["d", "2"]).encode()).decode()
    with refused("Invalid nextToken"):
        found(nextToken=forged)
    with refused("status must be ACTIVE or INACTIVE"):
        found(status="DELETED")


def test_definition_references_as_submit_job_takes_them(api: Api) -> None:
    api("RegisterJobDefinition", jobDefinitionName="d", type="container",
        containerProperties=container(), tags={"team": "x"})  # fmt: skip
    by_name = api.registry.definition("d")
    assert by_name == api.registry.definition("d:1")
    assert by_name == api.registry.definition(PREFIX + "job-definition/d:1")
    assert by_name["tags"] == {"team": "x"}
    with refused("^JobDefinition name nope does not exist or is not in ACTIVE status$"):
        api.registry.definition("nope")
    with refused("^JobDefinition d:7 does not exist or is not in ACTIVE status$"):
        api.registry.definition("d:7")
    foreign = "arn:aws:batch:eu-west-1:123456789012:job-definition/d:1"
    with refused("does not exist or is not in ACTIVE status"):
        api.registry.definition(foreign)
    api("DeregisterJobDefinition", jobDefinition="d:1")
    with refused("^JobDefinition name d does not exist or is not in ACTIVE status$"):
        api.registry.definition("d")
    with refused("give NAME:REVISION or the job definition's ARN"):
        api("DeregisterJobDefinition", jobDefinition="d")
    with refused("JobDefinition d:9 does not exist"):
        api("DeregisterJobDefinition", jobDefinition="d:9")


class _NoWalk(dict[str, dict[int, Any]]):
    """The registry's definitions, refusing to be walked whole."""

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("every definition was walked to describe one")


def test_describing_a_definition_by_reference_looks_at_it_alone(api: Api) -> None:
    # The service describes each job's definition by ARN: 100 jobs of a DescribeJobs
    # walked every revision of every definition 100 times.
    for name in ("a", "b", "b", "c"):
        api("RegisterJobDefinition", jobDefinitionName=name, type="container",
            containerProperties=container())  # fmt: skip
    registry = api.registry
    registry._defs = _NoWalk(registry._defs)  # what it walks is the point

    def found(*refs: str) -> list[str]:
        described = api("DescribeJobDefinitions", jobDefinitions=list(refs))["jobDefinitions"]
        return [f"{d['jobDefinitionName']}:{d['revision']}" for d in described]

    assert found(PREFIX + "job-definition/b:1") == ["b:1"]
    assert found("b", "a:1", "nope", "c:7") == ["a:1", "b:2", "b:1"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"type": "multinode"}, "type: flowbatch server does not support multinode"),
        ({"containerProperties": None}, "containerProperties: required"),
        ({"nodeProperties": {"numNodes": 2}}, "nodeProperties: flowbatch server does not"),
        ({"retryStrategy": {"attempts": 11}}, "attempts must be between 1 and 10, not 11"),
        ({"retryStrategy": {"attempts": 0}}, "attempts must be between 1 and 10, not 0"),
        ({"retryStrategy": {"evaluateOnExit": [{"action": "RETRY"}] * 6}}, "at most 5 rules"),
        (
            {"retryStrategy": {"evaluateOnExit": [{"action": "EXIT", "onExitCode": "1*2"}]}},
            "onExitCode: '1\\*2' is not a valid pattern",
        ),
        ({"timeout": {"attemptDurationSeconds": 59}}, "minimum is 60 seconds, not 59"),
        ({"schedulingPriority": 10000}, "schedulingPriority must be between 0 and 9999"),
        (
            {"containerProperties": container(environment=[{"name": "AWS_BATCH_X", "value": ""}])},
            "AWS_BATCH_X: names starting with AWS_BATCH are reserved",
        ),
        (
            {"containerProperties": container(
                resourceRequirements=[{"type": "MEMORY", "value": "x"}])},
            "MEMORY value 'x' must be a number",
        ),
        (
            {"containerProperties": container(resourceRequirements=[
                {"type": "VCPU", "value": "1"}, {"type": "VCPU", "value": "2"}])},
            "VCPU given twice",
        ),
        ({"containerProperties": container(secrets=[{"name": "a", "valueFrom": "b"}])}, "secrets"),
        ({"containerProperties": container(memory=3)}, "memory must be at least 4, not 3"),
        (
            {"containerProperties": container(
                resourceRequirements=[{"type": "VCPU", "value": "0.1"}])},
            "VCPU value '0.1' must be a number of at least 0.25",
        ),
        ({"tags": {"aws:x": "y"}}, "the aws: prefix is reserved"),
        (
            {"containerProperties": container(
                resourceRequirements=[{"type": "MEMORY", "value": "1e30"}])},
            "MEMORY value '1e30' must be a number of at least 4 and at most 2147483647",
        ),
        (
            {"containerProperties": container(
                resourceRequirements=[{"type": "VCPU", "value": "nan"}])},
            "VCPU value 'nan' must be a number",
        ),
        (
            {"containerProperties": container(environment=[{"name": "A=B", "value": ""}])},
            "A=B: a name cannot contain '='",
        ),
    ],
)  # fmt: skip
def test_definition_rules(api: Api, params: dict[str, Any], message: str) -> None:
    request = {"jobDefinitionName": "d", "type": "container", "containerProperties": container()}
    request = {k: v for k, v in (request | params).items() if v is not None}
    with refused(message):
        api("RegisterJobDefinition", **request)
    assert api("DescribeJobDefinitions") == {"jobDefinitions": []}


def test_a_definition_with_every_member_describes_as_registered(api: Api) -> None:
    request = {
        "jobDefinitionName": "full",
        "type": "container",
        "parameters": {"a": "b"},
        "schedulingPriority": 5,
        "containerProperties": container(
            resourceRequirements=[{"type": "VCPU", "value": "0.5"}, {"type": "GPU", "value": "0"}],
            environment=[{"name": "X", "value": "1"}],
        ),
        "retryStrategy": {"attempts": 3, "evaluateOnExit": [
            {"action": "retry", "onStatusReason": "Host EC2*"},
            {"action": "EXIT", "onExitCode": "1"}]},
        "propagateTags": True,
        "timeout": {"attemptDurationSeconds": 60},
        "tags": {"k": "v"},
        "platformCapabilities": ["EC2"],
    }  # fmt: skip
    api("RegisterJobDefinition", **request)
    (described,) = api("DescribeJobDefinitions")["jobDefinitions"]
    request["retryStrategy"]["evaluateOnExit"][0]["action"] = "RETRY"  # as the enum spells it
    for key, value in request.items():
        assert described[key] == value


# -- tags -------------------------------------------------------------------------------------
def test_tags_of_environments_queues_and_definitions(api: Api) -> None:
    api("CreateComputeEnvironment", **managed("ce"), tags={"a": "1"})
    api("CreateJobQueue", jobQueueName="q", priority=1, computeEnvironmentOrder=order("ce"))
    api("RegisterJobDefinition", jobDefinitionName="d", type="container",
        containerProperties=container())  # fmt: skip
    for arn in (
        PREFIX + "compute-environment/ce", PREFIX + "job-queue/q", PREFIX + "job-definition/d:1",
    ):  # fmt: skip
        before = api("ListTagsForResource", resourceArn=arn)["tags"]
        assert api("TagResource", resourceArn=arn, tags={"b": "2", "c": "3"}) == {}
        assert api("ListTagsForResource", resourceArn=arn)["tags"] == before | {"b": "2", "c": "3"}
        assert api("UntagResource", resourceArn=arn, tagKeys=["c", "absent"]) == {}
        assert api("ListTagsForResource", resourceArn=arn)["tags"] == before | {"b": "2"}
    (ce,) = api("DescribeComputeEnvironments")["computeEnvironments"]
    assert ce["tags"] == {"a": "1", "b": "2"}
    assert api.registry.queue("q")["tags"] == {"b": "2"}
    assert api.registry.definition("d")["tags"] == {"b": "2"}


def test_tag_rules(api: Api) -> None:
    api("CreateComputeEnvironment", **managed("ce"))
    arn = PREFIX + "compute-environment/ce"
    with refused("the aws: prefix is reserved"):
        api("TagResource", resourceArn=arn, tags={"AWS:x": "1"})
    with refused("the aws: prefix is reserved"):
        api("UntagResource", resourceArn=arn, tagKeys=["aws:x"])
    api("TagResource", resourceArn=arn, tags={f"k{i}": "v" for i in range(50)})
    with refused("at most 50 tags, not 51"):
        api("TagResource", resourceArn=arn, tags={"one-more": "v"})
    api("TagResource", resourceArn=arn, tags={"k0": "overwritten"})  # still 50
    for unknown in (
        PREFIX + "compute-environment/nope", PREFIX + "job-queue/ce",
        PREFIX + "job-definition/ce:1", "arn:aws:batch:eu-west-1:1:compute-environment/ce",
        "not-an-arn",
    ):  # fmt: skip
        with refused("Resource .* not found"):
            api("ListTagsForResource", resourceArn=unknown)


def test_tags_of_jobs_go_to_the_service(store: Store) -> None:
    jobs = JobTagStore({"j1": {"a": "1"}})
    api = Api(make(store.catalog, jobs=jobs))
    arn = PREFIX + "job/j1"
    api("TagResource", resourceArn=arn, tags={"b": "2"})
    api("UntagResource", resourceArn=arn, tagKeys=["a"])
    assert api("ListTagsForResource", resourceArn=arn) == {"tags": {"b": "2"}}
    assert jobs.tags == {"j1": {"b": "2"}}
    with refused("Resource .*job/j2 not found"):
        api("TagResource", resourceArn=PREFIX + "job/j2", tags={"b": "2"})
    with refused("at most 50 tags"):
        api("TagResource", resourceArn=arn, tags={f"k{i}": "v" for i in range(50)})
    without = Api(make(store.catalog))
    with refused("Resource .*job/j1 not found"):
        without("ListTagsForResource", resourceArn=arn)


# -- the config's declarations ---------------------------------------------------------------
SSH = ComputeEnv(
    name="lab", type="ssh", vcpus=6, memory=3072, managed=False,
    options=MappingProxyType({"known_hosts": "/etc/kh", "max_sessions": 4}),
    hosts=(
        Host(name="n1", vcpus=4, memory=2048, address="10.0.0.1", port=2222, user="me"),
        Host(name="n2", vcpus=2, memory=1024, address="10.0.0.2"),
    ),
)  # fmt: skip
SLURM = ComputeEnv(
    name="hpc", type="slurm", vcpus=64, memory=1 << 40,
    options=MappingProxyType({"partition": "batch", "max_vcpus": 64}),
    hosts=(Host(name="batch", vcpus=64, memory=1 << 40),),
)  # fmt: skip
CONFIG_QUEUE = Queue(name="cq", priority=3, compute=("hpc", "lab"), state="enabled")


def test_declared_environments_run_where_the_config_says(api: Api, scheduler: Scheduler) -> None:
    api.registry.declare({"lab": SSH, "hpc": SLURM}, {"cq": CONFIG_QUEUE})
    assert scheduler.calls == []  # start-up: the scheduler reads computes() and queues()
    assert api.registry.computes() == {"lab": SSH, "hpc": SLURM}
    assert api.registry.queues() == {"cq": CONFIG_QUEUE}
    described = {
        d["computeEnvironmentName"]: d
        for d in api("DescribeComputeEnvironments")["computeEnvironments"]
    }
    assert described["lab"]["type"] == "UNMANAGED" and described["lab"]["unmanagedvCpus"] == 6
    assert described["hpc"]["computeResources"]["maxvCpus"] == 64
    assert all("_flowbatch" not in d for d in described.values())
    # An API queue may use a declared environment; a declared one keeps its kind.
    api("CreateJobQueue", jobQueueName="q", priority=1, computeEnvironmentOrder=order("lab"))
    api("UpdateComputeEnvironment", computeEnvironment="lab", state="DISABLED")
    assert scheduler.calls[-1] == ("compute", SSH, "lab", False)
    with refused("lab is declared in the server's configuration \\(type ssh\\)"):
        api("UpdateComputeEnvironment", computeEnvironment="lab", unmanagedvCpus=100)
    with refused("hpc is declared in the server's configuration \\(type slurm\\)"):
        api("UpdateComputeEnvironment", computeEnvironment="hpc", computeResources={"maxvCpus": 1})
    with refused("Cannot delete, compute environment lab is declared"):
        api("DeleteComputeEnvironment", computeEnvironment="lab")
    api("UpdateJobQueue", jobQueue="cq", state="DISABLED")
    with refused("Cannot delete, job queue cq is declared"):
        api("DeleteJobQueue", jobQueue="cq")


def test_declaring_a_queue_of_unknown_environments_is_refused(api: Api) -> None:
    with refused("queue cq: compute environment hpc is not declared"):
        api.registry.declare({"lab": SSH}, {"cq": CONFIG_QUEUE})


def test_declared_ones_are_kept_across_starts(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        api = Api(make(store.catalog))
        api.registry.declare({"lab": SSH, "hpc": SLURM}, {"cq": CONFIG_QUEUE})
        api("TagResource", resourceArn=PREFIX + "compute-environment/lab", tags={"t": "1"})
        api("UpdateJobQueue", jobQueue="cq", priority=99)
    with Store.open(tmp_path) as store:  # started again with the same config
        api = Api(make(store.catalog))
        api.registry.load()
        api.registry.declare({"lab": SSH, "hpc": SLURM}, {"cq": CONFIG_QUEUE})
        assert api.registry.computes() == {"lab": SSH, "hpc": SLURM}
        assert api.registry.queues()["cq"].priority == 3  # the config's, as written
        assert api("ListTagsForResource", resourceArn=PREFIX + "compute-environment/lab") == {
            "tags": {"t": "1"}
        }
    with Store.open(tmp_path) as store:  # started with a config that no longer has them
        api = Api(make(store.catalog))
        api.registry.load()
        assert api.registry.computes() == {"lab": SSH, "hpc": SLURM}  # still where they ran
        api("UpdateJobQueue", jobQueue="cq", state="DISABLED")
        api("DeleteJobQueue", jobQueue="cq")
        api("UpdateComputeEnvironment", computeEnvironment="hpc", state="DISABLED")
        api("DeleteComputeEnvironment", computeEnvironment="hpc")
        assert list(api.registry.computes()) == ["lab"]


# -- the catalog, written through and loaded back ------------------------------------------
def test_a_restart_rebuilds_the_same_catalog(tmp_path: Path) -> None:
    operations = ("DescribeComputeEnvironments", "DescribeJobQueues", "DescribeJobDefinitions")
    with Store.open(tmp_path) as store:
        api = Api(make(store.catalog))
        api("CreateComputeEnvironment", **managed("a", 8, "SPOT"), tags={"x": "y"})
        api("CreateComputeEnvironment", computeEnvironmentName="u", type="UNMANAGED",
            unmanagedvCpus=3, state="DISABLED")  # fmt: skip
        api("CreateComputeEnvironment", **managed("gone"))
        api("UpdateComputeEnvironment", computeEnvironment="gone", state="DISABLED")
        api("DeleteComputeEnvironment", computeEnvironment="gone")
        api("UpdateComputeEnvironment", computeEnvironment="a", computeResources={"maxvCpus": 4})
        api("CreateJobQueue", jobQueueName="q", priority=2, computeEnvironmentOrder=order("a", "u"))
        api("UpdateJobQueue", jobQueue="q", state="DISABLED")
        for _ in range(2):
            api("RegisterJobDefinition", jobDefinitionName="d", type="container",
                containerProperties=container(), tags={"t": "1"})  # fmt: skip
        api("DeregisterJobDefinition", jobDefinition="d:1")
        api("TagResource", resourceArn=PREFIX + "job-definition/d:2", tags={"more": "1"})
        before = {op: api(op) for op in operations}
        models = (api.registry.computes(), api.registry.queues())
    with Store.open(tmp_path) as store:
        again = Api(make(store.catalog))
        again.registry.load()
        assert {op: again(op) for op in operations} == before
        assert (again.registry.computes(), again.registry.queues()) == models
        assert not again.registry.compute_enabled("u")
        assert again.registry.definition("d")["revision"] == 2
        assert again("RegisterJobDefinition", jobDefinitionName="d", type="container",
                     containerProperties=container())["revision"] == 3  # fmt: skip
        with refused("^Object already exists$"):
            again(
                "CreateJobQueue", jobQueueName="q", priority=1, computeEnvironmentOrder=order("a")
            )


class FullDisk:
    """A catalog that reads but cannot write, as on a full disk."""

    def __init__(self, catalog: Catalog) -> None:
        self.load = catalog.load

    def put(self, *args: Any) -> None:
        raise StoreError("cannot write to `jobs.db`: database or disk is full")

    def delete(self, *args: Any) -> None:
        raise StoreError("cannot write to `jobs.db`: database or disk is full")


def test_a_change_that_cannot_be_written_is_not_made(store: Store) -> None:
    scheduler = Scheduler()
    ok = Api(make(store.catalog, scheduler))
    ok("CreateComputeEnvironment", **managed("ce"))
    ok("CreateJobQueue", jobQueueName="q", priority=1, computeEnvironmentOrder=order("ce"))
    registry = make(FullDisk(store.catalog), scheduler)  # type: ignore[arg-type]
    registry.load()
    api = Api(registry)
    scheduler.calls.clear()
    before = api("DescribeComputeEnvironments"), api("DescribeJobQueues")
    with pytest.raises(StoreError):
        api("CreateComputeEnvironment", **managed("new"))
    with pytest.raises(StoreError):
        api("UpdateComputeEnvironment", computeEnvironment="ce", state="DISABLED")
    with pytest.raises(StoreError):
        api("UpdateJobQueue", jobQueue="q", state="DISABLED")
    with pytest.raises(StoreError):
        api("TagResource", resourceArn=PREFIX + "job-queue/q", tags={"a": "b"})
    with pytest.raises(StoreError):
        api("RegisterJobDefinition", jobDefinitionName="d", type="container",
            containerProperties=container())  # fmt: skip
    assert (api("DescribeComputeEnvironments"), api("DescribeJobQueues")) == before
    assert api.registry.compute_enabled("ce")
    assert api("DescribeJobDefinitions") == {"jobDefinitions": []}
    assert scheduler.calls == []


# -- the pieces -------------------------------------------------------------------------------
def test_arns_are_made_and_read_back() -> None:
    arns = Arns("eu-west-1", "000000000000")
    arn = arns.arn("job-definition", "d:3")
    assert arn == "arn:aws:batch:eu-west-1:000000000000:job-definition/d:3"
    assert arns.parse(arn) == ("job-definition", "d:3")
    assert arns.parse(arns.arn("job", "1234-abcd")) == ("job", "1234-abcd")
    assert arns.parse("arn:aws:batch:us-east-1:000000000000:job-queue/q") is None
    assert arns.parse("arn:aws:batch:eu-west-1:123456789012:job-queue/q") is None
    assert arns.parse("arn:aws:s3:eu-west-1:000000000000:job-queue/q") is None
    assert arns.parse("arn:aws:batch:eu-west-1:000000000000:scheduling-policy/p") is None
    assert arns.parse("arn:aws:batch:eu-west-1:000000000000:job-queue/") is None
    assert arns.name_of("job-queue", "q") == "q"
    assert arns.name_of("job-queue", arns.arn("job-queue", "q")) == "q"
    assert arns.name_of("job-queue", arns.arn("compute-environment", "q")) is None


def test_operations_are_the_models() -> None:
    registry = Registry(
        Catalog.__new__(Catalog), region="us-east-1", account=ACCOUNT, machine_vcpus=1,
        machine_memory=1, scheduling=Scheduler(),
    )  # fmt: skip
    names = set(batch_model().operation_names)
    assert set(registry.operations()) <= names
    assert len(registry.operations()) == 14


def test_the_shape_check_finds_what_is_wrong() -> None:
    assert output_problems(
        "DescribeJobQueues",
        {"jobQueues": [{"jobQueueName": "q", "state": "ON", "x": 1, "tags": {"a": 1}}]},
    ) == [
        "DescribeJobQueues.jobQueues[0]: required member jobQueueArn missing",
        "DescribeJobQueues.jobQueues[0]: required member priority missing",
        "DescribeJobQueues.jobQueues[0]: required member computeEnvironmentOrder missing",
        "DescribeJobQueues.jobQueues[0].state: 'ON' is not one of ENABLED, DISABLED",
        "DescribeJobQueues.jobQueues[0]: JobQueueDetail has no member x",
        "DescribeJobQueues.jobQueues[0].tags['a']: expects a string, got 1",
    ]
    assert output_problems("DeleteJobQueue", {}) == []
    assert output_problems("RegisterJobDefinition", {"revision": True})
