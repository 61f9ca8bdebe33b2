"""Benchmark: per-job overhead of the SSH executor against the local one.

Runs N `true` jobs through each executor, `--parallel` at a time, and reports the wall
time, the time per job and the ratio ssh/local. The ssh side includes opening its
connection once (reported separately as the first job's latency); every job after that
is one channel on the same connection.

    python bench/bench_ssh.py [--jobs 200] [--parallel 2]

By default it starts its own sshd on loopback with the test fixture (as root, after
`bash ci/engines/ssh.sh`); `--port/--known-hosts/--identity/--user` use an existing one.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from flowbatch.executors.base import Attempt, ExecResult, Executor
from flowbatch.executors.local import LocalExecutor
from flowbatch.executors.ssh import SshExecutor
from flowbatch.lang.model import ComputeEnv, Host, local_compute


def _attempt(ce: ComputeEnv, root: Path, i: int, host: str) -> Attempt:
    log_dir = root / "logs" / ce.name
    log_dir.mkdir(parents=True, exist_ok=True)  # the runner's job, before it calls an executor
    return Attempt(
        run_id="bench",
        job_id=f"bench-{i}",
        name="bench",
        index=i,
        attempt=1,
        command="true",
        env={"AWS_BATCH_JOB_ID": f"bench-{i}"},
        workdir=root,
        vcpus=1,
        memory=16,
        gpus=0,
        timeout=None,
        image=None,
        log_stem=log_dir / f"bench.{i}.attempt-1",
        compute=ce,
        host=host,
    )


async def _drive(ex: Executor, attempts: list[Attempt], parallel: int) -> tuple[float, float]:
    """(total seconds, seconds until the first job ended) for `attempts`, `parallel` at a time."""
    limiter = anyio.CapacityLimiter(parallel)
    results: list[ExecResult] = []
    first = 0.0
    start = time.perf_counter()

    async def one(a: Attempt, *, task_status: TaskStatus[str]) -> None:
        results.append(await ex.run(a, task_status=task_status))

    async def place(a: Attempt) -> None:
        nonlocal first
        async with limiter, anyio.create_task_group() as tg:
            await tg.start(one, a)
        if not first:
            first = time.perf_counter() - start

    async with anyio.create_task_group() as tg:
        for a in attempts:
            tg.start_soon(place, a)
    total = time.perf_counter() - start
    bad = [r for r in results if not r.ok]
    if bad or len(results) != len(attempts):
        raise SystemExit(f"{len(bad)} of {len(attempts)} jobs failed: {bad[:3]}")
    return total, first


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-ssh-") as tmp:
        root = Path(tmp)
        root.chmod(0o777)  # the ssh jobs run as the remote user
        server: Any = None
        if args.port is None:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
            # tests/ is not a package; the fixture module is found on the path above.
            server = importlib.import_module("ssh_fixtures").make_server(root / "sshd")
            server.start()
            port, known, identity, user = (
                server.port,
                str(server.known_hosts),
                str(server.client_key),
                server.user,
            )
        else:
            port, known, identity, user = args.port, args.known_hosts, args.identity, args.user
        try:
            host = Host(
                name="h1", vcpus=64, memory=65536, address="127.0.0.1", port=port, user=user
            )
            ssh_ce = ComputeEnv(
                name="remote",
                type="ssh",
                vcpus=64,
                memory=65536,
                options={"known_hosts": known, "identity": identity},
                hosts=(host,),
            )
            local_ce = local_compute(64, 65536)
            local = LocalExecutor(local_ce)
            ssh = SshExecutor(ssh_ce)
            n, p = args.jobs, args.parallel
            local_total, _ = await _drive(
                local, [_attempt(local_ce, root, i, "localhost") for i in range(n)], p
            )
            ssh_total, ssh_first = await _drive(
                ssh, [_attempt(ssh_ce, root, i, "h1") for i in range(n)], p
            )
            await local.aclose()
            await ssh.aclose()
        finally:
            if server is not None:
                server.stop()
    print(f"jobs={n} parallel={p} (`true`, OpenSSH on loopback)")
    print(f"local: {local_total:.2f} s total, {local_total / n * 1000:.1f} ms/job")
    print(
        f"ssh:   {ssh_total:.2f} s total, {ssh_total / n * 1000:.1f} ms/job "
        f"(first job incl. connect {ssh_first * 1000:.0f} ms; "
        f"{ssh.connections_opened} connection(s))"
    )
    print(f"ratio ssh/local: {ssh_total / local_total:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--port", type=int)
    parser.add_argument("--known-hosts")
    parser.add_argument("--identity")
    parser.add_argument("--user", default="fbtest")
    anyio.run(main, parser.parse_args())
