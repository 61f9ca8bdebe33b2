"""The aws_batch executor against a scripted stand-in for AWS Batch whose timing the
test holds: DescribeJobs in rounds of at most 100 ids, throttling backed off, cancel
vs terminate, AWS's states as results. What it sends to AWS is checked against moto
in test_aws_batch_moto.py."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from aws_helpers import Started, attempt, cloud
from botocore.exceptions import ClientError

from flowbatch.executors.aws_batch import (
    PRELUDE,
    AwsBatchExecutor,
    array_runs,
    definition_body,
    result_of,
    submission,
)
from flowbatch.executors.base import REASON_TIMEOUT

pytestmark = pytest.mark.anyio
FAST = 1000.0  # DescribeJobs calls a second: rounds as often as `poll_interval` says


# -- against a scripted AWS -------------------------------------------------------------


def _throttled(operation: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "TooManyRequestsException", "Message": "Too Many Requests"},
            "ResponseMetadata": {"HTTPStatusCode": 429},
        },
        operation,
    )


class FakeBatch:
    """AWS Batch as the test scripts it: jobs stay `status` until the test moves them."""

    def __init__(self) -> None:
        self.status = "RUNNING"
        self.described: list[list[str]] = []
        self.throttle = 0  # how many calls to refuse with TooManyRequestsException
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._n = 0

    def describe_job_definitions(self, **kw: Any) -> dict[str, Any]:
        return {"jobDefinitions": []}

    def register_job_definition(self, **kw: Any) -> dict[str, Any]:
        return {"jobDefinitionArn": f"arn:def/{kw['jobDefinitionName']}:1"}

    def submit_job(self, **kw: Any) -> dict[str, Any]:
        self._n += 1
        return {"jobId": f"aws-{self._n}"}

    def describe_jobs(self, jobs: list[str]) -> dict[str, Any]:
        if self.throttle:
            self.throttle -= 1
            raise _throttled("DescribeJobs")
        self.described.append(list(jobs))
        return {"jobs": [{"jobId": j, "status": self.status} for j in jobs]}

    def cancel_job(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("CancelJob", kw))
        return {}

    def terminate_job(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("TerminateJob", kw))
        return {}


@pytest.mark.slow
async def test_describe_jobs_asks_for_at_most_100_ids_in_one_round(tmp_path: Path) -> None:
    fake = FakeBatch()
    ce = cloud(poll=0.05)
    executor = AwsBatchExecutor(ce, clients=lambda _: (fake, None), describe_rate=FAST)
    started = Started()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for i in range(250):
                tg.start_soon(
                    lambda i=i: executor.run(attempt(tmp_path, ce, index=i), task_status=started)
                )
            while len(started.ids) < 250:
                await anyio.sleep(0.01)
            before = len(fake.described)
            fake.status = "SUCCEEDED"
    assert all(len(ids) <= 100 for ids in fake.described)
    after = fake.described[before:]
    # Every job in flight in each round, 100 at a time; the round that saw them end is
    # the last one, and asked for all 250 in three calls.
    assert [len(ids) for ids in after[-3:]] == [100, 100, 50]
    assert sorted(i for ids in after[-3:] for i in ids) == sorted(started.ids)


def test_rounds_are_spaced_out_when_many_jobs_are_in_flight() -> None:
    executor = AwsBatchExecutor(cloud(poll=2.0), clients=lambda _: (None, None))
    assert executor.interval(1) == 2.0
    assert executor.interval(1_000) == 2.0  # 10 calls: 5 a second
    assert executor.interval(10_000) == 20.0  # 100 calls a round, still 5 a second


async def test_throttling_is_retried_with_growing_backoff(tmp_path: Path) -> None:
    fake = FakeBatch()
    fake.status = "SUCCEEDED"
    fake.throttle = 3
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    ce = cloud(poll=0.01)
    executor = AwsBatchExecutor(ce, clients=lambda _: (fake, None), sleep=sleep, describe_rate=FAST)
    with anyio.fail_after(10):
        result = await executor.run(attempt(tmp_path, ce), task_status=Started())
    assert result.ok
    assert len(waits) == 3 and waits[0] < waits[1] < waits[2]  # 0.5, 1, 2 s, jittered
    assert executor.calls["DescribeJobs"] == 4


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("RUNNABLE", ["CancelJob"]),  # not started: cancelled
        ("STARTING", ["TerminateJob"]),
        ("RUNNING", ["TerminateJob"]),
    ],
)
async def test_a_cancelled_attempt_is_cancelled_or_terminated_as_aws_defines(
    tmp_path: Path, status: str, expected: list[str]
) -> None:
    fake = FakeBatch()
    fake.status = status
    ce = cloud(poll=0.01)
    executor = AwsBatchExecutor(ce, clients=lambda _: (fake, None), describe_rate=FAST)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: executor.run(attempt(tmp_path, ce), task_status=Started()))
            while not fake.described:  # the executor has seen the job's state
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    assert [name for name, _ in fake.calls] == expected
    assert fake.calls[0][1]["jobId"] == "aws-1"
    assert fake.calls[0][1]["reason"] == "Stopped by flowbatch (run 20261201-120000-abcd)"


async def test_a_cancel_that_comes_too_late_terminates(tmp_path: Path) -> None:
    fake = FakeBatch()
    fake.status = "RUNNABLE"
    ce = cloud(poll=0.01)
    executor = AwsBatchExecutor(ce, clients=lambda _: (fake, None), describe_rate=FAST)
    real_cancel = fake.cancel_job

    def cancel_late(**kw: Any) -> dict[str, Any]:
        fake.status = "STARTING"  # it started meanwhile: CancelJob does nothing then
        return real_cancel(**kw)

    fake.cancel_job = cancel_late  # type: ignore[method-assign]
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: executor.run(attempt(tmp_path, ce), task_status=Started()))
            while not fake.described:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    assert [name for name, _ in fake.calls] == ["CancelJob", "TerminateJob"]


def test_aws_states_become_results() -> None:
    ok = result_of({"jobId": "x", "status": "SUCCEEDED"})
    assert ok.ok and ok.exit_code == 0  # moto's simple Batch gives no exit code
    failed = result_of(
        {
            "jobId": "x",
            "status": "FAILED",
            "statusReason": "Essential container in task exited",
            "container": {"exitCode": 137, "reason": "OutOfMemoryError: Container killed"},
        }
    )
    assert (failed.exit_code, failed.reason, failed.retryable) == (
        137,
        "OutOfMemoryError: Container killed",
        True,
    )
    timed_out = result_of({"jobId": "x", "status": "FAILED", "statusReason": REASON_TIMEOUT})
    assert not timed_out.retryable and timed_out.exit_code is None
    lost = result_of(
        {
            "jobId": "x",
            "status": "FAILED",
            "statusReason": "Host EC2 (instance i-0abc) terminated.",
            "attempts": [{"container": {"exitCode": None}}],
        }
    )
    assert lost.retryable and lost.status_reason == "Host EC2 (instance i-0abc) terminated."
    assert not result_of({"jobId": "x", "status": "FAILED", "container": {"exitCode": 0}}).ok


def test_timeout_under_a_minute_is_never_sent(tmp_path: Path) -> None:
    body = definition_body(attempt(tmp_path, cloud(), timeout=90.5))
    assert body["timeout"] == {"attemptDurationSeconds": 91}  # AWS takes whole seconds


async def test_a_cancel_during_submission_stops_the_job_aws_accepted(tmp_path: Path) -> None:
    fake = FakeBatch()
    fake.status = "RUNNABLE"
    arrived, release = threading.Event(), threading.Event()
    real_submit = fake.submit_job

    def slow_submit(**kw: Any) -> dict[str, Any]:
        arrived.set()
        release.wait(10)  # AWS answers after the run was interrupted
        return real_submit(**kw)

    fake.submit_job = slow_submit  # type: ignore[method-assign]
    ce = cloud(poll=0.01)
    executor = AwsBatchExecutor(ce, clients=lambda _: (fake, None), describe_rate=FAST)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: executor.run(attempt(tmp_path, ce), task_status=Started()))
            while not arrived.is_set():
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
            release.set()
    assert [(name, kw["jobId"]) for name, kw in fake.calls] == [("CancelJob", "aws-1")]


def test_children_that_share_their_overrides_make_one_aws_array(tmp_path: Path) -> None:
    ce = cloud()
    same = [attempt(tmp_path, ce, index=i) for i in (0, 1, 2, 4, 5)]
    other = attempt(tmp_path, ce, index=3, command="echo three")
    runs = array_runs([*same, other])
    assert [[a.index for a in run] for run in runs] == [[0, 1, 2], [3], [4, 5]]
    request = submission(runs[2][0], "q", "arn:def", size=2)
    assert request["arrayProperties"] == {"size": 2}
    env = {e["name"]: e["value"] for e in request["containerOverrides"]["environment"]}
    assert (env["FLOWBATCH_ARRAY_OFFSET"], env["FLOWBATCH_JOB_ID"]) == ("4", "job-1")
    assert "FLOWBATCH_JOB_ARRAY_INDEX" not in env  # each child's comes from AWS's own
    single = submission(other, "q", "arn:def")
    assert "arrayProperties" not in single


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        # a child of an AWS array that starts at flowbatch's child 4
        (
            {"AWS_BATCH_JOB_ARRAY_INDEX": "1", "FLOWBATCH_ARRAY_OFFSET": "4"},
            "5 5 job-1:5 $(not run)",
        ),
        # a child submitted alone (a retry, or one that differs from its siblings)
        ({"FLOWBATCH_JOB_ARRAY_INDEX": "7"}, "7 7 job-1 $(not run)"),
    ],
)
def test_the_prelude_gives_the_command_aws_names_for_flowbatch_values(
    env: dict[str, str], expected: str
) -> None:
    shown = 'echo "$AWS_BATCH_JOB_ARRAY_INDEX $FLOWBATCH_JOB_ARRAY_INDEX $FLOWBATCH_JOB_ID $1"'
    done = subprocess.run(
        ["/bin/sh", "-c", PRELUDE, "sh", "/bin/sh", "-c", shown, "sh", "$(not run)"],
        env={"FLOWBATCH_JOB_ID": "job-1", "FLOWBATCH_JOB_ATTEMPT": "1", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == expected + "\n"  # and an argument stays an argument


async def test_a_job_aws_no_longer_knows_fails_without_a_retry(tmp_path: Path) -> None:
    fake = FakeBatch()
    fake.describe_jobs = lambda jobs: {"jobs": []}  # type: ignore[method-assign]
    ce = cloud(poll=0.01)
    executor = AwsBatchExecutor(ce, clients=lambda _: (fake, None), describe_rate=FAST)
    with anyio.fail_after(10):
        result = await executor.run(attempt(tmp_path, ce), task_status=Started())
    assert result.status_reason == "AWS Batch no longer knows job aws-1"
    assert not result.retryable and result.exit_code is None
    assert executor.calls["DescribeJobs"] == 3
