"""Cancelling one child of an array that is still being released, child by child:
the rest of the array must still run (regression: the release cursor stopped at a
cancelled child and the run never ended)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from run_helpers import RecordingSink

from flowbatch.executors.fake import FakeExecutor, Outcome
from flowbatch.lang.compile import compile_pipeline
from flowbatch.lang.model import DEFAULT_QUEUE, JobSpec, Pipeline, local_compute
from flowbatch.run.clock import FakeClock
from flowbatch.run.records import RunStatus
from flowbatch.run.runner import RunOptions, new_job_ids, run_plan
from flowbatch.run.state import JobState

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("victim", [1, 3, 5])
async def test_cancelling_a_child_not_yet_released(tmp_path: Path, victim: int) -> None:
    plan = compile_pipeline(
        Pipeline(
            path=str(tmp_path / "p.flow"),
            params={},
            computes={"local": local_compute(1, 4096)},  # one at a time: children queue
            queues={"default": DEFAULT_QUEUE},
            jobs={"arr": JobSpec(name="arr", command="x", array_size=6)},
        )
    )
    ids = new_job_ids(plan)
    requests = [(f"{ids['arr']}:{victim}", "cancel", "not this one")]
    sink = RecordingSink()
    # A stalled run fails here instead of hanging the suite.
    with anyio.fail_after(20):
        async with FakeClock().autojump() as clock:
            fake = FakeExecutor(lambda attempt: Outcome(duration=0.3), sleep=clock.sleep)
            result = await run_plan(
                plan,
                RunOptions(run_id="r", job_ids=ids, state_dir=tmp_path),
                sinks=[sink],
                executors=lambda ce: fake,
                control=lambda: [requests.pop()] if requests else [],
                clock=clock,
            )
    ran = sorted(a.index for a in fake.attempts if a.index is not None)
    finals = {e.index: e for e in sink.events if e.index is not None}
    assert victim not in ran and len(ran) == 5
    assert finals[victim].state is JobState.FAILED and finals[victim].reason == "not this one"
    assert result.status is RunStatus.FAILED  # a cancelled child fails its array, as on AWS
