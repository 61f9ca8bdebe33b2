"""flowbatch.server.jobs and .listing: SubmitJob made a JobSpec with AWS's rules, jobs made AWS's
JobDetail and JobSummary (checked against botocore's model), and ListJobs over a real
store: filters, statuses, array children, and nextToken pagination."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from shape_check_jobs import problems

from flowbatch.lang.model import Argv, Dependency, DepKind, JobSpec, Pipeline, RetryRule
from flowbatch.lang.template import Context, render_command
from flowbatch.run.state import JobEvent, JobState
from flowbatch.server import jobs, listing
from flowbatch.server.errors import ClientException
from flowbatch.server.jobs import MISSING, Missing
from flowbatch.store.jobstore import Store

S = JobState
ARN = "arn:aws:batch:us-east-1:000000000000"
KEY = b"k" * 32
T0 = 1_767_268_800.0


def definition(**container: Any) -> dict[str, Any]:
    props = {"image": "busybox", "command": ["echo", "Ref::who"], **container}
    return {
        "jobDefinitionName": "hello",
        "jobDefinitionArn": f"{ARN}:job-definition/hello:3",
        "revision": 3,
        "status": "ACTIVE",
        "type": "container",
        "parameters": {"who": "world"},
        "containerProperties": {k: v for k, v in props.items() if v is not None},
    }


def request(**members: Any) -> dict[str, Any]:
    return {"jobName": "j", "jobQueue": "q", "jobDefinition": "hello", **members}


SIZES: dict[str, int | None] = {"single": None, "arr5": 5, "arr3": 3}


def lookup(job_id: str) -> int | Missing | None:
    return SIZES.get(job_id, MISSING)


def spec(req: Mapping[str, Any] | None = None, defn: Mapping[str, Any] | None = None) -> JobSpec:
    return jobs.job_spec(
        request() if req is None else req,
        definition() if defn is None else defn,
        job_id="id-1",
        queue="q",
        workdir="/srv/work",
        lookup=lookup,
    )


def refused(req: Mapping[str, Any], defn: Mapping[str, Any] | None = None) -> str:
    with pytest.raises(ClientException) as e:
        spec(req, defn)
    assert e.value.status == 400 and e.value.code == "ClientException"
    return e.value.message


# -- the job --------------------------------------------------------------------------


def test_a_submitted_job_is_its_definition_with_its_overrides() -> None:
    s = spec(
        request(
            parameters={"who": "you"},
            containerOverrides={
                "environment": [{"name": "B", "value": "2"}, {"name": "A", "value": "x"}],
                "resourceRequirements": [{"type": "MEMORY", "value": "512"}],
            },
            schedulingPriorityOverride=7,
            tags={"team": "a"},
            propagateTags=True,
        ),
        {
            **definition(
                environment=[{"name": "A", "value": "1"}],
                resourceRequirements=[
                    {"type": "VCPU", "value": "2"},
                    {"type": "MEMORY", "value": "4096"},
                    {"type": "GPU", "value": "1"},
                ],
            ),
            "tags": {"team": "def", "cost": "c"},
        },
    )
    assert s.name == "id-1" and s.queue == "q" and s.workdir == "/srv/work"
    assert s.command == ("echo", "you") and isinstance(s.command, Argv)
    assert s.image == "busybox" and (s.vcpus, s.memory, s.gpus) == (2, 512, 1)
    assert dict(s.env) == {"A": "x", "B": "2"}
    assert dict(s.parameters) == {"who": "you"}
    assert s.priority == 7 and s.definition == "hello:3"
    assert dict(s.tags) == {"team": "a", "cost": "c"}  # propagated, the job's winning
    assert s.array_size is None and s.after == () and s.timeout is None


def test_the_definition_default_resources_and_a_definition_without_image() -> None:
    s = spec(request(), definition(image=None))
    assert s.image is None  # runs on the compute environment, without a container
    assert (s.vcpus, s.memory, s.gpus) == (1, 2048, 0)
    assert dict(s.tags) == {}  # no propagateTags: the definition's stay its own


def test_resource_requirements_win_over_the_legacy_fields_as_on_aws() -> None:
    legacy = definition(vcpus=4, memory=1000)
    # The legacy override counts where the definition is legacy too ...
    s = spec(request(containerOverrides={"vcpus": 8, "memory": 3000}), legacy)
    assert (s.vcpus, s.memory) == (8, 3000)
    # ... and is ignored where the definition has resourceRequirements (AWS)
    modern = definition(resourceRequirements=[{"type": "VCPU", "value": "0.5"}], memory=100)
    s = spec(request(containerOverrides={"vcpus": 8, "memory": 3000}), modern)
    assert (s.vcpus, s.memory) == (0.5, 3000)
    s = spec(
        request(containerOverrides={"resourceRequirements": [{"type": "VCPU", "value": "3"}]}),
        modern,
    )
    assert s.vcpus == 3


@pytest.mark.parametrize(
    ("reqs", "words"),
    [
        ([{"type": "VCPU", "value": "0"}], "VCPU must be greater than 0"),
        ([{"type": "VCPU", "value": "nan"}], "VCPU value must be a number"),
        ([{"type": "MEMORY", "value": "2"}], "MEMORY must be a whole number of MiB"),
        ([{"type": "GPU", "value": "1.5"}], "GPU must be a whole number"),
        ([{"type": "VCPU", "value": "1"}, {"type": "VCPU", "value": "2"}], "more than once"),
    ],
)
def test_bad_resource_values_are_refused(reqs: list[dict[str, str]], words: str) -> None:
    assert words in refused(request(containerOverrides={"resourceRequirements": reqs}))


def test_environment_names_aws_reserves_are_refused() -> None:
    message = refused(
        request(containerOverrides={"environment": [{"name": "AWS_BATCH_JOB_ID", "value": "x"}]})
    )
    assert message.startswith("Error executing request, Exception : ")
    assert "AWS_BATCH_JOB_ID" in message and "reserved" in message


def on_receipt(req: Mapping[str, Any]) -> str:
    with pytest.raises(ClientException) as e:
        jobs.check_submit(req)
    assert e.value.status == 400 and e.value.code == "ClientException"
    return e.value.message


ENV_EQ = [{"name": "A=B", "value": "x"}]


@pytest.mark.parametrize(
    ("req", "words"),
    [
        # Larger than the store's integers: a 500 once the job was written.
        ({"resourceRequirements": [{"type": "MEMORY", "value": "1e30"}]},
         "MEMORY must be at most 2147483647"),
        ({"resourceRequirements": [{"type": "GPU", "value": "99999999999999999999"}]},
         "GPU must be at most 2147483647"),
        ({"resourceRequirements": [{"type": "VCPU", "value": "1e300"}]},
         "VCPU must be at most 2147483647"),
        # Under a definition's least: any number of jobs at once on two vCPUs.
        ({"resourceRequirements": [{"type": "VCPU", "value": "1e-300"}]},
         "VCPU must be at least 0.25, got 1e-300"),
        # No process can be given it: the job failed as it started ("executor error").
        ({"environment": ENV_EQ}, "Environment variable name A=B cannot contain '='"),
    ],
)  # fmt: skip
def test_what_a_submit_job_is_refused_on_receipt(req: dict[str, Any], words: str) -> None:
    assert words in on_receipt(request(containerOverrides=req))


def test_a_jobs_tags_are_checked_on_receipt_as_tag_resource_checks_them() -> None:
    assert "the aws: prefix is reserved" in on_receipt(request(tags={"aws:x": "y"}))
    jobs.check_submit(request(tags={"team": "a"}, containerOverrides={"environment": []}))


def test_a_request_kept_before_the_rules_on_receipt_is_still_a_job(store: Store) -> None:
    # A kept request is made a job again at every restart and shown by every
    # DescribeJobs: refusing it there would keep the server from starting.
    kept = request(
        tags={"aws:x": "y"},
        containerOverrides={
            "environment": ENV_EQ,
            "resourceRequirements": [{"type": "VCPU", "value": "0.1"}],
        },
    )
    made = spec(kept)
    assert made.vcpus == 0.1 and made.env["A=B"] == "x" and made.tags == {"aws:x": "y"}
    svc = Service(store)
    svc.submit([("kept", kept, T0)])
    shown = detail_of(store, svc, "kept")
    assert shown["container"]["environment"] == [{"name": "A=B", "value": "x"}]
    assert shown["container"]["resourceRequirements"][0] == {"type": "VCPU", "value": "0.1"}


def test_the_job_timeout_wins_and_sixty_seconds_is_the_least() -> None:
    defn = {**definition(), "timeout": {"attemptDurationSeconds": 600}}
    assert spec(request(), defn).timeout == 600
    assert spec(request(timeout={"attemptDurationSeconds": 60}), defn).timeout == 60
    assert "at least 60" in refused(request(timeout={"attemptDurationSeconds": 59}))


# -- commands and Ref:: -----------------------------------------------------------------


def argv(command: list[str], parameters: Mapping[str, str] | None = None) -> tuple[str, ...]:
    req = request(containerOverrides={"command": command}, parameters=parameters or {})
    return tuple(spec(req).command)


def test_ref_placeholders_are_filled_and_an_unknown_one_is_left_as_aws_leaves_it() -> None:
    assert argv(["cp", "Ref::src", "--to=Ref::dst", "Ref::nope"], {"src": "a b", "dst": "x"}) == (
        "cp",
        "a b",
        "--to=x",
        "Ref::nope",
    )
    # A value is text: one that spells a placeholder is not filled in again.
    assert argv(["echo", "Ref::a", "Ref::b"], {"a": "Ref::b", "b": "B"}) == (
        "echo",
        "Ref::b",
        "B",
    )


def test_a_submitted_command_is_no_template_for_the_runner() -> None:
    # Jinja's braces, a shell's `${#x}` and an unresolved placeholder mean on flowbatch
    # what they mean on AWS: the runner renders an Argv to itself.
    command = spec(
        request(containerOverrides={"command": ["sh", "-c", "x=abc; echo ${#x} {{y}} Ref::no"]})
    ).command
    assert isinstance(command, Argv)
    rendered = render_command(command, Context(params={}, job_name="id-1"), {})
    assert rendered == ("sh", "-c", "x=abc; echo ${#x} {{y}} Ref::no")
    out = subprocess.run(list(rendered), capture_output=True, text=True, check=True).stdout
    assert out == "3 {{y}} Ref::no\n"


def test_a_value_in_a_shells_script_stays_one_word_and_never_shell_syntax(tmp_path: Path) -> None:
    evil = "x; touch pwned; $(touch pwned2) `touch pwned3`"
    command = argv(["sh", "-c", "printf '%s\\n' Ref::v"], {"v": evil})
    out = subprocess.run(list(command), capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout == evil + "\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "wrapper",
    [
        ["nice"],
        ["nohup"],
        ["timeout", "60"],
        ["setsid"],
        ["stdbuf", "-oL"],
        ["flock", "l"],
        ["env", "-i", "A=1"],
        ["xargs", "-0"],
    ],
)
def test_a_value_in_the_script_of_a_shell_behind_a_wrapper_is_never_shell_syntax(
    tmp_path: Path, wrapper: list[str]
) -> None:
    evil = "x; touch pwned; $(touch pwned2)"
    command = argv([*wrapper, "sh", "-c", "printf '%s\\n' Ref::v"], {"v": evil})
    out = subprocess.run(list(command), capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout == evil + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == (["l"] if "flock" in wrapper else [])


def test_a_placeholder_the_shell_would_read_inside_quotes_or_code_is_refused() -> None:
    req = request(
        containerOverrides={"command": ["sh", "-c", "echo 'Ref::v'"]}, parameters={"v": "x"}
    )
    assert "inside single quotes" in refused(req)
    req = request(
        containerOverrides={"command": ["python3", "-c", "print('Ref::v')"]},
        parameters={"v": "x"},
    )
    assert "program of `python3 -c`" in refused(req)
    # A placeholder with no parameter is left as it is, so nothing is inserted there.
    assert argv(["sh", "-c", "echo 'Ref::other'"], {"v": "x"}) == (
        "sh",
        "-c",
        "echo 'Ref::other'",
    )


def test_the_shell_is_found_in_the_command_as_it_will_run(tmp_path: Path) -> None:
    # The program is itself a placeholder: its value makes the next argument a script.
    command = argv(["Ref::shell", "-c", "echo Ref::v"], {"shell": "sh", "v": "$(touch x)"})
    assert command == ("sh", "-c", "echo '$(touch x)'")
    req = request(
        containerOverrides={"command": ["Ref::py", "-c", "print(Ref::v)"]},
        parameters={"py": "python3", "v": "1"},
    )
    assert "program of `python3 -c`" in refused(req)


def test_a_nul_character_no_program_can_receive_is_refused() -> None:
    assert "NUL" in refused(request(parameters={"who": "a\0b"}))
    env = [{"name": "A", "value": "a\0b"}]
    assert "NUL" in refused(request(containerOverrides={"environment": env}))


def test_commands_aws_refuses_and_jobs_without_a_command() -> None:
    assert "Command field cannot have empty strings" in refused(
        request(containerOverrides={"command": ["echo", ""]})
    )
    assert "needs a command" in refused(request(), definition(command=None))


def test_job_names_aws_accepts() -> None:
    assert spec(request(jobName="a" * 128)).name == "id-1"
    assert spec(request(jobName="0-a_B")).name == "id-1"
    for name in ("a" * 129, "-a", "_a", "a b", "a.b", ""):
        assert refused(request(jobName=name)).endswith("Job name should match valid pattern")


def test_other_kinds_of_job_are_refused_by_name() -> None:
    assert "nodeOverrides" in refused(request(nodeOverrides={"numNodes": 2}))
    assert "container jobs only" in refused(request(), {**definition(), "type": "multinode"})


# -- retry strategies -------------------------------------------------------------------


def test_a_retry_strategy_and_its_rules_as_aws_reads_them() -> None:
    s = spec(
        request(
            retryStrategy={
                "attempts": 3,
                "evaluateOnExit": [
                    {"onExitCode": "13*", "action": "exit"},
                    {"onStatusReason": "Host EC2*", "onReason": "Out of: mem.", "action": "Retry"},
                    {"onExitCode": "*", "action": "EXIT"},
                ],
            }
        )
    )
    assert s.retry.attempts == 3
    assert s.retry.rules == (
        RetryRule(action="exit", on_exit_code="13*"),
        RetryRule(action="retry", on_status_reason="Host EC2*", on_reason="Out of: mem."),
        RetryRule(action="exit", on_exit_code="*"),
    )
    # The job's strategy replaces the definition's.
    defn = {**definition(), "retryStrategy": {"attempts": 5}}
    assert spec(request(), defn).retry.attempts == 5
    assert spec(request(retryStrategy={"attempts": 2}), defn).retry.attempts == 2


@pytest.mark.parametrize(
    ("strategy", "words"),
    [
        ({"evaluateOnExit": [{"action": "RETRY"}]}, "RetryAttempts must be provided"),
        ({"attempts": 0}, "between 1 and 10"),
        ({"attempts": 11}, "between 1 and 10"),
        ({"attempts": 2, "evaluateOnExit": [{"action": "EXIT"}] * 6}, "at most 5"),
        ({"attempts": 2, "evaluateOnExit": [{"action": "stop"}]}, "RETRY or EXIT"),
        ({"attempts": 2, "evaluateOnExit": [{"onExitCode": "1a", "action": "EXIT"}]}, "1a"),
        ({"attempts": 2, "evaluateOnExit": [{"onExitCode": "1*2", "action": "EXIT"}]}, "1*2"),
        ({"attempts": 2, "evaluateOnExit": [{"onReason": "a-b", "action": "EXIT"}]}, "a-b"),
        ({"attempts": 2, "evaluateOnExit": [{"onStatusReason": "", "action": "EXIT"}]}, "``"),
        (
            {"attempts": 2, "evaluateOnExit": [{"onExitCode": "1" * 513, "action": "EXIT"}]},
            "1 to 512 digits",
        ),
    ],
)
def test_retry_strategies_aws_refuses(strategy: dict[str, Any], words: str) -> None:
    assert words in refused(request(retryStrategy=strategy))


# -- arrays and dependencies ------------------------------------------------------------


def test_array_sizes_from_two_to_ten_thousand() -> None:
    assert spec(request(arrayProperties={"size": 10_000})).array_size == 10_000
    assert spec(request(arrayProperties={"size": 2})).array_size == 2
    for size in (1, 10_001):
        assert "between 2 and 10000" in refused(request(arrayProperties={"size": size}))


def test_dependencies_of_every_kind() -> None:
    s = spec(
        request(
            arrayProperties={"size": 5},
            dependsOn=[
                {"jobId": "single"},
                {"jobId": "arr3:2"},
                {"jobId": "arr5", "type": "N_TO_N"},
                {"type": "SEQUENTIAL"},
                {"jobId": "single"},
            ],
        )
    )
    assert s.after == (
        Dependency(job="single"),
        Dependency(job="arr3", kind=DepKind.ELEMENT, index=2),
        Dependency(job="arr5", kind=DepKind.N_TO_N),
    )
    assert s.sequential
    # SEQUENTIAL may name the job itself (AWS)
    own = request(arrayProperties={"size": 2}, dependsOn=[{"jobId": "id-1", "type": "SEQUENTIAL"}])
    assert spec(own).sequential


@pytest.mark.parametrize(
    ("req", "words"),
    [
        (
            request(dependsOn=[{"jobId": "single"}] * 21),
            "Error executing request, Exception : Job cannot have more than 20 dependencies",
        ),
        (request(dependsOn=[{"jobId": "arr5", "type": "N_TO_N"}]), "same size"),
        (
            request(arrayProperties={"size": 3}, dependsOn=[{"jobId": "arr5", "type": "N_TO_N"}]),
            "this job's is 3, job arr5's is 5",
        ),
        (
            request(arrayProperties={"size": 3}, dependsOn=[{"jobId": "single", "type": "N_TO_N"}]),
            "same size",
        ),
        (
            request(arrayProperties={"size": 3}, dependsOn=[{"jobId": "arr3:1", "type": "N_TO_N"}]),
            "not one of its children",
        ),
        (request(dependsOn=[{"type": "SEQUENTIAL"}]), "only valid for array jobs"),
        (
            request(
                arrayProperties={"size": 3}, dependsOn=[{"jobId": "arr5", "type": "SEQUENTIAL"}]
            ),
            "names no job",
        ),
        (request(dependsOn=[{"jobId": "arr3:3"}]), "no child 3: job arr3 has 3 children"),
        (request(dependsOn=[{"jobId": "single:0"}]), "job single is not an array job"),
        (
            request(dependsOn=[{"jobId": "gone"}, {"jobId": "single"}, {"jobId": "lost:4"}]),
            "Job ID(s) not found: gone, lost:4",
        ),
    ],
)
def test_dependencies_aws_refuses(req: dict[str, Any], words: str) -> None:
    assert words in refused(req)


def test_scheduling_priority_from_the_job_or_the_definition() -> None:
    defn = {**definition(), "schedulingPriority": 40}
    assert spec(request(), defn).priority == 40
    assert spec(request(schedulingPriorityOverride=0), defn).priority == 0
    assert "between 0 and 9999" in refused(request(schedulingPriorityOverride=10_000))


# -- log streams ------------------------------------------------------------------------


def test_log_stream_names_are_awss_shape_and_name_their_attempt() -> None:
    name = jobs.log_stream_name("hello", "0b4f-11", 2)
    assert name == "hello/default/0b4f-11.2"
    assert jobs.parse_log_stream(name) == ("hello", "0b4f-11", 2)
    child = jobs.log_stream_name("hello", "0b4f-11:7", 1)
    assert ":" not in child  # CloudWatch refuses `:` in a stream's name
    assert jobs.parse_log_stream(child) == ("hello", "0b4f-11:7", 1)
    assert jobs.parse_log_stream("hello/other/x.1") is None


# -- a store the way the service fills it -----------------------------------------------


class Service:
    """Writes jobs as the service does: a JobSpec per SubmitJob through `begin_run`,
    the user's jobName in `jobs.name`, the request in `submissions`."""

    RUN = "server"

    def __init__(self, store: Store) -> None:
        self.store = store
        self.requests: dict[str, dict[str, Any]] = {}
        self.begun = False

    def submit(
        self,
        jobs_: list[tuple[str, dict[str, Any], float]],
        status: Mapping[str, JobState] | None = None,
    ) -> None:
        """Submit `jobs_` (id, request, created at); `status` sets where some already
        are, straight in their rows (for many jobs at once; `move` goes by events)."""
        status = status or {}
        specs = {}
        for job_id, req, _ in jobs_:
            specs[job_id] = spec_for(job_id, req)
            self.requests[job_id] = req
        pipeline = Pipeline(path="server", params={}, computes={}, queues={}, jobs=specs)
        ids = {i: i for i in SIZES} | {i: i for i in specs}
        run = self.RUN if not self.begun else f"{self.RUN}-{len(self.requests)}"
        self.store.begin_run(run, pipeline, ids, created_at=T0)
        self.begun = True
        conn = self.store._conn  # the service's writes are the lead's; these stand in
        with conn:
            conn.executemany(
                "UPDATE jobs SET name = ?, created_at = ?, run_id = ?, status = ? WHERE job_id = ?",
                [
                    (req["jobName"], t, self.RUN, s.value if (s := status.get(i)) else None, i)
                    for i, req, t in jobs_
                ],
            )
            conn.executemany(
                "INSERT INTO submissions (job_id, run_id, request, definition, created_at)"
                " VALUES (?, ?, '{}', ?, ?)",  # the request is read back from self.requests
                [(i, self.RUN, definition_arn(req), t) for i, req, t in jobs_],
            )

    def move(self, job_id: str, *states: JobState, index: int | None = None, **kw: Any) -> None:
        for n, state in enumerate(states):
            self.store.emit(
                JobEvent(
                    run_id=self.RUN,
                    job_id=job_id if index is None else f"{job_id}:{index}",
                    name=job_id,
                    index=index,
                    state=state,
                    time=T0 + 10 + n,
                    **(kw if n == len(states) - 1 else {}),
                )
            )


def definition_arn(req: Mapping[str, Any]) -> str:
    return f"{ARN}:job-definition/{req['jobDefinition']}"


def spec_for(job_id: str, req: Mapping[str, Any]) -> JobSpec:
    return jobs.job_spec(
        req, definition(), job_id=job_id, queue=req["jobQueue"], workdir="/w", lookup=lookup
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "state") as s:
        yield s


def detail_of(store: Store, svc: Service, job_id: str) -> dict[str, Any]:
    record = store.job(job_id)
    req = svc.requests[job_id.split(":")[0]]
    return jobs.job_detail(
        record,
        job_arn=f"{ARN}:job/{job_id}",
        arn_of_queue=f"{ARN}:job-queue/{req['jobQueue']}",
        arn_of_definition=definition_arn(req),
        request=req,
        definition=definition(),
    )


def test_job_details_fit_awss_shape_and_say_what_happened(store: Store) -> None:
    svc = Service(store)
    plain = request(
        jobName="plain",
        jobDefinition="hello:3",
        parameters={"who": "there"},
        timeout={"attemptDurationSeconds": 90},
        tags={"t": "1"},
        retryStrategy={"attempts": 2, "evaluateOnExit": [{"onExitCode": "1", "action": "retry"}]},
    )
    array = request(
        jobName="arr",
        jobDefinition="hello:3",
        arrayProperties={"size": 3},
        dependsOn=[{"jobId": "plain"}, {"type": "SEQUENTIAL"}],
    )
    SIZES["plain"] = None
    try:
        svc.submit([("plain", plain, T0), ("arr", array, T0 + 1)])
    finally:
        del SIZES["plain"]
    svc.move("plain", S.RUNNABLE, S.STARTING, S.RUNNING, attempt=1)
    svc.move(  # attempt 1 fails and is retried
        "plain", S.RUNNABLE, exit_code=1, attempt=1, attempt_reason="Essential container exited"
    )
    svc.move("plain", S.STARTING, S.RUNNING, attempt=2)
    svc.move("plain", S.SUCCEEDED, exit_code=0, attempt=2)
    svc.move("arr", S.PENDING)
    svc.move("arr", S.RUNNABLE, S.STARTING, S.RUNNING, index=0, attempt=1)
    store.flush()

    d = detail_of(store, svc, "plain")
    assert problems(d, "JobDetail") == []
    assert d["status"] == "SUCCEEDED" and d["jobName"] == "plain" and d["jobId"] == "plain"
    assert d["jobQueue"] == f"{ARN}:job-queue/q"
    assert d["container"]["command"] == ["echo", "there"]
    assert d["container"]["exitCode"] == 0
    assert d["container"]["logStreamName"] == "hello/default/plain.2"
    assert [a["container"]["logStreamName"] for a in d["attempts"]] == [
        "hello/default/plain.1",
        "hello/default/plain.2",
    ]
    assert d["attempts"][0]["container"]["exitCode"] == 1
    assert d["retryStrategy"] == {
        "attempts": 2,
        "evaluateOnExit": [{"action": "RETRY", "onExitCode": "1"}],
    }
    assert d["timeout"] == {"attemptDurationSeconds": 90} and d["tags"] == {"t": "1"}
    assert d["createdAt"] == round(T0 * 1000) and "startedAt" in d

    d = detail_of(store, svc, "arr")
    assert problems(d, "JobDetail") == []
    assert "startedAt" not in d  # AWS sends none before the job starts
    assert d["dependsOn"] == [{"jobId": "plain"}, {"type": "SEQUENTIAL"}]
    assert d["arrayProperties"]["size"] == 3
    assert d["arrayProperties"]["statusSummary"]["RUNNING"] == 1
    assert d["arrayProperties"]["statusSummary"]["PENDING"] == 2
    for index, status in ((0, "RUNNING"), (2, "PENDING")):
        child = detail_of(store, svc, f"arr:{index}")
        assert problems(child, "JobDetail") == []
        assert child["status"] == status and child["arrayProperties"] == {"index": index}
    assert detail_of(store, svc, "arr:2")["dependsOn"] == [{"jobId": "arr:1"}]


def flat(pages_: list[list[str]]) -> list[str]:
    return [job_id for page in pages_ for job_id in page]


def pages(store: Store, params: dict[str, Any], *, queue: str | None = "q") -> list[list[str]]:
    """Every page of a ListJobs, following nextToken to the end; each summary checked
    against botocore's JobSummary."""
    out = []
    token = None
    while True:
        query = listing.list_query(
            {**params, **({"nextToken": token} if token else {})},
            queue=queue,
            run_id=Service.RUN,
            key=KEY,
        )
        found, more = store.list_jobs(query)
        summaries = [listing.job_summary(j, job_arn=f"{ARN}:job/{j.record.job_id}") for j in found]
        response = {"jobSummaryList": summaries}
        if more:
            response["nextToken"] = listing.next_token(query, found[-1].cursor, key=KEY)
        if not out:  # the first page's shape stands for the others'
            assert problems(response, "ListJobsResponse") == []
        out.append([s["jobId"] for s in summaries])
        token = response.get("nextToken")
        if token is None:
            return out


@pytest.mark.slow
def test_listing_twenty_thousand_jobs_page_by_page_lists_each_once(store: Store) -> None:
    svc = Service(store)
    n = 20_000
    batch = []
    for k in range(n):
        name = f"{'Render' if k % 3 == 0 else 'fetch'}-{k}"
        req = request(jobName=name, jobQueue=f"q{k % 2}", jobDefinition=f"d{k % 5}:1")
        batch.append((f"j{k:05}", req, T0 + k))
    # A quarter never written as anything (SUBMITTED), then RUNNABLE, RUNNING, SUCCEEDED.
    states = (None, S.RUNNABLE, S.RUNNING, S.SUCCEEDED)
    svc.submit(batch, {i: s for k, (i, _, _) in enumerate(batch) if (s := states[k % 4])})
    ids = [f"j{k:05}" for k in range(n)]

    # Default: RUNNING only, oldest first, 100 a page.
    got = pages(store, {}, queue="q0")
    assert [len(p) for p in got] == [100] * 50
    assert flat(got) == [i for k, i in enumerate(ids) if k % 2 == 0 and k % 4 == 2]
    # A status, and pages of an odd size; a job never written as anything is SUBMITTED.
    for status, rest in (("SUBMITTED", 0), ("RUNNABLE", 1), ("SUCCEEDED", 3)):
        got = pages(store, {"jobStatus": status, "maxResults": 333}, queue=f"q{rest % 2}")
        expected = [i for k, i in enumerate(ids) if k % 4 == rest]
        assert flat(got) == expected and max(len(p) for p in got) == 333
    # maxResults is at most 1,000
    got = pages(store, {"jobStatus": "SUBMITTED", "maxResults": 5000}, queue="q0")
    assert [len(p) for p in got] == [1000] * 5
    # A filter: any status, newest first, at most 100 a page; JOB_NAME is a
    # case-insensitive name or prefix*.
    got = pages(store, {"filters": [{"name": "JOB_NAME", "values": ["render*"]}]}, queue="q1")
    assert {len(p) for p in got[:-1]} == {100}
    assert flat(got) == [i for k, i in reversed(list(enumerate(ids))) if k % 6 == 3]
    got = pages(store, {"filters": [{"name": "JOB_NAME", "values": ["FETCH-7"]}]}, queue="q1")
    assert got == [["j00007"]]
    got = pages(store, {"filters": [{"name": "JOB_DEFINITION", "values": ["d3"]}]}, queue="q0")
    assert flat(got) == [i for k, i in reversed(list(enumerate(ids))) if k % 10 == 8]
    got = pages(
        store,
        {"filters": [{"name": "AFTER_CREATED_AT", "values": [str(round((T0 + 19_990) * 1000))]}]},
        queue="q0",
    )
    assert got == [["j19998", "j19996", "j19994", "j19992"]]
    got = pages(
        store,
        {"filters": [{"name": "BEFORE_CREATED_AT", "values": [str(round((T0 + 4) * 1000))]}]},
        queue="q0",
    )
    assert got == [["j00002", "j00000"]]


def test_a_job_submitted_between_pages_comes_at_the_end(store: Store) -> None:
    svc = Service(store)
    svc.submit([(f"a{k}", request(jobName=f"a{k}"), T0 + k) for k in range(5)])
    query = listing.list_query(
        {"jobStatus": "SUBMITTED", "maxResults": 3}, queue="q", run_id=Service.RUN, key=KEY
    )
    first, more = store.list_jobs(query)
    assert [j.record.job_id for j in first] == ["a0", "a1", "a2"] and more
    token = listing.next_token(query, first[-1].cursor, key=KEY)
    svc.submit([("b0", request(jobName="b0"), T0 + 9)])
    params = {"jobStatus": "SUBMITTED", "maxResults": 3, "nextToken": token}
    rest, more = store.list_jobs(listing.list_query(params, queue="q", run_id=Service.RUN, key=KEY))
    assert [j.record.job_id for j in rest] == ["a3", "a4", "b0"] and not more


def test_the_children_of_an_array_by_status_those_not_yet_created_included(store: Store) -> None:
    svc = Service(store)
    svc.submit([("arr", request(jobName="arr", arrayProperties={"size": 7}), T0)])
    svc.move("arr", S.PENDING)
    svc.move("arr", S.RUNNABLE, S.STARTING, S.RUNNING, index=1, attempt=1)
    svc.move("arr", S.RUNNABLE, S.STARTING, S.RUNNING, index=4, attempt=1)
    svc.move("arr", S.SUCCEEDED, index=4, exit_code=0, attempt=1)
    store.flush()
    running = pages(store, {"arrayJobId": "arr"}, queue=None)
    assert running == [["arr:1"]]
    got = pages(store, {"arrayJobId": "arr", "jobStatus": "PENDING", "maxResults": 2}, queue=None)
    assert got == [["arr:0", "arr:2"], ["arr:3", "arr:5"], ["arr:6"]]
    found, _ = store.list_jobs(
        listing.list_query(
            {"arrayJobId": "arr", "jobStatus": "SUCCEEDED"}, queue=None, run_id=None, key=KEY
        )
    )
    summary = listing.job_summary(found[0], job_arn=f"{ARN}:job/arr:4")
    assert summary["arrayProperties"] == {"index": 4} and summary["container"] == {"exitCode": 0}
    assert summary["jobDefinition"] == definition_arn(svc.requests["arr"])
    # the parent, listed in its queue, carries its children's counts
    (parent,), _ = store.list_jobs(
        listing.list_query({"jobStatus": "PENDING"}, queue="q", run_id=None, key=KEY)
    )
    counts = listing.job_summary(parent, job_arn="x")["arrayProperties"]["statusSummary"]
    assert (counts["PENDING"], counts["RUNNING"], counts["SUCCEEDED"]) == (5, 1, 1)


def test_a_token_altered_or_given_with_another_query_is_refused(store: Store) -> None:
    Service(store).submit([(f"a{k}", request(jobName=f"a{k}"), T0 + k) for k in range(3)])
    params = {"jobStatus": "SUBMITTED", "maxResults": 1}
    query = listing.list_query(params, queue="q", run_id=Service.RUN, key=KEY)
    token = listing.next_token(query, 1, key=KEY)
    # A page size may change between pages; nothing else may.
    assert listing.list_query({**params, "maxResults": 2, "nextToken": token}, queue="q",
                           run_id=Service.RUN, key=KEY).cursor == 1  # fmt: skip
    for bad, other in (
        (token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), params),
        (token, {**params, "jobStatus": "RUNNING"}),
        ("not a token", params),
        ("", {**params, "nextToken": listing.next_token(query, 1, key=b"other")}),
    ):
        with pytest.raises(ClientException, match="Invalid nextToken"):
            listing.list_query(
                {**other, **({"nextToken": bad} if bad else {})},
                queue="q",
                run_id=Service.RUN,
                key=KEY,
            )


@pytest.mark.parametrize(
    ("params", "queue", "words"),
    [
        ({}, None, "Exactly one of jobQueue and arrayJobId"),
        ({"arrayJobId": "a"}, "q", "Exactly one of jobQueue and arrayJobId"),
        ({"maxResults": 0}, "q", "maxResults must be at least 1"),
        ({"filters": [{"name": "JOB_NAME", "values": ["a"]}] * 2}, "q", "Only one filter"),
        ({"filters": [{"name": "SHARE", "values": ["a"]}]}, "q", "Filter name must be one of"),
        ({"filters": [{"name": "JOB_NAME", "values": []}]}, "q", "needs a value"),
        ({"filters": [{"name": "AFTER_CREATED_AT", "values": ["yesterday"]}]}, "q", "epoch"),
        ({"filters": [{"name": "JOB_DEFINITION", "values": [f"{ARN}:job-definition/a*"]}]}, "q",
         "Asterisk"),
        ({"multiNodeJobId": "m"}, None, "multi-node"),
    ],
)  # fmt: skip
def test_list_requests_aws_refuses(params: dict[str, Any], queue: str | None, words: str) -> None:
    with pytest.raises(ClientException) as e:
        listing.list_query(params, queue=queue, run_id=None, key=KEY)
    assert words in e.value.message


def test_filters_whose_values_a_store_cannot_take_are_client_errors(store: Store) -> None:
    Service(store).submit([("n1", request(jobName="a1"), T0)])

    def listed(name: str, values: list[str]) -> list[str]:
        return flat(pages(store, {"filters": [{"name": name, "values": values}]}))

    # Each a 500 once: an expression too deep for SQLite, an integer too large for it, a
    # digit int() does not read.
    for name, values, words in [
        ("JOB_NAME", [f"a{k}" for k in range(2000)], "at most 100 values, got 2000"),
        ("JOB_DEFINITION", [f"d{k}" for k in range(101)], "at most 100 values, got 101"),
        ("BEFORE_CREATED_AT", ["9" * 23], "epoch milliseconds"),
        ("AFTER_CREATED_AT", ["\u00b2"], "epoch milliseconds"),
    ]:
        with pytest.raises(ClientException) as e:
            listed(name, values)
        assert words in e.value.message
    # Repeats count once; the largest epoch ms the store holds is a value like any.
    assert listed("JOB_NAME", ["a1"] * 2000) == ["n1"]
    assert listed("BEFORE_CREATED_AT", [str(2**63 - 1)]) == ["n1"]


def test_the_shape_check_finds_what_does_not_fit() -> None:
    assert problems({"jobId": "a"}, "JobSummary") == [
        "JobSummary.jobName: required by JobSummary, missing"
    ]
    assert problems({"jobId": "a", "jobName": "b", "status": "DONE", "x": 1}, "JobSummary") == [
        "JobSummary.status: 'DONE' is not one of "
        "['SUBMITTED', 'PENDING', 'RUNNABLE', 'STARTING', 'RUNNING', 'SUCCEEDED', 'FAILED']",
        "JobSummary.x: not a member of JobSummary",
    ]
    assert problems({"jobId": "a", "jobName": "b", "createdAt": "1"}, "JobSummary") == [
        "JobSummary.createdAt: '1' is not an integer"
    ]


def test_name_and_definition_filters_match_as_aws_documents(store: Store) -> None:
    svc = Service(store)
    made = [
        ("n1", "a_b", "d1:1"),
        ("n2", "axb", "d1:2"),
        ("n3", "A_B2", "d10:1"),
        ("n4", "a-b", "x_y:1"),
    ]
    svc.submit(
        [(i, request(jobName=n, jobDefinition=d), T0 + k) for k, (i, n, d) in enumerate(made)]
    )

    def listed(name: str, *values: str) -> list[str]:
        return flat(pages(store, {"filters": [{"name": name, "values": list(values)}]}))

    # JOB_NAME: case-insensitive, `*` a prefix; `_` and `%` are themselves
    assert listed("JOB_NAME", "a_b") == ["n1"]
    assert listed("JOB_NAME", "A_b*") == ["n3", "n1"]
    assert listed("JOB_NAME", "a%*", "axb") == ["n2"]
    # JOB_DEFINITION: a name is any revision, `name:N` one, `prefix*`, an ARN exactly
    assert listed("JOB_DEFINITION", "d1") == ["n2", "n1"]
    assert listed("JOB_DEFINITION", "d1:2") == ["n2"]
    assert listed("JOB_DEFINITION", "d1*") == ["n3", "n2", "n1"]
    assert listed("JOB_DEFINITION", "D1") == []  # case-sensitive
    assert listed("JOB_DEFINITION", f"{ARN}:job-definition/d10:1") == ["n3"]
    assert listed("JOB_DEFINITION", f"{ARN}:job-definition/d1") == ["n2", "n1"]
    assert listed("JOB_DEFINITION", "x?y") == []
