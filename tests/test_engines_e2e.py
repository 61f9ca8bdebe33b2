"""One shipped example pipeline, end to end through `flowbatch run`, on every engine.

pipelines/post_trade.flow has an array (`trades`), N_TO_N chains (`enrich`, `pnl`) and a
fan-in (`report` waits for every `pnl` child). Its queues run on `local`; the SLURM and
SSH runs bring a compute environment from tests/engines/ with `--computes` and move the
queues onto it with `--compute local=NAME`, without editing the pipeline. Each run works
in a fresh copy of pipelines/ and must write the same bytes under out/ as the local run,
with every job and array child SUCCEEDED in the store on the intended environment.

The copies sit in a mode-777 directory directly under the system temp dir: the SSH jobs
run as the user `fbtest`, who cannot traverse pytest's mode-700 tmp_path.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import ssh_fixtures
from engine_helpers import engine_unavailable
from proc_helpers import Spawner
from server_process import make_queue, start_server
from ssh_fixtures import SshServer

from flowbatch.lang.load import load
from flowbatch.run.fingerprint import Fingerprints
from flowbatch.store.jobstore import Store

sshd = ssh_fixtures.sshd

REPO = Path(__file__).resolve().parent.parent
PIPELINES = REPO / "pipelines"
ENGINES = Path(__file__).resolve().parent / "engines"
PIPELINE = "post_trade.flow"
# Bounds on real waits: a whole run, and a job reaching a state.
RUN_TIMEOUT = 300.0
WAIT = 60.0


@dataclass(frozen=True)
class Run:
    """A finished `flowbatch run`: its pipeline copy, state dir and process result."""

    work: Path
    state: Path
    proc: subprocess.CompletedProcess[str]

    @property
    def pipeline(self) -> Path:
        return self.work / PIPELINE


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """A directory every user may enter and write in; removed at the end."""
    root = Path(tempfile.mkdtemp(prefix="flowbatch-e2e-"))
    os.chmod(root, 0o777)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _fresh_copy(scratch: Path, name: str) -> Path:
    """pipelines/ copied without earlier outputs or state, writable by every user."""
    work = scratch / name
    shutil.copytree(
        PIPELINES, work, ignore=shutil.ignore_patterns("out", ".flowbatch", "__pycache__")
    )
    for path in [work, *work.rglob("*")]:
        mode = path.stat().st_mode
        extra = 0o777 if path.is_dir() else 0o666 | (0o111 if mode & stat.S_IXUSR else 0)
        path.chmod(stat.S_IMODE(mode) | extra)
    return work


def _flowbatch_run(work: Path, *extra: str, env: dict[str, str] | None = None) -> Run:
    state = work.parent / f"{work.name}-state"
    argv = [sys.executable, "-m", "flowbatch", "run", str(work / PIPELINE)]
    proc = subprocess.run(
        [*argv, "--state-dir", str(state), *extra],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=env,
    )
    return Run(work=work, state=state, proc=proc)


def _outputs(work: Path) -> dict[str, bytes]:
    out = work / "out"
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _expected_processes(pipeline: Path) -> set[str]:
    """Every single job and array child the pipeline declares, as `name` / `name[i]`."""
    jobs = load(pipeline).pipeline.jobs
    names: set[str] = set()
    for name, spec in jobs.items():
        if spec.array_size is None:
            names.add(name)
        else:
            names.update(f"{name}[{i}]" for i in range(spec.array_size))
    return names


def _final_states(run: Run) -> dict[str, tuple[str, str | None]]:
    """(status, compute environment) of every single job and array child of the latest run."""
    store = Store.open(run.state)
    try:
        run_id = store.latest_run(str(run.pipeline))
        assert run_id is not None, "the run left no record in the store"
        found: dict[str, tuple[str, str | None]] = {}
        for job in store.jobs(run_id=run_id):
            children = store.jobs(parent=job["jobId"])
            if not children:
                found[job["jobName"]] = (job["status"], _compute_of(store, job["jobId"]))
            for child in children:
                index = child["jobId"].rpartition(":")[2]
                key = f"{job['jobName']}[{index}]"
                found[key] = (child["status"], _compute_of(store, child["jobId"]))
        return found
    finally:
        store.close()


def _compute_of(store: Store, job_id: str) -> str | None:
    value = store.describe(job_id).get("computeEnvironment")
    return str(value) if value is not None else None


def _assert_all_succeeded_on(run: Run, compute: str) -> None:
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    states = _final_states(run)
    assert set(states) == _expected_processes(run.pipeline)
    wrong = {name: got for name, got in states.items() if got != ("SUCCEEDED", compute)}
    assert not wrong, wrong


@pytest.fixture(scope="module")
def local_run(scratch: Path) -> tuple[Run, dict[str, bytes]]:
    """The reference: the pipeline as shipped, on this machine."""
    run = _flowbatch_run(_fresh_copy(scratch, "local"))
    _assert_all_succeeded_on(run, "local")
    outputs = _outputs(run.work)
    return run, outputs


@pytest.mark.slow
def test_local_run_writes_every_declared_output(local_run: tuple[Run, dict[str, bytes]]) -> None:
    """The reference must not be vacuous: every output pattern of every job matched."""
    run, outputs = local_run
    plan = load(run.pipeline)
    fingerprints = Fingerprints(plan)  # renders templated outputs for each child
    declared, missing = 0, []
    for name, spec in plan.pipeline.jobs.items():
        declared += len(spec.outputs)
        for index in range(spec.array_size) if spec.array_size else [None]:
            missing += fingerprints.outputs_missing(name, index)
    assert declared and not missing, missing
    assert all(outputs.values()), [name for name, data in outputs.items() if not data]


# -- SLURM ----------------------------------------------------------------------------


def _slurm_computes(tmp_path: Path) -> Path:
    """tests/engines/slurm.flow, on FLOWBATCH_TEST_SLURM_PARTITION when that is set."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        engine_unavailable("slurm", "sinfo or sbatch is not on PATH")
    probe = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if probe.returncode != 0 or not probe.stdout.strip():
        engine_unavailable("slurm", f"sinfo failed: {probe.stderr.strip()}")
    shipped = ENGINES / "slurm.flow"
    partition = os.environ.get("FLOWBATCH_TEST_SLURM_PARTITION") or "debug"
    if partition == "debug":
        return shipped
    text = shipped.read_text()
    assert 'partition     = "debug"' in text
    path = tmp_path / "slurm.flow"
    path.write_text(text.replace('partition     = "debug"', f'partition     = "{partition}"'))
    return path


@pytest.mark.slow
@pytest.mark.slurm
def test_post_trade_on_slurm_writes_the_same_bytes_as_local(
    local_run: tuple[Run, dict[str, bytes]], scratch: Path, tmp_path: Path
) -> None:
    computes = _slurm_computes(tmp_path)
    work = _fresh_copy(scratch, "slurm")
    run = _flowbatch_run(work, "--computes", str(computes), "--compute", "local=cluster")
    _assert_all_succeeded_on(run, "cluster")
    assert _outputs(work) == local_run[1]


# -- SSH ------------------------------------------------------------------------------


def _ssh_computes(server: SshServer, directory: Path) -> Path:
    """A compute environment `remote` on the test sshd (its port and keys change per session)."""
    path = directory / "ssh.flow"
    path.write_text(
        f"""# The test sshd of this session, for `--computes`.
compute remote {{
  type        = "ssh"
  known_hosts = "{server.known_hosts}"
  identity    = "{server.client_key}"
  hosts       = [
    {{ address = "127.0.0.1", port = {server.port}, user = "{server.user}",
       vcpus = 2, memory = 2GiB, name = "h1" }},
  ]
}}
"""
    )
    return path


@pytest.mark.slow
@pytest.mark.ssh
def test_post_trade_over_ssh_writes_the_same_bytes_as_local(
    local_run: tuple[Run, dict[str, bytes]], sshd: SshServer, scratch: Path, tmp_path: Path
) -> None:
    computes = _ssh_computes(sshd, tmp_path)
    work = _fresh_copy(scratch, "ssh")
    run = _flowbatch_run(work, "--computes", str(computes), "--compute", "local=remote")
    _assert_all_succeeded_on(run, "remote")
    assert _outputs(work) == local_run[1]
    # Written by the remote user, so the jobs really ran through sshd.
    fbtest = pwd.getpwnam(sshd.user).pw_uid
    assert {p.stat().st_uid for p in (work / "out").rglob("*") if p.is_file()} == {fbtest}


# -- a host lost mid-run ----------------------------------------------------------------

# Attempt 1 sleeps on the host until the host goes away; attempt 2 finishes the job.
# `$$` is the sleep's pid (exec), so the test can clean up what the dead host left.
HOST_LOST_PIPELINE = '''
job hold {
  command = """
    echo $$ > pid.{{ job.attempt }}
    [ {{ job.attempt }} -gt 1 ] || exec sleep 120
    echo recovered > hold.txt
    """
  retry { attempts = 2 }
}

job after_hold {
  after   = [hold]
  command = "cat hold.txt > done.txt"
}
'''


def _hold_pipeline(work: Path) -> tuple[Path, Path, Path]:
    """`work` (writable by the ssh user, who runs the jobs there), the pipeline in it,
    and its state directory."""
    work.mkdir(mode=0o777)
    work.chmod(0o777)
    pipeline = work / "hold.flow"
    pipeline.write_text(HOST_LOST_PIPELINE)
    return work, pipeline, work / ".flowbatch"


def _wait_for(what: str, condition: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"flowbatch run ended ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)  # polling a real condition, bounded by the deadline


def _hold_attempts(state: Path, pipeline: Path) -> list[dict[str, object]]:
    if not (state / "jobs.db").exists():
        return []
    store = Store.open(state)
    try:
        run_id = store.latest_run(str(pipeline))
        jobs = store.jobs(run_id=run_id, name="hold") if run_id else []
        return list(store.describe(jobs[0]["jobId"])["attempts"]) if jobs else []
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.ssh
def test_a_host_lost_mid_run_is_retried_when_it_comes_back(
    sshd: SshServer, scratch: Path, tmp_path: Path, spawn: Spawner
) -> None:
    """sshd dies under a running job: the attempt fails as AWS's host termination, the
    host takes no work until it answers again, then the retry and its dependent run."""
    work, pipeline, state = _hold_pipeline(scratch / "host-lost")
    computes = _ssh_computes(sshd, tmp_path)
    argv = [sys.executable, "-m", "flowbatch", "run", str(pipeline), "--state-dir", str(state)]
    proc = spawn(
        [*argv, "--computes", str(computes), "--compute", "local=remote"],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for("the first attempt to start remotely", (work / "pid.1").exists, proc)
        try:
            sshd.stop()
            _wait_for(
                "the first attempt to end",
                lambda: bool(_hold_attempts(state, pipeline)),
                proc,
            )
        finally:
            sshd.start()
        _, stderr = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        _kill_left_behind(work / "pid.1")
    assert proc.returncode == 0, stderr[-3000:]
    attempts = _hold_attempts(state, pipeline)
    assert [a["statusReason"] for a in attempts][:1] == ["Host EC2 (instance h1) terminated."]
    assert len(attempts) == 2
    assert (work / "done.txt").read_text() == "recovered\n"


@pytest.mark.slow
@pytest.mark.ssh
def test_a_run_gives_up_on_a_host_that_does_not_come_back(
    sshd: SshServer, scratch: Path, tmp_path: Path, spawn: Spawner
) -> None:
    """The host stays away: after `--host-timeout` what is left fails with a reason that
    names the host, and the run exits 1 instead of waiting for ever."""
    work, pipeline, state = _hold_pipeline(scratch / "host-gone")
    computes = _ssh_computes(sshd, tmp_path)
    proc = spawn(
        [sys.executable, "-m", "flowbatch", "run", str(pipeline), "--state-dir", str(state),
         "--computes", str(computes), "--compute", "local=remote", "--host-timeout", "2s"],
        cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for("the first attempt to start remotely", (work / "pid.1").exists, proc)
        try:
            sshd.stop()
            _, stderr = proc.communicate(timeout=RUN_TIMEOUT)
        finally:
            sshd.start()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        _kill_left_behind(work / "pid.1")
    assert proc.returncode == 1, stderr[-3000:]
    with Store.open(state, create=False) as store:
        run_id = store.latest_run(str(pipeline))
        assert run_id is not None
        jobs = {j["jobName"]: store.describe(j["jobId"]) for j in store.jobs(run_id=run_id)}
    hold, after = jobs["hold"], jobs["after_hold"]
    assert hold["status"] == "FAILED" and after["status"] == "FAILED"
    assert hold["statusReason"] == "Host lost: no host came back within 2s (h1 of `remote`)"
    assert [a["statusReason"] for a in hold["attempts"]] == ["Host EC2 (instance h1) terminated."]
    assert not (work / "done.txt").exists()


def _kill_left_behind(pid_file: Path) -> None:
    """The "terminated host" leaves its job running (sshd.stop spares users' processes)."""
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)


# -- containers on SLURM ----------------------------------------------------------------

CONTAINERS = """\
job hello {
  image   = "localhost/flowbatch-busybox:test"
  command = "hostname > from-container.txt"
  memory  = 128MiB
}
job hog {
  image   = "localhost/flowbatch-busybox:test"
  command = "head -c 300m /dev/zero | tail > /dev/null"
  memory  = 64MiB
  retry {
    attempts = 2
    evaluate_on_exit = [{ on_reason = "OutOfMemoryError*", action = "retry" }]
  }
}
"""


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.podman
def test_containers_run_on_slurm_and_an_oom_kill_is_retried(tmp_path: Path) -> None:
    """`image` works on a SLURM environment as on local: the job runs inside the
    container, and a memory-limit kill carries AWS's OutOfMemoryError reason, which a
    retry rule written for AWS matches."""
    computes = _slurm_computes(tmp_path)
    if shutil.which("podman") is None:
        engine_unavailable("podman", "podman is not on PATH")
    (tmp_path / "c.flow").write_text(CONTAINERS)
    state = tmp_path / "state"
    proc = subprocess.run(
        [sys.executable, "-m", "flowbatch", "run", "c.flow", "--state-dir", str(state),
         "--computes", str(computes), "--compute", "local=cluster"],
        cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # the hog fails for good after its retry
    # The container's hostname is its id, not this machine's name.
    assert (tmp_path / "from-container.txt").read_text().strip() != os.uname().nodename
    with Store.open(state, create=False) as store:
        run_id = store.latest_run()
        assert run_id is not None
        jobs = {j["jobName"]: store.describe(j["jobId"]) for j in store.jobs(run_id=run_id)}
    assert jobs["hello"]["status"] == "SUCCEEDED"
    assert jobs["hello"]["attempts"][0]["computeEnvironment"] == "cluster"
    hog = jobs["hog"]["attempts"]
    assert [a["container"]["exitCode"] for a in hog] == [137, 137]
    assert all(a["container"]["reason"].startswith("OutOfMemoryError") for a in hog)
    assert not (tmp_path / "oom").exists()  # conmon#504: the runtime ran elsewhere


# -- containers over SSH -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.ssh
@pytest.mark.podman
def test_containers_run_on_an_ssh_host(sshd: SshServer, scratch: Path, tmp_path: Path) -> None:
    """`image` on an ssh compute environment: the host's podman (rootless, as the ssh
    user) runs the job, with the working directory mounted and the job's env passed."""
    probe = subprocess.run(
        ["runuser", "-u", sshd.user, "--", "podman", "--log-level=error", "image", "exists",
         "localhost/flowbatch-busybox:test"],
        cwd="/", capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )  # fmt: skip
    if probe.returncode != 0:
        engine_unavailable("podman", f"no image for {sshd.user} ({probe.stderr.strip()})")
    work = scratch / "ssh-containers"
    work.mkdir(mode=0o777)
    work.chmod(0o777)
    (work / "c.flow").write_text(
        'job hello {\n  image = "localhost/flowbatch-busybox:test"\n'
        '  command = "echo $GREETING from $(hostname) > from-container.txt"\n'
        '  env = { GREETING = "hi" }\n}\n'
    )
    computes = _ssh_computes(sshd, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "flowbatch", "run", "c.flow", "--state-dir",
         str(tmp_path / "state"), "--computes", str(computes), "--compute", "local=remote"],
        cwd=work, capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    greeting, _, host = (work / "from-container.txt").read_text().split()
    assert greeting == "hi" and host != os.uname().nodename  # a container's own hostname
    assert (work / "from-container.txt").stat().st_uid == pwd.getpwnam(sshd.user).pw_uid


# -- AWS Batch's API, served by flowbatch server ----------------------------------------


@pytest.mark.slow
def test_post_trade_through_aws_batch_on_flowbatch_server_writes_the_same_bytes(
    local_run: tuple[Run, dict[str, bytes]], spawn: Spawner, scratch: Path
) -> None:
    """Issue 12's AWS path end to end: `--compute local=aws` sends every attempt through
    AWS Batch's API (the aws_batch executor, botocore) to a real flowbatch server, whose
    jobs run in a copy of pipelines/ of their own."""
    work = _fresh_copy(scratch, "aws")
    server = start_server(spawn, scratch / "aws-server", "--workdir", str(work))
    batch = server.client()
    make_queue(batch, "q")
    computes = scratch / "aws.flow"
    computes.write_text(
        "compute aws {\n"
        '  type = "aws_batch"\n  job_queue = "q"\n  region = "us-east-1"\n'
        f'  endpoint = "{server.url}"\n  poll_interval = 0.2\n}}\n'
    )
    run = _flowbatch_run(
        work, "--computes", str(computes), "--compute", "local=aws", env=server.env
    )
    _assert_all_succeeded_on(run, "aws")
    assert _outputs(work) == local_run[1]
    # and the server ran them: each attempt is a job it keeps
    listed = batch.list_jobs(jobQueue="q", jobStatus="SUCCEEDED")["jobSummaryList"]
    assert listed
