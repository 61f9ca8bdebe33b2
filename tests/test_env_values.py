"""Hostile values on every way a job's environment travels: into a local container
(an env-file on the runtime's stdin), through the ssh wrapper that evals it from the
channel's stdin (with and without a container), and through a SLURM batch script. Each
value arrives byte for byte and none becomes shell syntax (`pwned` is never made).

The remote wrapper and the batch script are run here by a real /bin/sh, exactly as the
host or the node runs them (the ssh test against a real sshd is in test_ssh.py), and
containers by the real podman.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
from anyio.abc import TaskStatus
from engine_helpers import engine_unavailable
from env_helpers import HOSTILE_ENV, env0, loose_umask, mode

from flowbatch.executors import logfiles
from flowbatch.executors.base import Attempt, ExecResult
from flowbatch.executors.container import (
    ContainerError,
    container_argv,
    container_name,
    env_file_text,
)
from flowbatch.executors.local import LocalExecutor
from flowbatch.executors.slurm import _write_files
from flowbatch.executors.slurm_script import batch_script, script_path
from flowbatch.executors.ssh import env_script, job_argv, remote_command
from flowbatch.lang.model import ComputeEnv, local_compute
from flowbatch.run.setup import attempt_log_stem

pytestmark = pytest.mark.anyio

IMAGE = "localhost/flowbatch-busybox:test"
RUN_TIMEOUT = 60.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def podman() -> str:
    if shutil.which("podman") is None:
        engine_unavailable("podman", "podman is not on PATH")
    found = subprocess.run(["podman", "image", "exists", IMAGE], capture_output=True)
    if found.returncode != 0:
        engine_unavailable("podman", f"the image {IMAGE} is missing")
    return "podman"


def make_attempt(
    workdir: Path, compute: ComputeEnv, *, image: str | None, env: Mapping[str, str]
) -> Attempt:
    return Attempt(
        run_id="20250101-000000-abcd",
        job_id="id-job",
        name="job",
        index=None,
        attempt=1,
        command='env -0 > "$FB_SEEN"' if image is None else "env -0 > seen.env",
        env={**env, "FB_SEEN": str(workdir / "seen.env")},
        workdir=workdir,
        vcpus=1,
        memory=256,
        gpus=0,
        timeout=None,
        image=image,
        log_stem=workdir / "logs" / "run" / "job.attempt-1",
        compute=compute,
        host="h1",
    )


def check_arrived(workdir: Path, env: Mapping[str, str], *, container: bool = False) -> None:
    seen = env0(workdir / "seen.env")
    want = dict(env)
    if container:  # the OCI runtime spec is JSON: bytes that are not UTF-8 become U+FFFD
        want["BYTES"] = "raw \ufffd\ufffd bytes"
    assert {k: seen.get(k) for k in env} == want
    assert not (workdir / "pwned").exists()


SSH = ComputeEnv(name="r", type="ssh", vcpus=1, memory=1, options={"known_hosts": "k"})


def run_remote(att: Attempt) -> subprocess.CompletedProcess[bytes]:
    """The ssh host's side: the remote line in /bin/sh, the env script on its stdin."""
    line = remote_command(att, job_argv(att))
    script = env_script(att)
    return subprocess.run(
        ["/bin/sh", "-c", line], input=script, capture_output=True, timeout=RUN_TIMEOUT
    )


def test_hostile_values_reach_a_job_through_the_ssh_wrapper(tmp_path: Path) -> None:
    att = make_attempt(tmp_path, SSH, image=None, env=HOSTILE_ENV)
    done = run_remote(att)
    assert done.returncode == 0, done.stderr
    check_arrived(tmp_path, HOSTILE_ENV)


@pytest.mark.parametrize(("ifs", "code"), [("1", 13), ("0123456789", 100)])
def test_a_jobs_ifs_cannot_change_the_exit_status_the_wrapper_reports(
    tmp_path: Path, ifs: str, code: int
) -> None:
    # The job's env is exported in the wrapper's own shell: an IFS of digits there
    # used to split the `$?` it exits with (13 became `exit "" 3`).
    att = replace(make_attempt(tmp_path, SSH, image=None, env={"IFS": ifs}), command=f"exit {code}")
    done = run_remote(att)
    assert done.returncode == code, done.stderr


def test_the_env_script_is_encoded_with_the_bytes_os_environ_held(tmp_path: Path) -> None:
    # A value of the runner's environment that is not UTF-8 used to fail the attempt
    # with a reason quoting one of its bytes.
    att = make_attempt(tmp_path, SSH, image=None, env={"BYTES": HOSTILE_ENV["BYTES"]})
    assert b"raw \xff\xfe bytes" in env_script(att)


@pytest.mark.slow
@pytest.mark.podman
def test_hostile_values_reach_a_container_through_the_ssh_wrapper(
    podman: str, tmp_path: Path
) -> None:
    att = make_attempt(tmp_path, SSH, image=IMAGE, env=HOSTILE_ENV)
    done = run_remote(att)
    assert done.returncode == 0, done.stderr
    check_arrived(tmp_path, HOSTILE_ENV, container=True)


async def run_local(att: Attempt) -> ExecResult:
    """`att` run to its end by a LocalExecutor, which is closed whatever happens."""
    results: list[ExecResult] = []
    executor = LocalExecutor(att.compute, grace=0.5)

    async def job(*, task_status: TaskStatus[str]) -> None:
        results.append(await executor.run(att, task_status=task_status))

    try:
        with anyio.fail_after(RUN_TIMEOUT):
            async with anyio.create_task_group() as tg:
                await tg.start(job)
    finally:
        await executor.aclose()
    return results[0]


@pytest.mark.slow
@pytest.mark.podman
async def test_hostile_values_reach_a_local_container(podman: str, tmp_path: Path) -> None:
    att = make_attempt(tmp_path, local_compute(2, 4096), image=IMAGE, env=HOSTILE_ENV)
    att = replace(att, host_env=dict(os.environ))
    att.log_stem.parent.mkdir(parents=True)
    result = await run_local(att)
    assert result.exit_code == 0, logfiles.beside(att.log_stem, "stderr").read_text()
    check_arrived(tmp_path, HOSTILE_ENV, container=True)


def run_batch_script(att: Attempt, argv: list[str] | None) -> subprocess.CompletedProcess[str]:
    """The node's side: the script as flowbatch writes it, run by /bin/sh."""
    script = script_path([att], "t0k3n")
    _write_files([att], script, batch_script([att], lambda _: argv, redirect=True))
    return subprocess.run(
        ["/bin/sh", str(script)],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


def test_hostile_values_reach_a_job_through_the_slurm_script(tmp_path: Path) -> None:
    att = make_attempt(tmp_path, SSH, image=None, env=HOSTILE_ENV)
    done = run_batch_script(att, None)
    assert done.returncode == 0, logfiles.beside(att.log_stem, "stderr").read_text()
    check_arrived(tmp_path, HOSTILE_ENV)


@pytest.mark.slow
@pytest.mark.podman
def test_hostile_values_reach_a_container_through_the_slurm_script(
    podman: str, tmp_path: Path
) -> None:
    att = make_attempt(tmp_path, SSH, image=IMAGE, env=HOSTILE_ENV)
    argv = container_argv(att, runtime=podman, name=container_name(att))
    done = run_batch_script(att, argv)
    assert done.returncode == 0, logfiles.beside(att.log_stem, "stderr").read_text()
    check_arrived(tmp_path, HOSTILE_ENV, container=True)


def test_a_line_too_long_for_the_runtimes_env_file_parser_goes_by_name(tmp_path: Path) -> None:
    # podman and docker refuse an env-file line of 64 KiB or more, and with it the job.
    env = {"LONG": "x" * 70_000, "SHORT": "x" * 1000}
    att = make_attempt(tmp_path, SSH, image=IMAGE, env=env)
    argv = container_argv(att, runtime="podman", name=container_name(att))
    named = [argv[i + 1] for i, w in enumerate(argv[:-1]) if w == "-e"]
    assert named == ["LONG"]
    assert "LONG=" not in env_file_text(att.env) and "SHORT=" in env_file_text(att.env)
    assert att.process_env()["LONG"] == env["LONG"]


def test_bytes_that_are_not_utf8_go_by_name(tmp_path: Path) -> None:
    # docker refuses an env-file with such a line, printing the line (the value) in its
    # error; by name, both runtimes take the value from their own environment.
    env = {"BYTES": HOSTILE_ENV["BYTES"], "TEXT": "ünï"}
    att = make_attempt(tmp_path, SSH, image=IMAGE, env=env)
    argv = container_argv(att, runtime="docker", name=container_name(att))
    assert [argv[i + 1] for i, w in enumerate(argv[:-1]) if w == "-e"] == ["BYTES"]
    assert "BYTES=" not in env_file_text(att.env) and "TEXT=ünï" in env_file_text(att.env)


# -- the files an attempt leaves -------------------------------------------------------------


async def test_a_local_attempts_log_directory_and_logs_are_private(tmp_path: Path) -> None:
    # What a job prints may be a secret: under a umask of 022 its logs used to be 0644.
    with loose_umask():
        stem = attempt_log_stem(tmp_path / "logs", "job", 3, 1)
        att = replace(
            make_attempt(tmp_path, local_compute(1, 1024), image=None, env={}),
            command="echo out; echo err >&2",
            log_stem=stem,
        )
        result = await run_local(att)
    assert result.exit_code == 0
    assert mode(stem.parent) == 0o700
    assert mode(logfiles.beside(stem, "stdout")) == mode(logfiles.beside(stem, "stderr")) == 0o600


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LD_PRELOAD", "/tmp/evil.so" + " " * 70_000),  # ld.so ignores the spaces
        ("CONTAINER_HOST", "ssh://elsewhere\n"),
        ("http_proxy", "http://evil:1\r"),
        ("TMPDIR", "/tmp/\udcff"),
    ],
)
def test_a_value_that_goes_by_name_never_steers_the_runtime(
    tmp_path: Path, name: str, value: str
) -> None:
    # By name, the value sits in podman's own environment first: under these names it
    # would steer podman (or the loader) on this side of the container. Refused.
    att = make_attempt(tmp_path, SSH, image=IMAGE, env={name: value})
    with pytest.raises(ContainerError, match=f"`{name}` of job `job` cannot reach its container"):
        container_argv(att, runtime="podman", name=container_name(att))
    # A value an env-file carries is no concern, nor a multi-line value of another name.
    container_argv(replace(att, env={name: "plain"}), runtime="podman", name="c")
    container_argv(replace(att, env={"SSL_KEY": "-----BEGIN-----\n"}), runtime="podman", name="c")


@pytest.mark.slow
@pytest.mark.podman
async def test_the_runners_service_manager_socket_never_reaches_a_container(
    podman: str, tmp_path: Path
) -> None:
    # Run as a systemd service (Type=notify), the runner has NOTIFY_SOCKET: podman used
    # to hand every container the variable and the socket, with which a job could tell
    # systemd that the runner is ready, stopping, or another process.
    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        host_env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "LISTEN_FDS": "1"}
        att = make_attempt(tmp_path, local_compute(2, 4096), image=IMAGE, env={})
        att = replace(att, host_env=host_env, command="env -0 > seen.env; ls /run > run.txt")
        att.log_stem.parent.mkdir(parents=True)
        result = await run_local(att)
    assert result.exit_code == 0, logfiles.beside(att.log_stem, "stderr").read_text()
    seen = env0(tmp_path / "seen.env")
    assert "NOTIFY_SOCKET" not in seen and "LISTEN_FDS" not in seen
    assert "notify" not in (tmp_path / "run.txt").read_text().split()


def test_the_runs_log_directory_is_private_and_no_attempt_gets_one(tmp_path: Path) -> None:
    root = tmp_path / "state" / "logs" / "run-1"  # none of it exists yet
    with loose_umask():
        first = attempt_log_stem(root, "arr", 7, 1)
        again = attempt_log_stem(root, "arr", 7, 2)  # the run's directory exists now
        single = attempt_log_stem(root, "one", None, 1)
        same = attempt_log_stem(root, "one", None, 1)
    assert first == root / "arr.7.attempt-1" and again == root / "arr.7.attempt-2"
    assert single == same == root / "one.attempt-1"
    made = [tmp_path / "state", *(p for p in (tmp_path / "state").rglob("*"))]
    assert made == [tmp_path / "state", tmp_path / "state" / "logs", root]
    assert {mode(p) for p in made} == {0o700}
    root.rmdir()  # removed under a long-lived runner (a server's): made again
    assert attempt_log_stem(root, "one", None, 2) == root / "one.attempt-2" and root.is_dir()
    (root / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        attempt_log_stem(root / "file", "x", None, 1)
