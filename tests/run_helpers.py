"""What several test modules need to look at runs: a sink that records every event the
runner reports, and a real `flowbatch run` whose store is then opened for reading."""

from __future__ import annotations

import sys
from pathlib import Path

from proc_helpers import run_to_end

from flowbatch.run.state import JobEvent
from flowbatch.store.jobstore import Store


class RecordingSink:
    """An EventSink that keeps every event, in order, and counts flushes."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []
        self.flushes = 0

    def emit(self, event: JobEvent) -> None:
        self.events.append(event)

    def flush(self) -> None:
        self.flushes += 1

    def final(self, name: str, index: int | None = None) -> JobEvent:
        """The last event of job `name` (child `index`)."""
        return [e for e in self.events if e.name == name and e.index == index][-1]


def run_for_real(where: Path, pipeline: str, *, exit_code: int) -> tuple[Store, str]:
    """Run `pipeline` with `python -m flowbatch run` in `where`; check its exit code and
    return its store (open: the caller closes it) and the run's id."""
    (where / "p.flow").write_text(pipeline)
    done = run_to_end(
        [sys.executable, "-m", "flowbatch", "run", "p.flow", "--state-dir", "state"], cwd=where
    )
    assert done.returncode == exit_code, done.stderr
    store = Store.open(where / "state", create=False)
    run_id = store.latest_run()
    assert run_id is not None
    return store, run_id
