"""The progress reporter: plain lines off a terminal, a redrawn status line on one, and
the closing summary. Events are fed directly; the clock is a fake one."""

from __future__ import annotations

import io

import pytest

from flowbatch.outputs.progress import Reporter, color_wanted
from flowbatch.run.state import JobEvent, JobState

S = JobState
T0 = 1_767_268_800.0  # 2026-01-01 12:00:00 UTC


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ev(name: str, state: JobState, t: float, index: int | None = None, **kw: object) -> JobEvent:
    job_id = f"id-{name}" if index is None else f"id-{name}:{index}"
    return JobEvent(run_id="r", job_id=job_id, name=name, index=index, state=state,
                    time=T0 + t, **kw)  # type: ignore[arg-type]  # fmt: skip


def reporter(
    out: io.StringIO, *, tty: bool, total: int = 3, color: bool = False, width: int = 80
) -> tuple[Reporter, FakeClock]:
    clock = FakeClock()
    rep = Reporter(out, tty=tty, color=color, total=total, arrays={"align": 2}, clock=clock,
                   utc=True, width=width)  # fmt: skip
    return rep, clock


def feed(rep: Reporter, clock: FakeClock) -> None:
    """prep succeeds; align (2 children) has child 0 fail after a retry, child 1 succeed."""
    events = [
        (ev("prep", S.SUBMITTED, 0), 0.0),
        (ev("prep", S.RUNNABLE, 0), 0.0),
        (ev("prep", S.STARTING, 1, attempt=1), 0.01),
        (ev("prep", S.RUNNING, 1, attempt=1), 0.02),
        (ev("prep", S.SUCCEEDED, 3, attempt=1, exit_code=0), 0.5),
        (ev("align", S.SUBMITTED, 3), 0.5),
        (ev("align", S.PENDING, 3), 0.5),
        (ev("align", S.RUNNING, 4, index=0, attempt=1), 0.6),
        (
            ev(
                "align",
                S.RUNNABLE,
                5,
                index=0,
                attempt=1,
                exit_code=137,
                attempt_reason="OutOfMemoryError",
            ),
            1.0,
        ),
        (ev("align", S.RUNNING, 6, index=0, attempt=2), 1.05),
        (ev("align", S.RUNNING, 6, index=1, attempt=1), 1.1),
        (
            ev(
                "align",
                S.FAILED,
                7,
                index=0,
                attempt=2,
                exit_code=1,
                reason="Essential container in task exited",
            ),
            41.0,
        ),
        (ev("align", S.SUCCEEDED, 8, index=1, attempt=1, exit_code=0), 41.5),
        (ev("align", S.FAILED, 8, reason="1 child failed"), 41.5),
    ]
    for event, at in events:
        clock.now = 100.0 + at
        rep.emit(event)


def test_off_a_terminal_each_start_end_and_retry_is_one_plain_line() -> None:
    out = io.StringIO()
    rep, clock = reporter(out, tty=False)
    feed(rep, clock)
    assert out.getvalue() == ""  # emit only buffers
    rep.flush()
    # SUBMITTED, PENDING, RUNNABLE and STARTING are left out of a plain log: they would
    # triple it without saying anything the next line does not.
    assert out.getvalue().splitlines() == [
        "12:00:01 RUNNING   prep attempt 1",
        "12:00:03 SUCCEEDED prep attempt 1",
        "12:00:04 RUNNING   align[0] attempt 1",
        "12:00:05 RUNNABLE  align[0] attempt 1 failed, will retry: "
        "exit code 137 (OutOfMemoryError)",
        "12:00:06 RUNNING   align[0] attempt 2",
        "12:00:06 RUNNING   align[1] attempt 1",
        "12:00:07 FAILED    align[0] attempt 2: exit code 1 (Essential container in task exited)",
        "12:00:08 SUCCEEDED align[1] attempt 1",
        "12:00:08 FAILED    align: 1 child failed",
    ]
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()


def test_each_plain_line_has_its_own_events_second_fractions_and_order_whatever() -> None:
    # The time of day is formatted once a second: a line must never get a neighbour's.
    out = io.StringIO()
    rep, _ = reporter(out, tty=False)
    for name, t in (("a", 0.999), ("b", 1.0), ("c", 1.5), ("d", 0.2), ("e", 61.0)):
        rep.emit(ev(name, S.RUNNING, t, attempt=1))
    rep.flush()
    assert [line[:8] for line in out.getvalue().splitlines()] == [
        "12:00:00", "12:00:01", "12:00:01", "12:00:00", "12:01:01"
    ]  # fmt: skip


def test_close_prints_counts_by_final_state_and_each_failure() -> None:
    out = io.StringIO()
    rep, clock = reporter(out, tty=False)
    feed(rep, clock)
    rep.flush()
    before = out.getvalue()
    rep.close()
    assert out.getvalue()[len(before) :].splitlines() == [
        "3/3 done: 2 succeeded, 1 failed in 00:41",
        "  FAILED align[0]: exit code 1 (Essential container in task exited)",
    ]


def test_children_of_a_failed_array_that_never_ran_count_as_failed() -> None:
    out = io.StringIO()
    rep, _clock = reporter(out, tty=False, total=3)
    rep.emit(ev("prep", S.SUBMITTED, 0))
    rep.emit(ev("prep", S.RUNNABLE, 0))
    rep.emit(ev("prep", S.FAILED, 1, reason="Job cancelled"))
    rep.emit(ev("align", S.SUBMITTED, 1))
    rep.emit(ev("align", S.FAILED, 1, reason="Dependent Job failed: prep"))
    assert (rep.done, rep.failed, rep.running) == (3, 3, 0)
    assert rep.summary()[1:] == [
        "  FAILED prep: Job cancelled",
        "  FAILED align: Dependent Job failed: prep (2 never ran)",
    ]


def test_a_run_cut_short_reports_what_had_not_finished() -> None:
    out = io.StringIO()
    rep, clock = reporter(out, tty=False, total=5)
    rep.emit(ev("prep", S.RUNNING, 0, attempt=1))
    clock.now += 3725
    assert rep.summary() == ["0/5 done: 1 running, 4 not started in 1:02:05"]


def test_on_a_terminal_the_status_line_overwrites_itself() -> None:
    out = io.StringIO()
    rep, clock = reporter(out, tty=True)
    feed(rep, clock)
    rep.flush()
    text = out.getvalue()
    # Redrawn at most once per 0.1 s of the fake clock: the bursts at 0.0-0.02, 0.5,
    # 1.0-1.1 and 41.0-41.5 give one draw each, plus the final flush.
    draws = text.split("\r\x1b[K")
    assert 4 <= len(draws) - 1 <= 7
    assert "\n" not in draws[-1]
    assert draws[-1] == "[3/3 done, 0 running, 1 failed] 00:41"
    # failures become permanent lines above the status line
    permanent = [line for line in text.replace("\r\x1b[K", "\n").split("\n") if "FAILED" in line]
    assert permanent == [
        "12:00:07 FAILED    align[0] attempt 2: exit code 1 (Essential container in task exited)",
    ]


def test_the_status_line_names_running_jobs_within_the_width() -> None:
    out = io.StringIO()
    rep, clock = reporter(out, tty=True, total=12, width=60)
    for i in range(2):
        rep.emit(ev("align", S.RUNNING, 0, index=i, attempt=1))
    clock.now += 41
    assert rep.status_line() == "[0/12 done, 2 running, 0 failed] align[0] align[1] 00:41"
    for i in range(2, 6):
        rep.emit(ev("align", S.RUNNING, 0, index=i, attempt=1))
    line = rep.status_line()
    assert len(line) < 60
    assert line.startswith("[0/12 done, 6 running, 0 failed] align[0]")
    assert line.endswith("… 00:41")


def test_close_on_a_terminal_clears_the_status_line_before_the_summary() -> None:
    out = io.StringIO()
    rep, clock = reporter(out, tty=True, color=True)
    feed(rep, clock)
    rep.close()
    tail = out.getvalue().rsplit("\r\x1b[K", 1)[1]
    assert tail.splitlines() == [
        "3/3 done: 2 succeeded, 1 failed in 00:41",
        "  \x1b[31mFAILED\x1b[0m align[0]: exit code 1 (Essential container in task exited)",
    ]


def test_without_array_sizes_a_parent_is_recognised_by_its_children() -> None:
    out = io.StringIO()
    rep = Reporter(out, tty=False, color=False, total=2, clock=FakeClock(), utc=True)
    rep.emit(ev("align", S.SUBMITTED, 0))
    rep.emit(ev("align", S.PENDING, 0))
    assert rep.running == 0 and len(rep.summary()) == 1
    rep.emit(ev("align", S.RUNNING, 1, index=0, attempt=1))
    rep.emit(ev("align", S.SUCCEEDED, 2, index=0, attempt=1))
    rep.emit(ev("align", S.SUCCEEDED, 3, index=1, attempt=1))
    rep.emit(ev("align", S.SUCCEEDED, 3))
    assert rep.done == 2
    assert rep.summary()[0].startswith("2/2 done: 2 succeeded in")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("env", "stream", "expected"),
    [
        ({}, _Tty(), True),
        ({"NO_COLOR": "1"}, _Tty(), False),
        ({"TERM": "dumb"}, _Tty(), False),
        ({}, io.StringIO(), False),
    ],
)
def test_color_wanted(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], stream: io.StringIO, expected: bool
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert color_wanted(stream) is expected


def test_the_total_is_never_below_what_was_seen() -> None:
    out = io.StringIO()
    rep, _clock = reporter(out, tty=False, total=1)
    rep.emit(ev("align", S.SUCCEEDED, 1, index=0, attempt=1))
    rep.emit(ev("align", S.SUCCEEDED, 1, index=1, attempt=1))
    assert rep.summary()[0] == "2/2 done: 2 succeeded in 00:00"


def test_on_a_terminal_flush_redraws_only_when_the_line_would_change() -> None:
    out = io.StringIO()
    rep, clock = reporter(out, tty=True)
    rep.emit(ev("prep", S.RUNNING, 0, attempt=1))
    rep.flush()
    drawn = out.getvalue()
    clock.now += 0.5
    rep.flush()
    assert out.getvalue() == drawn  # same counts, same second: nothing written
    clock.now += 0.6
    rep.flush()
    assert out.getvalue()[len(drawn) :] == "\r\x1b[K[0/3 done, 1 running, 0 failed] prep 00:01"


class _ReaderGone(io.StringIO):
    """A stream whose reader has left after `keep` writes: then every write is EPIPE."""

    def __init__(self, keep: int) -> None:
        super().__init__()
        self.keep = keep

    def write(self, text: str) -> int:
        if self.keep <= 0:
            raise BrokenPipeError(32, "Broken pipe")
        self.keep -= 1
        return super().write(text)


@pytest.mark.parametrize("tty", [False, True])
def test_a_stream_nobody_reads_any_more_loses_the_progress_not_the_run(tty: bool) -> None:
    out = _ReaderGone(keep=1)
    rep, clock = reporter(out, tty=tty)
    feed(rep, clock)  # emit draws on a terminal: the failure comes from there too
    rep.flush()
    rep.close()
    assert rep.done == 3 and rep.failed == 1  # it kept counting after the reader left
