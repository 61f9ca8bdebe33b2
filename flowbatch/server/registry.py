"""The service's catalog: compute environments, job queues, job definitions and their
tags, as AWS Batch's API manages them.

Each operation takes the API's request members (validated against botocore's model by
the app) and returns the API's response members. The registry holds everything in
memory and writes each change through the store's catalog before it returns, so that a
change the API has answered survives a crash; `load` rebuilds the same state at start.
AWS's rules are checked here and broken ones raise `ClientException` with AWS's message
where AWS's is known.

The scheduler sees the catalog as the language's model: each compute environment is a
`lang.model.ComputeEnv` (an API-created one runs on this machine, see `_compute_model`;
one declared in the server's `--config` runs where it says), each queue a
`lang.model.Queue`, and every change that matters to scheduling is told to a
`Scheduling` object as it happens.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Protocol

from flowbatch.lang.model import ComputeEnv, Host, Queue
from flowbatch.server import definitions, rules
from flowbatch.server.arns import Arns
from flowbatch.server.errors import ClientException
from flowbatch.server.rules import PRIVATE, Body, Params
from flowbatch.store.catalog import Catalog

_MAX_ORDER: Final = 3  # compute environments per queue
_CE_HEALTHY: Final = "ComputeEnvironment Healthy"
_JQ_HEALTHY: Final = "JobQueue Healthy"


class Scheduling(Protocol):
    """What the scheduler is told of the catalog's changes (None: deleted)."""

    def compute_changed(self, ce: ComputeEnv | None, name: str, enabled: bool) -> None: ...

    def queue_changed(self, queue: Queue | None, name: str) -> None: ...


class JobTags(Protocol):
    """The tags of the service's jobs, for the tag operations on a job's ARN."""

    def get(self, job_id: str) -> Mapping[str, str] | None:
        """The job's tags; None when there is no such job."""
        ...

    def set(self, job_id: str, tags: Mapping[str, str]) -> None:
        """Add or overwrite these tags of the job."""
        ...

    def remove(self, job_id: str, keys: Sequence[str]) -> None:
        """Remove these tags of the job (absent keys are no error)."""
        ...


@dataclass(slots=True)
class _Env:
    detail: Body  # ComputeEnvironmentDetail
    declared: ComputeEnv | None = None  # from the config: runs where it says


class Registry:
    """Compute environments, job queues and job definitions of one server."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        region: str,
        account: str,
        machine_vcpus: int,
        machine_memory: int,
        scheduling: Scheduling,
        machine_gpus: int = 0,
        job_tags: JobTags | None = None,
    ) -> None:
        self._catalog = catalog
        self.arns = Arns(region, account)
        self._machine = (machine_vcpus, machine_memory, machine_gpus)
        self._scheduling = scheduling
        self._job_tags = job_tags
        self._envs: dict[str, _Env] = {}
        self._queues: dict[str, Body] = {}
        self._defs: dict[str, dict[int, Body]] = {}  # name -> revision -> JobDefinition
        # What the config declares at this start: not deletable through the API.
        self._config_envs: set[str] = set()
        self._config_queues: set[str] = set()

    def operations(self) -> dict[str, Callable[[Params], Body]]:
        """The API operations this registry answers, by the model's operation name."""
        return {
            "CreateComputeEnvironment": self.create_compute_environment,
            "DescribeComputeEnvironments": self.describe_compute_environments,
            "UpdateComputeEnvironment": self.update_compute_environment,
            "DeleteComputeEnvironment": self.delete_compute_environment,
            "CreateJobQueue": self.create_job_queue,
            "DescribeJobQueues": self.describe_job_queues,
            "UpdateJobQueue": self.update_job_queue,
            "DeleteJobQueue": self.delete_job_queue,
            "RegisterJobDefinition": self.register_job_definition,
            "DescribeJobDefinitions": self.describe_job_definitions,
            "DeregisterJobDefinition": self.deregister_job_definition,
            "TagResource": self.tag_resource,
            "UntagResource": self.untag_resource,
            "ListTagsForResource": self.list_tags_for_resource,
        }

    # -- start-up ---------------------------------------------------------------------
    def load(self) -> None:
        """Rebuild the catalog from the store (at start, before the scheduler reads
        `computes` and `queues`; no `Scheduling` call is made)."""
        self._envs.clear()
        self._queues.clear()
        self._defs.clear()
        for body in self._catalog.load("compute_environment"):
            private = body.pop(PRIVATE, None)
            declared = _compute_from_json(private["compute"]) if private else None
            self._envs[body["computeEnvironmentName"]] = _Env(body, declared)
        for body in self._catalog.load("job_queue"):
            self._queues[body["jobQueueName"]] = body
        for body in self._catalog.load("job_definition"):
            self._defs.setdefault(body["jobDefinitionName"], {})[body["revision"]] = body

    def declare(self, computes: Mapping[str, ComputeEnv], queues: Mapping[str, Queue]) -> None:
        """Enter the compute environments and queues of the server's `--config` (at
        start, after `load`; no `Scheduling` call is made). What the config declares
        is set as written at every start (an environment ENABLED, a queue in its
        state), replacing an entry of the same name; its tags are kept. A declared
        environment keeps its type (local, SSH, SLURM) and hosts: the API may change
        its state only, and neither it nor a declared queue can be deleted through the
        API while the config declares it. One the config no longer declares stays as
        it was last declared, and can be deleted."""
        for name, ce in computes.items():
            old = self._envs.get(name)
            tags = dict(old.detail.get("tags", {})) if old else {}
            env = _Env(self._declared_detail(ce, tags), ce)
            self._put_env(env)
            self._config_envs.add(name)
        for name, queue in queues.items():
            missing = [c for c in queue.compute if c not in self._envs]
            if missing:
                raise ClientException(
                    f"queue {name}: compute environment {missing[0]} is not declared"
                )
            old_queue = self._queues.get(name)
            detail: Body = {
                "jobQueueName": name,
                "jobQueueArn": self.arns.arn("job-queue", name),
                "state": queue.state.upper(),
                "status": "VALID",
                "statusReason": _JQ_HEALTHY,
                "priority": queue.priority,
                "computeEnvironmentOrder": [
                    {"order": i, "computeEnvironment": self.arns.arn("compute-environment", c)}
                    for i, c in enumerate(queue.compute, start=1)
                ],
                "tags": dict(old_queue.get("tags", {})) if old_queue else {},
            }
            self._put_queue(detail)
            self._config_queues.add(name)

    # -- the model the scheduler reads ---------------------------------------------------
    def computes(self) -> dict[str, ComputeEnv]:
        """Every compute environment as the scheduler runs it."""
        return {name: self._compute_model(env) for name, env in self._envs.items()}

    def compute_enabled(self, name: str) -> bool:
        """Whether compute environment `name` takes new jobs (ENABLED)."""
        return rules.enabled(self._envs[name].detail)

    def queues(self) -> dict[str, Queue]:
        """Every job queue as the scheduler runs it."""
        return {name: self._queue_model(detail) for name, detail in self._queues.items()}

    def queue(self, ref: str) -> Body:
        """The JobQueueDetail of a queue by name or ARN; ClientException if unknown."""
        name = self.arns.name_of("job-queue", ref)
        if name is None or name not in self._queues:
            raise ClientException(f"JobQueue {ref} not found.")
        return rules.public(self._queues[name])

    def definition(self, ref: str) -> Body:
        """The JobDefinition a SubmitJob names: `NAME` (its latest ACTIVE revision),
        `NAME:REVISION` or an ARN. ClientException, as AWS words it, when there is no
        such ACTIVE definition."""
        parsed = self._def_ref(ref)
        if parsed is None:
            raise ClientException(f"JobDefinition {ref} does not exist or is not in ACTIVE status")
        name, revision = parsed
        revisions = self._defs.get(name, {})
        if revision is None:
            active = [r for r, body in revisions.items() if body["status"] == "ACTIVE"]
            if not active:
                raise ClientException(
                    f"JobDefinition name {name} does not exist or is not in ACTIVE status"
                )
            revision = max(active)
        body = revisions.get(revision)
        if body is None:
            raise ClientException(f"JobDefinition {ref} does not exist or is not in ACTIVE status")
        if body["status"] != "ACTIVE":
            raise ClientException(
                f"JobDefinition {body['jobDefinitionArn']} is not in ACTIVE status"
            )
        return rules.public(body)

    # -- compute environments ------------------------------------------------------------
    def create_compute_environment(self, params: Params) -> Body:
        name = rules.checked_name("computeEnvironmentName", params["computeEnvironmentName"])
        if name in self._envs:
            raise ClientException("Object already exists")
        rules.refuse_unsupported(params, ("eksConfiguration",), "compute environments on EKS")
        ce_type = params["type"]
        detail: Body = {
            "computeEnvironmentName": name,
            "computeEnvironmentArn": self.arns.arn("compute-environment", name),
            "type": ce_type,
            "state": params.get("state", "ENABLED"),
            "status": "VALID",
            "statusReason": _CE_HEALTHY,
            "containerOrchestrationType": "ECS",
            "tags": rules.checked_tags({}, params.get("tags") or {}),
        }
        for key in ("serviceRole", "context", "ecsSettings"):
            if key in params:
                detail[key] = copy.deepcopy(params[key])
        resources = params.get("computeResources")
        if ce_type == "MANAGED":
            if resources is None:
                raise ClientException(
                    "computeResources must be specified for a MANAGED compute environment"
                )
            if "unmanagedvCpus" in params:
                raise ClientException("unmanagedvCpus is only for an UNMANAGED compute environment")
            detail["computeResources"] = rules.checked_resources(copy.deepcopy(dict(resources)))
        else:
            if resources is not None:
                raise ClientException(
                    "computeResources can't be specified for an UNMANAGED compute environment"
                )
            if "unmanagedvCpus" in params:
                detail["unmanagedvCpus"] = rules.checked_unmanaged(params["unmanagedvCpus"])
        env = _Env(detail)
        self._put_env(env)
        self._scheduling.compute_changed(self._compute_model(env), name, rules.enabled(detail))
        return {
            "computeEnvironmentName": name,
            "computeEnvironmentArn": detail["computeEnvironmentArn"],
        }

    def describe_compute_environments(self, params: Params) -> Body:
        names = sorted(self._envs)
        refs = params.get("computeEnvironments")
        if refs is not None:
            wanted = {self.arns.name_of("compute-environment", ref) for ref in refs}
            names = [name for name in names if name in wanted]
        page, token = rules.page([(name,) for name in names], params)
        return rules.with_token(
            {"computeEnvironments": [rules.public(self._envs[key[0]].detail) for key in page]},
            token,
        )

    def update_compute_environment(self, params: Params) -> Body:
        env = self._env(params["computeEnvironment"])
        name = env.detail["computeEnvironmentName"]
        rules.refuse_unsupported(params, ("eksConfiguration",), "compute environments on EKS")
        before = (self._compute_model(env), rules.enabled(env.detail))
        detail = copy.deepcopy(env.detail)
        if "state" in params:
            detail["state"] = params["state"]
        for key in ("serviceRole", "updatePolicy", "context", "ecsSettings"):
            if key in params:
                detail[key] = copy.deepcopy(params[key])
        resources = params.get("computeResources")
        if env.declared is not None and (resources or "unmanagedvCpus" in params):
            raise ClientException(
                f"compute environment {name} is declared in the server's configuration"
                f" (type {env.declared.type}): only its state can be updated"
            )
        if "unmanagedvCpus" in params:
            if detail["type"] != "UNMANAGED":
                raise ClientException("unmanagedvCpus is only for an UNMANAGED compute environment")
            detail["unmanagedvCpus"] = rules.checked_unmanaged(params["unmanagedvCpus"])
        if resources:
            if detail["type"] != "MANAGED":
                raise ClientException(
                    "computeResources can't be specified for an UNMANAGED compute environment"
                )
            detail["computeResources"] = rules.updated_resources(
                detail["computeResources"], resources
            )
        new = _Env(detail, env.declared)
        self._put_env(new)
        after = (self._compute_model(new), rules.enabled(detail))
        if after != before:
            self._scheduling.compute_changed(after[0], name, after[1])
        return {
            "computeEnvironmentName": name,
            "computeEnvironmentArn": detail["computeEnvironmentArn"],
        }

    def delete_compute_environment(self, params: Params) -> Body:
        env = self._env(params["computeEnvironment"])
        name = env.detail["computeEnvironmentName"]
        if name in self._config_envs:
            raise ClientException(
                f"Cannot delete, compute environment {name} is declared in the server's"
                " configuration: remove it there"
            )
        if env.detail["state"] != "DISABLED":
            raise ClientException(f"Cannot delete, compute environment {name} is not DISABLED")
        arn = env.detail["computeEnvironmentArn"]
        if any(arn in rules.order_arns(queue) for queue in self._queues.values()):
            raise ClientException("Cannot delete, found existing JobQueue relationship")
        self._catalog.delete("compute_environment", name)
        del self._envs[name]
        self._scheduling.compute_changed(None, name, False)
        return {}

    # -- job queues -----------------------------------------------------------------------
    def create_job_queue(self, params: Params) -> Body:
        name = rules.checked_name("jobQueueName", params["jobQueueName"])
        if name in self._queues:
            raise ClientException("Object already exists")
        rules.refuse_queue_extras(params)
        detail: Body = {
            "jobQueueName": name,
            "jobQueueArn": self.arns.arn("job-queue", name),
            "state": params.get("state", "ENABLED"),
            "status": "VALID",
            "statusReason": _JQ_HEALTHY,
            "priority": rules.checked_priority(params["priority"]),
            "computeEnvironmentOrder": self._checked_order(params.get("computeEnvironmentOrder")),
            "tags": rules.checked_tags({}, params.get("tags") or {}),
        }
        for key in ("schedulingPolicyArn", "jobQueueType"):
            if key in params:
                detail[key] = params[key]
        self._put_queue(detail)
        self._scheduling.queue_changed(self._queue_model(detail), name)
        return {"jobQueueName": name, "jobQueueArn": detail["jobQueueArn"]}

    def describe_job_queues(self, params: Params) -> Body:
        names = sorted(self._queues)
        refs = params.get("jobQueues")
        if refs is not None:
            wanted = {self.arns.name_of("job-queue", ref) for ref in refs}
            names = [name for name in names if name in wanted]
        page, token = rules.page([(name,) for name in names], params)
        return rules.with_token(
            {"jobQueues": [rules.public(self._queues[key[0]]) for key in page]}, token
        )

    def update_job_queue(self, params: Params) -> Body:
        old = self._queues[self.queue(params["jobQueue"])["jobQueueName"]]
        name = old["jobQueueName"]
        rules.refuse_queue_extras(params)
        detail = copy.deepcopy(old)
        if "state" in params:
            detail["state"] = params["state"]
        if "priority" in params:
            detail["priority"] = rules.checked_priority(params["priority"])
        if "computeEnvironmentOrder" in params:
            detail["computeEnvironmentOrder"] = self._checked_order(
                params["computeEnvironmentOrder"]
            )
        if "schedulingPolicyArn" in params:
            detail["schedulingPolicyArn"] = params["schedulingPolicyArn"]
        self._put_queue(detail)
        model = self._queue_model(detail)
        if model != self._queue_model(old):
            self._scheduling.queue_changed(model, name)
        return {"jobQueueName": name, "jobQueueArn": detail["jobQueueArn"]}

    def delete_job_queue(self, params: Params) -> Body:
        name = self.queue(params["jobQueue"])["jobQueueName"]
        if name in self._config_queues:
            raise ClientException(
                f"Cannot delete, job queue {name} is declared in the server's configuration:"
                " remove it there"
            )
        if self._queues[name]["state"] != "DISABLED":
            raise ClientException(f"Cannot delete, job queue {name} is not DISABLED")
        self._catalog.delete("job_queue", name)
        del self._queues[name]
        self._scheduling.queue_changed(None, name)
        return {}

    # -- job definitions ------------------------------------------------------------------
    def register_job_definition(self, params: Params) -> Body:
        name = rules.checked_name("jobDefinitionName", params["jobDefinitionName"])
        body = definitions.checked(params)
        body["tags"] = rules.checked_tags({}, params.get("tags") or {})
        revision = max(self._defs.get(name, {}), default=0) + 1
        arn = self.arns.arn("job-definition", f"{name}:{revision}")
        body = {
            "jobDefinitionName": name,
            "jobDefinitionArn": arn,
            "revision": revision,
            "status": "ACTIVE",
            **body,
        }
        self._catalog.put("job_definition", f"{name}:{revision}", arn, body)
        self._defs.setdefault(name, {})[revision] = body
        return {"jobDefinitionName": name, "jobDefinitionArn": arn, "revision": revision}

    def describe_job_definitions(self, params: Params) -> Body:
        status = params.get("status")
        if status is not None and status not in ("ACTIVE", "INACTIVE"):
            raise ClientException(f"status must be ACTIVE or INACTIVE, not {status}")
        wanted: set[tuple[str, int | None]] | None = None
        if params.get("jobDefinitions") is not None:
            wanted = set()
            for ref in params["jobDefinitions"]:
                parsed = self._def_ref(ref)
                if parsed is not None:
                    wanted.add(parsed)
        only_name = params.get("jobDefinitionName")
        # Only the names and revisions asked for are looked at: the service describes a
        # job's definition by its ARN for every job of a DescribeJobs, and walking every
        # revision of every name each time made 100 jobs cost as much as 100 listings.
        names: list[str] = (
            sorted(self._defs)
            if wanted is None
            else sorted({name for name, _ in wanted if name in self._defs})
        )
        keys: list[tuple[str | int, ...]] = []
        for name in names:
            if only_name is not None and name != only_name:
                continue
            revisions = self._defs[name]
            if wanted is None or (name, None) in wanted:
                chosen: list[int] = sorted(revisions, reverse=True)  # newest first
            else:
                chosen = sorted(
                    (r for n, r in wanted if n == name and r in revisions), reverse=True
                )
            for revision in chosen:
                body = revisions[revision]
                if status is not None and body["status"] != status:
                    continue
                keys.append((name, -revision))
        page, token = rules.page(keys, params)
        found = [rules.public(self._defs[str(key[0])][-int(key[1])]) for key in page]
        return rules.with_token({"jobDefinitions": found}, token)

    def deregister_job_definition(self, params: Params) -> Body:
        ref = params["jobDefinition"]
        parsed = self._def_ref(ref)
        if parsed is not None and parsed[1] is None:
            raise ClientException(
                f"jobDefinition {ref}: give NAME:REVISION or the job definition's ARN"
            )
        body = None if parsed is None else self._defs.get(parsed[0], {}).get(parsed[1] or 0)
        if body is None:
            raise ClientException(f"JobDefinition {ref} does not exist")
        if body["status"] != "INACTIVE":
            changed = {**body, "status": "INACTIVE"}
            name = f"{body['jobDefinitionName']}:{body['revision']}"
            self._catalog.put("job_definition", name, body["jobDefinitionArn"], changed)
            self._defs[body["jobDefinitionName"]][body["revision"]] = changed
        return {}

    # -- tags -------------------------------------------------------------------------------
    def tag_resource(self, params: Params) -> Body:
        arn, tags = params["resourceArn"], params["tags"]
        job_id = self._job_of(arn)
        if job_id is not None:
            current = self._job_current_tags(job_id, arn)
            rules.checked_tags(current, tags)
            assert self._job_tags is not None
            self._job_tags.set(job_id, dict(tags))
            return {}
        self._retag(arn, lambda current: rules.checked_tags(current, tags))
        return {}

    def untag_resource(self, params: Params) -> Body:
        arn, keys = params["resourceArn"], list(params["tagKeys"])
        for key in keys:
            if key.lower().startswith("aws:"):
                raise ClientException(f"tag key {key}: the aws: prefix is reserved for AWS use")
        job_id = self._job_of(arn)
        if job_id is not None:
            self._job_current_tags(job_id, arn)
            assert self._job_tags is not None
            self._job_tags.remove(job_id, keys)
            return {}
        self._retag(arn, lambda current: {k: v for k, v in current.items() if k not in keys})
        return {}

    def list_tags_for_resource(self, params: Params) -> Body:
        arn = params["resourceArn"]
        job_id = self._job_of(arn)
        if job_id is not None:
            return {"tags": dict(self._job_current_tags(job_id, arn))}
        kind, name = self._resource(arn)
        return {"tags": dict(self._body(kind, name).get("tags", {}))}

    # -- helpers -----------------------------------------------------------------------------
    def _env(self, ref: str) -> _Env:
        name = self.arns.name_of("compute-environment", ref)
        if name is None or name not in self._envs:
            raise ClientException(f"ComputeEnvironment {ref} not found.")
        return self._envs[name]

    def _def_ref(self, ref: str) -> tuple[str, int | None] | None:
        """(name, revision or None) of a job definition's name, `NAME:REVISION` or
        ARN; None for an ARN that is not one of this server's definitions."""
        text = self.arns.name_of("job-definition", ref)
        if text is None:
            return None
        name, colon, revision = text.rpartition(":")
        if colon and revision.isdigit():
            return name, int(revision)
        return text, None

    def _put_env(self, env: _Env) -> None:
        name = env.detail["computeEnvironmentName"]
        body = env.detail
        if env.declared is not None:
            body = {**body, PRIVATE: {"compute": _compute_to_json(env.declared)}}
        self._catalog.put("compute_environment", name, env.detail["computeEnvironmentArn"], body)
        self._envs[name] = env

    def _put_queue(self, detail: Body) -> None:
        name = detail["jobQueueName"]
        self._catalog.put("job_queue", name, detail["jobQueueArn"], detail)
        self._queues[name] = detail

    def _checked_order(self, entries: Sequence[Mapping[str, Any]] | None) -> list[Body]:
        """A queue's computeEnvironmentOrder: 1 to 3 existing environments of one kind,
        each once, at distinct orders; returned sorted, environments as ARNs."""
        if not entries or len(entries) > _MAX_ORDER:
            raise ClientException(
                "computeEnvironmentOrder must have between 1 and 3 compute environments"
            )
        found: list[tuple[int, str, str]] = []
        for entry in entries:
            env = self._env(entry["computeEnvironment"])
            found.append(
                (entry["order"], env.detail["computeEnvironmentArn"], rules.kind(env.detail))
            )
        if len({order for order, _, _ in found}) != len(found):
            raise ClientException("computeEnvironmentOrder: each order must be different")
        if len({arn for _, arn, _ in found}) != len(found):
            raise ClientException("computeEnvironmentOrder: a compute environment is listed twice")
        if len({kind for _, _, kind in found}) > 1:
            raise ClientException(
                "computeEnvironmentOrder: compute environments of a job queue must all be"
                " EC2 (EC2 or SPOT) or all Fargate (FARGATE or FARGATE_SPOT)"
            )
        return [{"order": o, "computeEnvironment": arn} for o, arn, _ in sorted(found)]

    def _compute_model(self, env: _Env) -> ComputeEnv:
        """An environment as the scheduler runs it: a declared one as the config says;
        an API-created one on this machine, MANAGED with `maxvCpus` vCPUs (SPOT
        marked spot), UNMANAGED with `unmanagedvCpus` or this machine's count."""
        if env.declared is not None:
            return env.declared
        detail = env.detail
        machine_vcpus, memory, gpus = self._machine
        spot = False
        if detail["type"] == "MANAGED":
            resources = detail["computeResources"]
            vcpus = int(resources["maxvCpus"])
            spot = resources["type"] in ("SPOT", "FARGATE_SPOT")
        else:
            vcpus = int(detail.get("unmanagedvCpus") or machine_vcpus)
        host = Host(name="localhost", vcpus=vcpus, memory=memory, gpus=gpus)
        return ComputeEnv(
            name=detail["computeEnvironmentName"],
            type="local",
            vcpus=vcpus,
            memory=memory,
            gpus=gpus,
            managed=detail["type"] == "MANAGED",
            spot=spot,
            hosts=(host,),
        )

    def _queue_model(self, detail: Body) -> Queue:
        names = []
        for entry in detail["computeEnvironmentOrder"]:
            parsed = self.arns.parse(entry["computeEnvironment"])
            names.append(parsed[1] if parsed else entry["computeEnvironment"])
        return Queue(
            name=detail["jobQueueName"],
            priority=int(detail["priority"]),
            compute=tuple(names),
            state="disabled" if detail["state"] == "DISABLED" else "enabled",
        )

    def _declared_detail(self, ce: ComputeEnv, tags: dict[str, str]) -> Body:
        detail: Body = {
            "computeEnvironmentName": ce.name,
            "computeEnvironmentArn": self.arns.arn("compute-environment", ce.name),
            "type": "MANAGED" if ce.managed else "UNMANAGED",
            "state": "ENABLED",
            "status": "VALID",
            "statusReason": _CE_HEALTHY,
            "containerOrchestrationType": "ECS",
            "tags": tags,
        }
        if ce.managed:
            detail["computeResources"] = {
                "type": "SPOT" if ce.spot else "EC2",
                "minvCpus": 0,
                "maxvCpus": ce.vcpus,
                "desiredvCpus": 0,
            }
        else:
            detail["unmanagedvCpus"] = ce.vcpus
        return detail

    def _job_of(self, arn: str) -> str | None:
        parsed = self.arns.parse(arn)
        return parsed[1] if parsed is not None and parsed[0] == "job" else None

    def _job_current_tags(self, job_id: str, arn: str) -> Mapping[str, str]:
        current = None if self._job_tags is None else self._job_tags.get(job_id)
        if current is None:
            raise ClientException(f"Resource {arn} not found.")
        return current

    def _resource(self, arn: str) -> tuple[str, str]:
        parsed = self.arns.parse(arn)
        if parsed is not None:
            kind, name = parsed
            if kind == "compute-environment" and name in self._envs:
                return parsed
            if kind == "job-queue" and name in self._queues:
                return parsed
            if kind == "job-definition":
                ref = self._def_ref(arn)
                if ref is not None and ref[1] in self._defs.get(ref[0], {}):
                    return parsed
        raise ClientException(f"Resource {arn} not found.")

    def _body(self, kind: str, name: str) -> Body:
        if kind == "compute-environment":
            return self._envs[name].detail
        if kind == "job-queue":
            return self._queues[name]
        definition, _, revision = name.rpartition(":")
        return self._defs[definition][int(revision)]

    def _retag(self, arn: str, change: Callable[[dict[str, str]], dict[str, str]]) -> None:
        kind, name = self._resource(arn)
        body = copy.deepcopy(self._body(kind, name))
        body["tags"] = change(dict(body.get("tags", {})))
        if kind == "compute-environment":
            self._put_env(_Env(body, self._envs[name].declared))
        elif kind == "job-queue":
            self._put_queue(body)
        else:
            self._catalog.put("job_definition", name, body["jobDefinitionArn"], body)
            self._defs[body["jobDefinitionName"]][body["revision"]] = body


# -- a declared environment in the catalog --------------------------------------------
def _compute_to_json(ce: ComputeEnv) -> Body:
    return {
        "name": ce.name,
        "type": ce.type,
        "vcpus": ce.vcpus,
        "memory": ce.memory,
        "gpus": ce.gpus,
        "placement": ce.placement,
        "managed": ce.managed,
        "spot": ce.spot,
        "bid_percentage": ce.bid_percentage,
        "interruption_rate": ce.interruption_rate,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in ce.options.items()},
        "hosts": [
            {"name": h.name, "vcpus": h.vcpus, "memory": h.memory, "gpus": h.gpus,
             "address": h.address, "port": h.port, "user": h.user}
            for h in ce.hosts
        ],
    }  # fmt: skip


def _compute_from_json(data: Mapping[str, Any]) -> ComputeEnv:
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in data["options"].items()}
    return ComputeEnv(
        name=data["name"],
        type=data["type"],
        vcpus=data["vcpus"],
        memory=data["memory"],
        gpus=data["gpus"],
        placement=data["placement"],
        managed=data["managed"],
        spot=data["spot"],
        bid_percentage=data["bid_percentage"],
        interruption_rate=data["interruption_rate"],
        options=MappingProxyType(options),
        hosts=tuple(Host(**host) for host in data["hosts"]),
    )
