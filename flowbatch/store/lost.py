"""Runs whose runner is gone: judging a runner from here, settling what it left, and the
attempts it may have left running.

A run records its runner as `pid@starttime` (`flowbatch.executors.processes`) with the machine,
its boot id and pid namespace. A runner of this machine, boot and namespace that is no
longer that process is gone: its run and unfinished jobs become FAILED (RUNNER_LOST), as
TerminateJob would make them, and the attempts that were running keep no stop time until
something sees them stop (`Stray`). A runner on another machine or in another pid
namespace (a container sharing the state directory) is never judged.

A pid and start time were preferred to a lock held for the run's life: they live in
the database itself, read the same from every command and name the runner in the
reason; a lock file is more robust across pid namespaces but says nothing of whom it
belonged to, and flock over NFS is unreliable.

The functions here run inside the caller's write transaction (`Store._write`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from flowbatch.executors import logfiles
from flowbatch.executors.processes import Process, zombie

RUNNER_LOST: Final = "Runner lost"
# Space set aside in the state directory while a run writes, given back when a write
# fails for want of it, so that a full disk still leaves a true record of the run's end.
RESERVE_NAME: Final = "reserve"
_RESERVE_BYTES: Final = 1 << 20
_NOT_DONE: Final = "COALESCE(status, 'SUBMITTED') NOT IN ('SUCCEEDED', 'FAILED')"


@dataclass(frozen=True, slots=True)
class Stray:
    """An attempt whose runner was lost while it ran (`stray_attempts`)."""

    job_id: str
    attempt: int
    run_id: str
    compute: str | None
    kind: str | None  # the compute environment's type (local, slurm, ssh), if recorded
    host: str | None
    external_id: str | None  # local: `pid@starttime` of its group leader; SLURM: job id
    here: bool  # its run's runner was on this machine
    same_boot: bool  # ... and the machine has not restarted since


def owner_state(
    pid: int | None, hostname: str | None, owner: str | None, boot: str | None
) -> Literal["alive", "gone", "elsewhere", "unknown"]:
    """Whether the runner of an unfinished run is alive, judged from here: its
    `pid@starttime` (`owner`; runs from before schema v4 have only the pid, and a live
    process with that pid is taken for it) on the same machine, boot and pid namespace
    (`boot`, as `boot_id` gives it). A runner on another machine, or in another pid
    namespace (a container), cannot be judged from here."""
    where = _compare(boot)
    if hostname != socket.gethostname() or where == "elsewhere":
        return "elsewhere"
    if where == "rebooted":
        return "gone"
    proc = Process.parse(owner) if owner else None
    if proc is None:
        if pid is None:
            return "unknown"
        proc = Process(int(pid), None)
    # A runner killed but not yet reaped by its parent (a script that never waits) is a
    # zombie: it will never write again.
    return "alive" if proc.alive() and not zombie(proc.pid) else "gone"


@functools.cache
def boot_id() -> str | None:
    """This boot of this machine and the pid namespace seen from here, as `BOOT
    pid:[INODE]`: pids and start times repeat across reboots and mean nothing in
    another namespace."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
    except OSError:
        return None
    try:
        return f"{boot} {os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return boot or None


def _compare(recorded: str | None) -> Literal["same", "rebooted", "elsewhere"]:
    here = boot_id()
    if recorded is None or here is None:
        return "same"  # not recorded (or no /proc): the pid is all there is
    boot, _, namespace = recorded.partition(" ")
    here_boot, _, here_namespace = here.partition(" ")
    if boot != here_boot:
        return "rebooted"
    if namespace and here_namespace and namespace != here_namespace:
        return "elsewhere"
    return "same"


def lost_runs(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """(run id, reason) of every unfinished run whose runner is gone."""
    return [
        (
            str(run_id),
            f"{RUNNER_LOST}: `flowbatch run` (pid {pid} on {host}) ended without finishing the run",
        )
        for run_id, pid, host, owner, boot in conn.execute(
            # A standing run (flowbatch server's) is settled by the server when it starts
            # again, by its jobs' retry strategies: no other command touches it.
            "SELECT run_id, pid, hostname, owner, boot_id FROM runs WHERE status IS NULL"
            " AND pipeline != '(flowbatch server)'"
        )
        if owner_state(pid, host, owner, boot) == "gone"
    ]


def settle(conn: sqlite3.Connection, run_id: str, reason: str, when: float, log_root: Path) -> bool:
    """Record a run whose runner is gone as FAILED with `reason`, and its unfinished
    jobs with it; False if another command settled it first. `log_root` is the run's
    log directory (`logs/RUN_ID`), where attempts the runner died before recording
    are found (`recover_attempts`)."""
    done = conn.execute(
        "UPDATE runs SET status = 'FAILED', ended_at = ?, reason = ?"
        " WHERE run_id = ? AND status IS NULL",
        (when, reason, run_id),
    )
    if not done.rowcount:
        return False
    recover_attempts(conn, run_id, log_root, reason, when)
    fail_unfinished(conn, run_id, reason, when, attempts_ended=False)
    return True


def fail_unfinished(
    conn: sqlite3.Connection, run_id: str, reason: str, when: float, *, attempts_ended: bool
) -> None:
    """Every job of `run_id` not done becomes FAILED with `reason`, as TerminateJob
    would make it, with an event that says so. Its open attempts get `reason`, and a
    stop time only if they are known to have `attempts_ended`."""
    conn.execute(
        "INSERT INTO events (run_id, job_id, state, time, reason, attempt, exit_code,"
        " applied) SELECT run_id, job_id, 'FAILED', ?, ?, attempt, NULL, 1 FROM jobs"
        f" WHERE run_id = ? AND {_NOT_DONE}",
        (when, reason, run_id),
    )
    conn.execute(
        "UPDATE attempts SET status_reason = ?, stopped_at = ?"
        " WHERE run_id = ? AND stopped_at IS NULL",
        (reason, when if attempts_ended else None, run_id),
    )
    conn.execute(
        "UPDATE jobs SET status = 'FAILED', status_reason = ?, stopped_at = ?"
        f" WHERE run_id = ? AND {_NOT_DONE}",
        (reason, when, run_id),
    )


def recover_attempts(
    conn: sqlite3.Connection, run_id: str, log_root: Path, reason: str, when: float
) -> None:
    """Record the attempts of `run_id`'s unfinished jobs that started but that the
    runner died before writing down: an executor makes an attempt's log files
    (`executors.logfiles`) before it starts the job, and the runner records the attempt
    only at its next flush, so logs beyond the attempts the store knows are of an
    attempt that started, and may have printed. FAILED with `reason`, no start time or
    exit code (unknown). Unlike the open attempts of a lost run they get a stop time
    (`when`): their process was never recorded, so no command could judge or stop it,
    and as a `Stray` it would hold `run --resume` back for ever; the runner's reaper
    stops it."""
    found = logfiles.started(log_root)
    if not found:
        return
    # An array child's logs are under its parent's name (children carry no static facts).
    unfinished = conn.execute(
        "SELECT j.job_id, COALESCE(p.name, j.name), j.array_index, j.attempt"
        " FROM jobs j LEFT JOIN jobs p ON p.job_id = j.parent_id"
        " WHERE j.run_id = ? AND COALESCE(j.status, 'SUBMITTED') NOT IN ('SUCCEEDED', 'FAILED')"
        " AND (j.parent_id IS NOT NULL OR j.array_size IS NULL)",
        (run_id,),
    )
    for job_id, name, index, known in unfinished.fetchall():
        log_path = {n: path for n, path in found.get((str(name), index), {}).items() if n > known}
        if not log_path:
            continue
        conn.executemany(
            "INSERT OR IGNORE INTO attempts (job_id, attempt, run_id, log_path,"
            " status_reason, reason, stopped_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(job_id, n, run_id, path, reason, _UNRECORDED, when) for n, path in log_path.items()],
        )
        last = max(log_path)
        conn.execute(
            "UPDATE jobs SET attempt = ?, log_path = ? WHERE job_id = ?",
            (last, log_path[last], job_id),
        )


_UNRECORDED: Final = "started just before its runner was lost, which never recorded its process"


def stray_attempts(conn: sqlite3.Connection, job_id: str | None, run_id: str | None) -> list[Stray]:
    """Attempts of an ended run that have no stop time: their runner was lost while
    they ran, so their processes may still run. Of one job (an array job: of its
    children), of one run, or all."""
    query = (
        "SELECT a.job_id, a.attempt, a.compute, a.host, a.external_id, r.run_id,"
        " r.hostname, r.boot_id, r.computes FROM attempts a JOIN runs r USING (run_id)"
        " WHERE a.stopped_at IS NULL AND r.status IS NOT NULL"
    )
    args: list[object] = []
    if run_id is not None:
        query += " AND a.run_id = ?"
        args.append(run_id)
    if job_id is not None:
        query += " AND (a.job_id = ? OR a.job_id IN (SELECT job_id FROM jobs WHERE parent_id = ?))"
        args += [job_id, job_id]
    out = []
    for jid, n, compute, host, ext, rid, run_host, boot, computes in conn.execute(
        query + " ORDER BY a.job_id, a.attempt", args
    ):
        out.append(
            Stray(
                job_id=str(jid),
                attempt=int(n),
                run_id=str(rid),
                compute=compute,
                kind=json.loads(computes or "{}").get(compute),
                host=host,
                external_id=ext,
                here=run_host == socket.gethostname() and _compare(boot) != "elsewhere",
                same_boot=_compare(boot) != "rebooted",
            )
        )
    return out


def mark_stopped(conn: sqlite3.Connection, stray: Stray, reason: str, when: float) -> None:
    """Record that a stray attempt's process is gone (stopped, or found dead)."""
    conn.execute(
        "UPDATE attempts SET stopped_at = ?, reason = COALESCE(NULLIF(reason, ''), ?)"
        " WHERE job_id = ? AND attempt = ? AND stopped_at IS NULL",
        (when, reason, stray.job_id, stray.attempt),
    )


def make_reserve(state_dir: Path) -> None:
    """Set `_RESERVE_BYTES` aside in `state_dir` (really allocated, not a sparse file,
    private); best effort."""
    where = state_dir / RESERVE_NAME
    try:
        fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.posix_fallocate(fd, 0, _RESERVE_BYTES)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(where)  # no room even for this: nothing is set aside
    finally:
        os.close(fd)


def release_reserve(state_dir: Path) -> bool:
    """Give the reserve back; False if there was none."""
    try:
        os.unlink(state_dir / RESERVE_NAME)
    except OSError:
        return False
    return True
