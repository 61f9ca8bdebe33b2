"""The SLURM compute environment: attempts become SLURM batch jobs.

Submission is coalesced: the runner calls `run()` once per array child, and the calls
for the same array job and attempt number that arrive within one scheduling tick
(until the event loop has been quiet for `COALESCE_SECONDS`) become ONE
`sbatch --array=<indices>` with a script that dispatches on `SLURM_ARRAY_TASK_ID`. A
10,000-child array placed at once costs one sbatch call. Single jobs are submitted at
once. `calls` counts every SLURM command run, for tests and the benchmark.

States are polled with one `squeue -t all` per poll interval for every job this
executor watches (not one per job); squeue's `exit_code` field carries the wait
status, so finished jobs need no `sacct` (which needs slurmdbd) or `scontrol` call.
A job SLURM has already purged (after MinJobAge) ends with the exit status its batch
script wrote next to its logs. Polling has no background task: whichever waiting
`run()` holds the poller role does the squeue call and wakes the others, and hands
the role on when it leaves (structured concurrency; nothing outlives the runner's
task group).

Dependencies stay with flowbatch, never `--dependency=afterok`: flowbatch keeps the
root-cause status reason of a dependency failure, retries by `evaluate_on_exit`
(SLURM's afterok would fire on the first failed attempt), and mixes compute
environments in one pipeline, which SLURM cannot see.

`task_status.started(slurm_job_id)` is called once sbatch has accepted the job, not
when squeue first says RUNNING: the runner needs started() to come back promptly to go
on placing children (and so to let 10,000 of them coalesce into one sbatch). The
attempt's timeout, though, counts from the moment squeue shows it RUNNING, as AWS
counts from startedAt, and flowbatch enforces it exactly (scancel + REASON_TIMEOUT);
`--time` (minutes, rounded up) is SLURM's own backstop.

Cancelling the task that awaits `run()` (terminate, Ctrl-C) runs `scancel` in a
shielded finally with a deadline; the scancels of many cancelled children are
coalesced into one call too.

A SLURM job outlives the process that submitted it, so a restarted flowbatch server
re-adopts the ones it had running (`adopt`, the `Adoptable` protocol): their ids join
the same squeue calls, and they end, time out and are scancelled as if the server had
never stopped.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from flowbatch.executors import logfiles
from flowbatch.executors.base import (
    REASON_TIMEOUT,
    Attempt,
    ExecResult,
    private_dir,
    private_file,
)
from flowbatch.executors.slurm_parse import (
    SQUEUE_FORMAT,
    TERMINAL,
    parse_squeue,
    result_of,
    result_of_gone,
    scancel_ids,
    slurm_key,
)
from flowbatch.executors.slurm_script import (
    EXIT_FILE,
    batch_script,
    output_pattern,
    sbatch_argv,
    script_path,
)
from flowbatch.lang.model import ComputeEnv

COALESCE_SECONDS = 0.02  # a scheduling tick: how long the loop must be quiet
CANCEL_DEADLINE = 10.0  # how long a shielded scancel may take
SCANCEL_CHUNK = 500  # ids per scancel call, to stay far below ARG_MAX
GONE_POLLS = 2  # a job must be missing from squeue this many polls in a row
# How an adopted job that ended unwatched may have ended without a result of its own:
# purged with no exit file, or scancelled.
_UNWATCHED_ENDS = ("UNKNOWN", "CANCELLED")


@dataclass
class _Batch:
    attempts: list[Attempt] = field(default_factory=list)
    done: anyio.Event = field(default_factory=anyio.Event)
    slurm_id: str | None = None
    error: str | None = None
    sealed: bool = False  # being submitted: no more joiners


@dataclass
class _Watch:
    key: str
    log_stem: Path  # where its exit file is: `logfiles.recorded_file`
    host: str | None
    wake: anyio.Event = field(default_factory=anyio.Event)
    running_at: float | None = None
    result: ExecResult | None = None
    missing: int = 0


class SlurmExecutor:
    """Runs attempts as SLURM batch jobs on `ce.options["partition"]`."""

    def __init__(self, ce: ComputeEnv, *, coalesce_seconds: float = COALESCE_SECONDS) -> None:
        self.ce = ce
        self.options: dict[str, object] = dict(ce.options)
        interval = self.options.get("poll_interval", 1.0)
        self.poll_interval = float(interval) if isinstance(interval, int | float) else 1.0
        self.coalesce_seconds = coalesce_seconds
        self.calls: collections.Counter[str] = collections.Counter()
        self._batches: dict[tuple[str, int], _Batch] = {}
        self._watches: dict[str, _Watch] = {}
        self._polling = False
        self._last_poll = float("-inf")
        self._arrivals = 0
        self._cancel_keys: list[str] = []
        self._cancel_done: anyio.Event | None = None

    # -- SLURM commands ------------------------------------------------------------

    async def _command(self, argv: Sequence[str]) -> tuple[int, str, str]:
        self.calls[argv[0]] += 1
        try:
            proc = await anyio.run_process(list(argv), check=False)
        except OSError as e:
            return 127, "", f"{argv[0]}: {e}"
        return (
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )

    # -- the Executor protocol -----------------------------------------------------

    async def run(self, attempt: Attempt, *, task_status: TaskStatus[str]) -> ExecResult:
        """Submit the attempt (coalesced with its array siblings), report its SLURM id,
        and wait for its end. Raises only for cancellation, after scancel."""
        submitted = await self._submit(attempt)
        if isinstance(submitted, ExecResult):
            return submitted
        key = slurm_key(submitted, attempt.index)
        watch = self._watches[key] = _Watch(key=key, log_stem=attempt.log_stem, host=attempt.host)
        task_status.started(key)
        return await self._follow(watch, attempt)

    async def adopt(self, attempt: Attempt, external_id: str) -> ExecResult | None:
        """Watch a SLURM job an earlier runner submitted (`Adoptable`): polled in the
        same squeue calls as this executor's own jobs, its logs and exit file where
        `attempt.log_stem` says. None when SLURM no longer knows it and it left no exit
        status, or it was CANCELLED while nobody watched (the last server's own scancel
        at its stop looks the same as anyone's)."""
        watch = _Watch(key=external_id, log_stem=attempt.log_stem, host=attempt.host)
        self._watches[external_id] = watch
        result = await self._follow(watch, attempt)
        if result.exit_code is None and result.extra.get("slurm_state") in _UNWATCHED_ENDS:
            return None
        return result

    async def _follow(self, watch: _Watch, attempt: Attempt) -> ExecResult:
        """Wait for the end of a watched job: its result, or flowbatch's own exact
        timeout (scancel). Cancelled, it scancels the job before it re-raises."""
        live = True  # a SLURM job exists that flowbatch has not seen end
        try:
            result = await self._wait(watch, attempt.timeout)
            if result is not None:
                live = False
                return _with_container_reason(result, attempt)
            # flowbatch's own, exact timeout
            await self._scancel(watch.key)
            live = False
            return ExecResult(
                exit_code=None,
                status_reason=REASON_TIMEOUT,
                retryable=False,
                host=attempt.host,
                extra={"slurm_job_id": watch.key, "slurm_state": "TIMEOUT"},
            )
        finally:
            self._watches.pop(watch.key, None)
            if live:
                await self._scancel(watch.key)

    async def check_host(self, host: str) -> bool:
        """Whether the partition has a node that can take jobs."""
        argv = ["sinfo", "-h", "-o", "%T"]
        if self.options.get("partition"):
            argv.append(f"--partition={self.options['partition']}")
        rc, out, _ = await self._command(argv)
        usable = ("idle", "mixed", "allocated", "completing")
        return rc == 0 and any(s.strip().rstrip("*~#$@+").startswith(usable) for s in out.split())

    async def aclose(self) -> None:
        self._watches.clear()
        self._batches.clear()

    # -- submission ----------------------------------------------------------------

    async def _submit(self, attempt: Attempt) -> str | ExecResult:
        """The SLURM job id of the submission holding this attempt, or a failed result."""
        if attempt.index is None:
            batch = _Batch(attempts=[attempt], sealed=True)
            await self._sbatch(batch)
        else:
            parent = attempt.job_id.rsplit(":", 1)[0]
            bkey = (parent, attempt.attempt)
            joining = self._batches.get(bkey)
            if joining is None:
                batch = self._batches[bkey] = _Batch(attempts=[attempt])
                await self._lead(bkey, batch, attempt)
            else:
                batch = joining
                batch.attempts.append(attempt)
                self._arrivals += 1
                try:
                    await batch.done.wait()
                except BaseException:
                    if not batch.sealed:
                        batch.attempts.remove(attempt)
                    else:  # sbatch is under way or done: make sure this child never runs
                        with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_DEADLINE):
                            await batch.done.wait()
                        if batch.slurm_id is not None:
                            await self._scancel(slurm_key(batch.slurm_id, attempt.index))
                    raise
        if batch.slurm_id is None:
            return ExecResult(
                exit_code=None,
                status_reason=f"SLURM rejected the job: {batch.error}",
                reason=batch.error or "",
                retryable=False,
                host=attempt.host,
            )
        return batch.slurm_id

    async def _lead(self, bkey: tuple[str, int], batch: _Batch, attempt: Attempt) -> None:
        """Collect siblings until the loop has been quiet for a tick, then submit all."""
        try:
            while True:
                seen = self._arrivals
                await anyio.sleep(self.coalesce_seconds)
                if self._arrivals == seen:
                    break
        except BaseException:
            # Cancelled while collecting: submit the siblings anyway, without this one.
            batch.attempts.remove(attempt)
            batch.sealed = True
            if self._batches.get(bkey) is batch:
                del self._batches[bkey]
            with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_DEADLINE):
                await self._sbatch(batch)
            raise
        batch.sealed = True
        if self._batches.get(bkey) is batch:
            del self._batches[bkey]
        with anyio.CancelScope(shield=True):
            await self._sbatch(batch)

    async def _sbatch(self, batch: _Batch) -> None:
        try:
            if not batch.attempts:
                return
            attempts = sorted(batch.attempts, key=lambda a: a.index or 0)
            pattern = output_pattern(attempts)
            script = script_path(attempts, uuid.uuid4().hex[:8])
            text = batch_script(attempts, self._argv_for, redirect=pattern is None)
            await anyio.to_thread.run_sync(_write_files, attempts, script, text)
            argv = sbatch_argv(attempts, script, self.options, pattern=pattern)
            rc, out, err = await self._command(argv)
            if rc == 0 and out.strip():
                batch.slurm_id = out.strip().split(";")[0]
            else:
                batch.error = err.strip() or f"sbatch exited with {rc}"
        except Exception as e:  # an unwritable log dir, a container runtime missing
            batch.error = str(e)
        finally:
            batch.done.set()

    def _argv_for(self, attempt: Attempt) -> Sequence[str] | None:
        if attempt.image is None:
            return None
        from flowbatch.executors import container

        runtime = container.choose_runtime(attempt.compute)
        return container.container_argv(
            attempt, runtime=runtime, name=container.container_name(attempt)
        )

    # -- waiting -------------------------------------------------------------------

    async def _wait(self, watch: _Watch, timeout: float | None) -> ExecResult | None:
        """The job's result, or None when it ran past `timeout` seconds of RUNNING."""
        while watch.result is None:
            if _overdue(watch, timeout):
                return None
            if not self._polling:
                self._polling = True
                try:
                    await self._poll_until(watch, timeout)
                finally:
                    self._polling = False
                    self._hand_on()
            else:
                limit = None
                if timeout is not None and watch.running_at is not None:
                    limit = watch.running_at + timeout - anyio.current_time()
                with anyio.move_on_after(limit):
                    await watch.wake.wait()
                watch.wake = anyio.Event()
        return watch.result

    def _hand_on(self) -> None:
        """Wake one waiter so that it takes the poller role."""
        for w in self._watches.values():
            if w.result is None:
                w.wake.set()
                return

    async def _poll_until(self, watch: _Watch, timeout: float | None) -> None:
        # A new poller keeps the pace of the one before it: one squeue per interval.
        await anyio.sleep(max(0.0, self._last_poll + self.poll_interval - anyio.current_time()))
        while watch.result is None:
            await self._poll()
            if watch.result is not None:
                return
            if timeout is not None and watch.running_at is not None:
                if anyio.current_time() - watch.running_at >= timeout:
                    return
                await anyio.sleep(
                    min(self.poll_interval, watch.running_at + timeout - anyio.current_time())
                )
            else:
                await anyio.sleep(self.poll_interval)

    async def _poll(self) -> None:
        """One squeue for every watched job; wake the ones whose state moved."""
        watching = [w for w in self._watches.values() if w.result is None]
        if not watching:
            return
        self._last_poll = anyio.current_time()
        ids = sorted({w.key.split("_", 1)[0] for w in watching})
        argv = ["squeue", "-h", "-t", "all", "-O", SQUEUE_FORMAT, f"--jobs={','.join(ids)}"]
        rc, out, err = await self._command(argv)
        if rc != 0 and "Invalid job id" not in err:
            return  # slurmctld busy or down: try again next interval
        rows = parse_squeue(out) if rc == 0 else []
        seen: set[str] = set()
        pending_tasks: dict[str, frozenset[int]] = {}
        now = anyio.current_time()
        for row in rows:
            if row.tasks is not None:
                pending_tasks[row.array_job_id] = (
                    pending_tasks.get(row.array_job_id, frozenset()) | row.tasks
                )
                continue
            seen.add(row.key)
            w = self._watches.get(row.key)
            if w is None or w.result is not None:
                continue
            w.missing = 0
            if w.running_at is None and row.state not in ("PENDING", "REQUEUED", "CONFIGURING"):
                w.running_at = now
                w.wake.set()
            if row.state in TERMINAL:
                w.result = result_of(row, host=w.host)
                w.wake.set()
        for w in watching:
            if w.key in seen or w.result is not None:
                continue
            base, _, task = w.key.partition("_")
            if task and int(task) in pending_tasks.get(base, frozenset()):
                continue
            w.missing += 1
            if w.missing >= GONE_POLLS:
                text = await anyio.to_thread.run_sync(_read_exit_file, w.log_stem)
                w.result = result_of_gone(w.key, text, host=w.host)
                w.wake.set()

    # -- cancelling ----------------------------------------------------------------

    async def _scancel(self, key: str) -> None:
        """scancel one SLURM job, coalesced with the others cancelled in the same tick."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_DEADLINE):
            self._cancel_keys.append(key)
            if self._cancel_done is not None:
                await self._cancel_done.wait()
                return
            done = self._cancel_done = anyio.Event()
            try:
                await anyio.sleep(self.coalesce_seconds)
                keys, self._cancel_keys = self._cancel_keys, []
                self._cancel_done = None
                ids = scancel_ids(keys)
                for i in range(0, len(ids), SCANCEL_CHUNK):
                    await self._command(["scancel", *ids[i : i + SCANCEL_CHUNK]])
            finally:
                if self._cancel_done is done:
                    self._cancel_done = None
                done.set()


def _overdue(watch: _Watch, timeout: float | None) -> bool:
    """Whether the job has been RUNNING for `timeout` seconds."""
    if timeout is None or watch.running_at is None:
        return False
    return anyio.current_time() - watch.running_at >= timeout


def _write_files(attempts: Sequence[Attempt], script: Path, text: str) -> None:
    """The batch script and each attempt's log files, private whatever the umask: the
    script holds the job's environment, the logs what the job printed. The logs are
    made here, empty, because SLURM would create them with the job's umask."""
    made: set[Path] = set()
    for a in attempts:
        if a.log_stem.parent not in made:  # one run directory for all of them, normally
            private_dir(a.log_stem.parent)
            made.add(a.log_stem.parent)
        for name in logfiles.STREAMS:
            os.close(private_file(logfiles.beside(a.log_stem, name)))
    private_dir(script.parent)
    fd = private_file(script)
    # surrogateescape: a value from the runner's environment keeps its bytes, UTF-8 or not.
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(text)


def _read_exit_file(log_path: Path) -> str | None:
    """The exit status the batch script wrote beside the logs (inside an adopted
    attempt's log directory, for one an older flowbatch submitted)."""
    try:
        return logfiles.recorded_file(log_path, EXIT_FILE).read_text()
    except OSError:
        return None


def _with_container_reason(result: ExecResult, attempt: Attempt) -> ExecResult:
    """A container's exit gets AWS's container.reason (an OOM kill exits 137), as on the
    local and ssh executors, so that `on_reason = "OutOfMemoryError*"` rules match."""
    if attempt.image is None or result.reason or result.exit_code is None:
        return result
    from flowbatch.executors.container import exit_reason

    return dataclasses.replace(result, reason=exit_reason(result.exit_code))
