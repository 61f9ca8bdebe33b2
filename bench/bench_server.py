"""flowbatch server under load (issue 11), run by hand, never in CI.

Starts a real `flowbatch server` on a free loopback port with a fresh state directory
and measures, through unmodified boto3 clients (each request signed with SigV4 and
checked by the server):

  submit     SubmitJob requests/s from 8 concurrent clients (threads, one boto3 client
             each) into several queues whose environment is DISABLED, so that the jobs
             stay queued and the figure is the API's, not the jobs'
  describe   DescribeJobs of 100 ids: median and p95 latency
  list       ListJobs pages of 100 over the queued jobs
  array      one 10,000-child array submitted, then DescribeJobs while it is held
  memory     the server's RSS with N jobs queued, and after N `true` jobs finished

    python bench/bench_server.py [--jobs 100000] [--finished 100000] [--clients 8]

Targets (issue 11): SubmitJob >= 500/s from 8 clients, DescribeJobs of 100 ids < 50 ms,
100,000 jobs queued and a 10,000-child array held without slowing the API, the server
under 300 MiB with 100,000 finished jobs. Note `uptime` beside any figure.
"""

from __future__ import annotations

import argparse
import os
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.session

ROOT = Path(__file__).resolve().parent.parent


def start(state: Path) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowbatch", "server", "--listen", "127.0.0.1:0",
         "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sel.select(timeout=1):
                line = proc.stdout.readline()
                if line.startswith("listening on "):
                    return proc, line.split()[-1]
    proc.kill()
    raise SystemExit("the server did not start")


def client(state: Path, url: str) -> Any:
    session = botocore.session.Session()
    session.set_config_variable("credentials_file", str(state / "credentials"))
    session.set_config_variable("profile", "flowbatch")
    config = botocore.config.Config(retries={"max_attempts": 1}, max_pool_connections=4)
    return boto3.Session(botocore_session=session, region_name="us-east-1").client(
        "batch", endpoint_url=url, config=config
    )


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def setup(batch: Any, queues: int, *, enabled: bool) -> list[str]:
    state = "ENABLED" if enabled else "DISABLED"
    batch.create_compute_environment(
        computeEnvironmentName="ce", type="UNMANAGED", unmanagedvCpus=2, state=state
    )
    names = [f"q{i}" for i in range(queues)]
    for i, name in enumerate(names):
        batch.create_job_queue(
            jobQueueName=name, priority=i + 1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "ce"}],
        )  # fmt: skip
    batch.register_job_definition(
        jobDefinitionName="true", type="container", containerProperties={"command": ["true"]}
    )
    return names


def submit_many(
    state: Path, url: str, total: int, clients: int, queues: list[str]
) -> tuple[float, list[str]]:
    ids: list[str] = []
    lock = threading.Lock()
    per = total // clients

    def work(n: int) -> None:
        batch = client(state, url)
        mine = []
        for i in range(per):
            job = batch.submit_job(
                jobName=f"j{n}-{i}", jobQueue=queues[i % len(queues)], jobDefinition="true"
            )
            mine.append(job["jobId"])
        with lock:
            ids.extend(mine)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, ids


def describe_latency(batch: Any, ids: list[str], rounds: int = 50) -> tuple[float, float]:
    times = []
    for r in range(rounds):
        chunk = ids[(r * 100) % max(1, len(ids) - 100) :][:100]
        t0 = time.perf_counter()
        found = batch.describe_jobs(jobs=chunk)["jobs"]
        times.append(time.perf_counter() - t0)
        assert len(found) == len(chunk)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--finished", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    print(f"uptime: {os.getloadavg()}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-server-"))
    try:
        # -- queued: the API's own speed -------------------------------------------------
        state = tmp / "queued"
        proc, url = start(state)
        try:
            batch = client(state, url)
            queues = setup(batch, 4, enabled=False)
            _warm, _ = submit_many(state, url, 800, args.clients, queues)
            took, ids = submit_many(state, url, args.jobs, args.clients, queues)
            print(f"submit: {len(ids)} jobs in {took:.1f} s = {len(ids) / took:.0f}/s "
                  f"({args.clients} clients, 4 queues, environment disabled)")  # fmt: skip
            med, p95 = describe_latency(batch, ids)
            print(
                f"describe 100 ids with {len(ids)} queued: median {med * 1000:.1f} ms,"
                f" p95 {p95 * 1000:.1f} ms"
            )
            t0 = time.perf_counter()
            pages = 0
            for _page in batch.get_paginator("list_jobs").paginate(
                jobQueue="q0", jobStatus="RUNNABLE", PaginationConfig={"PageSize": 100}
            ):
                pages += 1
                if pages == 50:
                    break
            print(f"list: {pages} pages of 100 in {time.perf_counter() - t0:.2f} s")
            arr = batch.submit_job(
                jobName="big", jobQueue="q0", jobDefinition="true",
                arrayProperties={"size": 10_000},
            )  # fmt: skip
            med, p95 = describe_latency(batch, ids)
            print(
                f"describe with a 10,000-child array held too: median {med * 1000:.1f} ms,"
                f" p95 {p95 * 1000:.1f} ms"
            )
            print(f"server RSS with {len(ids) + 10_000} jobs queued: {rss_mib(proc.pid):.0f} MiB")
            del arr
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        # -- finished: memory after N `true` jobs ran ---------------------------------------
        state = tmp / "finished"
        proc, url = start(state)
        try:
            batch = client(state, url)
            queues = setup(batch, 1, enabled=True)
            took, ids = submit_many(state, url, args.finished, args.clients, queues)
            t0 = time.perf_counter()
            while True:
                summary = batch.list_jobs(jobQueue="q0", jobStatus="SUCCEEDED", maxResults=1)
                left = [
                    s for st in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
                    for s in batch.list_jobs(jobQueue="q0", jobStatus=st, maxResults=1)[
                        "jobSummaryList"
                    ]
                ]  # fmt: skip
                if not left and summary["jobSummaryList"]:
                    break
                time.sleep(1)
            print(f"finished: {len(ids)} `true` jobs submitted in {took:.1f} s, all ended "
                  f"{time.perf_counter() - t0:.1f} s later;"
                  f" server RSS {rss_mib(proc.pid):.0f} MiB")  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
