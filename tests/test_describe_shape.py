"""`flowbatch describe` against AWS Batch's own model of DescribeJobs' JobDetail.

tests/golden/aws/batch_jobdetail.json is the part of botocore's service model
(data/batch/2016-08-10/service-2.json) reachable from JobDetail: every key describe
emits must be a member of its shape there, with a value of the member's type (null
standing for a field AWS would leave out), except the few extensions listed below."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from run_helpers import run_for_real
from test_store import RUN, T0, ev, pipeline

from flowbatch.cli import app
from flowbatch.run.state import JobState
from flowbatch.store.jobstore import Store

S = JobState
MODEL = json.loads((Path(__file__).parent / "golden/aws/batch_jobdetail.json").read_text())
SHAPES: dict[str, dict[str, Any]] = MODEL["shapes"]
ARN = "arn:aws:batch:local:000000000000"

# What flowbatch adds beyond AWS, by path (documented in docs/language.md).
EXTENSIONS = {
    "runId",
    "computeEnvironment",
    "attempts[].computeEnvironment",
    "attempts[].host",
    "attempts[].externalId",
    "attempts[].container.peakMemory",
}


def violations(value: Any, shape: str, path: str = "") -> list[str]:
    """Where `value` does not fit `shape`: unknown keys and values of the wrong type."""
    if value is None:
        return []
    spec = SHAPES[shape]
    kind = spec["type"]
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{path or '.'}: {type(value).__name__}, not a structure"]
        out = []
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if where in EXTENSIONS:
                assert key not in spec["members"], f"{where} is AWS's own field now"
                continue
            if key not in spec["members"]:
                out.append(f"{where}: not a member of {shape}")
            else:
                out += violations(item, spec["members"][key], where)
        return out
    if kind == "list":
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__}, not a list"]
        return [v for item in value for v in violations(item, spec["member"], f"{path}[]")]
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__}, not a map"]
        return [
            v
            for k, item in value.items()
            for v in [*violations(k, spec["key"], path), *violations(item, spec["value"], path)]
        ]
    python = {"string": str, "boolean": bool, "integer": int, "long": int, "double": float}
    wanted = python[kind]
    if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
        return [f"{path}: {value!r} is not a {kind}"]
    if "enum" in spec and value not in spec["enum"]:
        return [f"{path}: {value!r} is not one of {spec['enum']}"]
    return []


def describe(state: Path, *job_ids: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(app, ["describe", *job_ids, "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    jobs: list[dict[str, Any]] = json.loads(result.stdout)["jobs"]
    return jobs


PIPELINE = """
param msg = "hi there"
job single {
  command    = "echo {{ params.msg }} Ref::mode {{ job.attempt }} > single.txt"
  parameters = { mode = "fast" }
  timeout    = 2m
}
job many {
  command = ["echo", "child {{ array.index }} of {{ array.size }}"]
  array   = 3
  after   = [single]
}
"""


@pytest.mark.slow
def test_describe_fits_aws_jobdetail_and_shows_the_command_that_ran(tmp_path: Path) -> None:
    store, _ = run_for_real(tmp_path, PIPELINE, exit_code=0)
    with store:
        ids = {j["jobName"]: str(j["jobId"]) for j in store.jobs()}
    single, many, child = describe(
        tmp_path / "state", ids["single"], ids["many"], f"{ids['many']}:1"
    )
    for job in (single, many, child):
        assert violations(job, "JobDetail") == [], job["jobId"]
        assert job["jobArn"] == f"{ARN}:job/{job['jobId']}"
        assert job["jobDefinition"] == f"{ARN}:job-definition/{job['jobName']}:1"
        assert job["isCancelled"] is False and job["isTerminated"] is False
    # What ran, not the template: /bin/sh -c with the text the shell got.
    assert single["container"]["command"] == [
        "/bin/sh", "-c", "echo 'hi there' fast 1 > single.txt",
    ]  # fmt: skip
    assert (tmp_path / "single.txt").read_text() == "hi there fast 1\n"
    assert single["timeout"] == {"attemptDurationSeconds": 120}
    assert child["container"]["command"] == ["echo", "child 1 of 3"]
    # The parent never runs itself: its command is the children's, as submitted.
    assert many["container"]["command"] == ["echo", "child {{ array.index }} of {{ array.size }}"]
    updated = many["arrayProperties"]["statusSummaryLastUpdatedAt"]
    assert isinstance(updated, int)
    assert updated >= max(c["stoppedAt"] for c in describe(tmp_path / "state", child["jobId"]))
    assert "statusSummaryLastUpdatedAt" not in child["arrayProperties"]


def test_is_cancelled_and_is_terminated_say_which_request_stopped_the_job(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    with Store.open(state) as store:
        store.begin_run(RUN, pipeline(), {"prep": "id-prep", "align": "id-align",
                        "thumbs": "id-thumbs", "steps": "id-steps"}, created_at=T0)  # fmt: skip
        store.emit(ev("id-prep", S.RUNNING, 1, attempt=1))
        store.emit(ev("id-steps", S.PENDING, 1))
        store.emit(ev("id-align", S.PENDING, 1))
        store.flush()
        store.request("id-prep", "terminate", "Job terminated by user")
        store.request("id-steps", "cancel", "Job cancelled by user")
        store.take_requests(RUN)
        store.emit(ev("id-prep", S.FAILED, 2, attempt=1, reason="Job terminated by user"))
        store.emit(ev("id-steps", S.FAILED, 2, reason="Job cancelled by user"))
        store.emit(ev("id-align", S.FAILED, 2, reason="Dependency failed"))
        store.flush()
    prep, steps, child, align = describe(state, "id-prep", "id-steps", "id-steps:2", "id-align")
    assert (prep["isCancelled"], prep["isTerminated"]) == (False, True)
    assert (steps["isCancelled"], steps["isTerminated"]) == (True, False)
    assert (child["isCancelled"], child["isTerminated"]) == (True, False)  # with its array
    assert (align["isCancelled"], align["isTerminated"]) == (False, False)  # failed, not asked
    for job in (prep, steps, child, align):
        assert violations(job, "JobDetail") == []
    # Ref:: substituted into the command prep ran (the store's pipeline: `echo Ref::who`).
    assert prep["container"]["command"] == ["/bin/sh", "-c", "echo world"]


def test_the_checker_catches_what_aws_would_not_accept() -> None:
    bad = {"jobId": 1, "madeUp": "x", "container": {"command": "echo hi", "vcpus": 1.5}}
    assert sorted(violations(bad, "JobDetail")) == [
        "container.command: str, not a list",
        "container.vcpus: 1.5 is not a integer",
        "jobId: 1 is not a string",
        "madeUp: not a member of JobDetail",
    ]
