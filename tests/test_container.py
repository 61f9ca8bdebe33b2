"""Tests of flowbatch.executors.container: the argv it builds, and real podman runs of it.

Real runs need podman and the image `localhost/flowbatch-busybox:test`, which
`ci/engines/podman.sh` installs and imports.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from engine_helpers import engine_unavailable
from env_helpers import command_lines_holding
from proc_helpers import wait_until

from flowbatch.executors import logfiles
from flowbatch.executors.base import Attempt
from flowbatch.executors.container import (
    ContainerError,
    choose_runtime,
    container_argv,
    container_name,
    env_file_text,
    env_pipe,
    exit_reason,
    remove_argv,
    remove_container,
)
from flowbatch.executors.local import LocalExecutor
from flowbatch.lang.model import ComputeEnv, RetryRule, RetryStrategy, local_compute

pytestmark = pytest.mark.anyio

IMAGE = "localhost/flowbatch-busybox:test"
RUN_TIMEOUT = 60.0  # seconds; a podman run here takes about one


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def compute(**options: object) -> ComputeEnv:
    base = local_compute(2, 4096)
    return ComputeEnv(
        name=base.name,
        type=base.type,
        vcpus=base.vcpus,
        memory=base.memory,
        hosts=base.hosts,
        options=options,
    )


def make_attempt(
    workdir: Path,
    command: str | tuple[str, ...] = "true",
    *,
    env: Mapping[str, str] | None = None,
    memory: int = 256,
    vcpus: float = 1,
    image: str | None = IMAGE,
    job_id: str = "3f0c8a4e-0000-4000-8000-00000000abcd",
    network: bool | None = None,
) -> Attempt:
    options = {} if network is None else {"network": network}
    return Attempt(
        run_id="20250101-120000-beef",
        job_id=job_id,
        name="job",
        index=None,
        attempt=1,
        command=command,
        env=env if env is not None else {"AWS_BATCH_JOB_ID": job_id, "AWS_BATCH_JOB_ATTEMPT": "1"},
        workdir=workdir,
        vcpus=vcpus,
        memory=memory,
        gpus=0,
        timeout=None,
        image=image,
        log_stem=workdir / "logs" / "job.attempt-1",
        compute=compute(**options),
    )


def pairs(argv: list[str], flag: str) -> list[str]:
    """The values that follow each occurrence of a two-word flag such as -e or -v."""
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == flag]


# --- the argv ------------------------------------------------------------------------


def test_argv_runs_attached_removed_unpulled_offline_and_limited(tmp_path: Path) -> None:
    attempt = make_attempt(tmp_path, "echo hi", memory=512, vcpus=1.5)
    argv = container_argv(attempt, runtime="podman", name="fb-x")
    assert argv[:3] == ["podman", "run", "--rm"]
    assert pairs(argv, "--name") == ["fb-x"]
    for flag in ("--pull=never", "--network=none", "--init", "--sig-proxy=true"):
        assert flag in argv
    assert "--cpus=1.5" in argv
    assert "--memory=512m" in argv and "--memory-swap=512m" in argv
    assert pairs(argv, "-v") == [f"{tmp_path}:{tmp_path}"]
    assert pairs(argv, "-w") == [str(tmp_path)]
    assert "-d" not in argv and "--detach" not in argv
    # Options go before the image, the command after it.
    assert argv[-4:] == [IMAGE, "/bin/sh", "-c", "echo hi"]


def test_argv_carries_no_value_of_the_environment(tmp_path: Path) -> None:
    # Every local user can read a command line (`ps`): the values go in the env-file on
    # the runtime's stdin; a value an env-file cannot carry is named, never given.
    env = {"AWS_BATCH_JOB_ID": "j:3", "TOKEN": "s3cr3t-value", "PEM": "line 1\nline 2"}
    for runtime in ("podman", "docker"):
        argv = container_argv(make_attempt(tmp_path, env=env), runtime=runtime, name="n")
        assert pairs(argv, "--env-file") == ["/dev/stdin"]
        assert pairs(argv, "-e") == ["PEM"]
        assert not [word for word in argv if "s3cr3t" in word or "line 1" in word]
        # podman would pass on the runner's HTTP_PROXY (user:password@...); docker has no
        # such flag and passes none.
        assert ("--http-proxy=false" in argv) is (runtime == "podman")
        assert ("--env-host=false" in argv) is (runtime == "podman")
    text = env_file_text(env)
    assert text == "AWS_BATCH_JOB_ID=j:3\nTOKEN=s3cr3t-value\n"
    by_name = make_attempt(tmp_path, env=env)
    assert by_name.process_env() == {"PEM": "line 1\nline 2"}  # no host env in this attempt


def test_env_pipe_holds_the_whole_env_file_even_past_the_default_pipe_size() -> None:
    env = {f"V{i}": "x" * 1000 for i in range(200)}  # about 200 KiB, beyond 64 KiB
    fd = env_pipe(env)
    with os.fdopen(fd, "rb") as pipe:
        assert pipe.read().decode() == env_file_text(env)
    with pytest.raises(ContainerError, match="larger than 1024 KiB"):
        env_file_text({f"BIG{i}": "x" * 60_000 for i in range(20)})


def test_argv_network_only_when_asked(tmp_path: Path) -> None:
    on = container_argv(make_attempt(tmp_path, network=True), runtime="podman", name="n")
    off = container_argv(make_attempt(tmp_path, network=False), runtime="podman", name="n")
    assert "--network=none" not in on and "--network=host" in on
    assert "--network=none" in off and "--network=host" not in off


def test_argv_rejects_a_network_that_is_not_a_bool(tmp_path: Path) -> None:
    attempt = replace(make_attempt(tmp_path), compute=compute(network="yes"))
    with pytest.raises(ContainerError, match="`network` must be true or false"):
        container_argv(attempt, runtime="podman", name="n")


def test_argv_runs_a_list_command_without_a_shell(tmp_path: Path) -> None:
    command = ("echo", "a b", "$HOME")
    argv = container_argv(make_attempt(tmp_path, command), runtime="docker", name="n")
    assert argv[0] == "docker"
    assert argv[-4:] == [IMAGE, *command]
    assert "/bin/sh" not in argv


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"workdir": Path("relative/dir")}, "absolute"),
        ({"workdir": Path("/a:b")}, "cannot contain `:`"),
        ({"image": None}, "no image"),
        ({"command": ()}, "empty command"),
    ],
)
def test_argv_refuses_what_it_cannot_run(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    attempt = replace(make_attempt(tmp_path), **change)
    with pytest.raises(ContainerError, match=message):
        container_argv(attempt, runtime="podman", name="n")


def test_container_name_is_safe_and_names_the_attempt(tmp_path: Path) -> None:
    attempt = make_attempt(tmp_path, job_id="3F0C8A4E-AB:17")
    name = container_name(attempt)
    assert name == "fb-20250101-120000-beef-3f0c8a4e-ab-17-1"
    assert re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name)


def test_remove_argv_kills_at_once() -> None:
    assert remove_argv("podman", "n") == ["podman", "rm", "--force", "--time=0", "--ignore", "n"]
    assert remove_argv("docker", "n") == ["docker", "rm", "--force", "n"]


# --- choosing a runtime --------------------------------------------------------------


def test_runtime_given_in_the_compute_environment_wins() -> None:
    assert choose_runtime(compute(runtime="docker")) == "docker"
    assert choose_runtime(compute(runtime="podman")) == "podman"


def test_unknown_runtime_is_an_error() -> None:
    with pytest.raises(ContainerError, match="unknown container runtime 'rkt'"):
        choose_runtime(compute(runtime="rkt"))


def _fake_bin(directory: Path, *names: str) -> None:
    directory.mkdir()
    for name in names:
        path = directory / name
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)


def test_podman_is_preferred_then_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_bin(tmp_path / "both", "podman", "docker")
    _fake_bin(tmp_path / "docker-only", "docker")
    monkeypatch.setenv("PATH", str(tmp_path / "both"))
    assert choose_runtime(compute()) == "podman"
    monkeypatch.setenv("PATH", str(tmp_path / "docker-only"))
    assert choose_runtime(compute()) == "docker"


def test_no_runtime_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ContainerError, match="neither podman nor docker is on PATH"):
        choose_runtime(compute())


async def test_remove_container_never_raises_without_a_runtime() -> None:
    # Not installed at all: the OSError is swallowed, as cleanup must not fail a run.
    await remove_container("docker-that-is-not-installed-here", "fb-none", timeout=5)


# --- real podman ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def podman() -> str:
    if shutil.which("podman") is None:
        engine_unavailable("podman", "podman is not on PATH")
    found = subprocess.run(
        ["podman", "image", "exists", IMAGE], capture_output=True, timeout=RUN_TIMEOUT
    )
    if found.returncode != 0:
        engine_unavailable("podman", f"the image {IMAGE} is missing ({found.stderr!r})")
    return "podman"


def run(podman: str, attempt: Attempt) -> subprocess.CompletedProcess[str]:
    """Run the attempt's container as an executor does: the env-file on the runtime's
    stdin, the runtime in the runner's environment (this test's, under `host_env`)."""
    argv = container_argv(attempt, runtime=podman, name=container_name(attempt))
    # In the test's own directory: conmon may drop an `oom` file where it runs (conmon#504).
    return subprocess.run(
        argv,
        cwd=attempt.workdir,
        input=env_file_text(attempt.env),
        env={**os.environ, **attempt.process_env()},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


def container_exists(podman: str, name: str) -> bool:
    result = subprocess.run(
        [podman, "container", "exists", name], capture_output=True, timeout=RUN_TIMEOUT
    )
    return result.returncode == 0


@pytest.mark.slow
@pytest.mark.podman
def test_exit_code_propagates(podman: str, tmp_path: Path) -> None:
    done = run(podman, make_attempt(tmp_path, "echo out; echo err >&2; exit 7"))
    assert done.returncode == 7, done.stderr
    assert done.stdout == "out\n"
    assert done.stderr.endswith("err\n")


# What podman and the image give every container by themselves.
IMAGE_ENV = {"PATH", "TERM", "container", "HOME", "HOSTNAME"}


def container_env(stdout: str) -> dict[str, str]:
    """The environment a container printed with `env -0`."""
    pairs = (entry.partition("=") for entry in stdout.split("\0") if entry)
    return {k: v for k, _, v in pairs}


@pytest.mark.slow
@pytest.mark.podman
def test_environment_reaches_the_job_and_nothing_else(podman: str, tmp_path: Path) -> None:
    env = {
        "AWS_BATCH_JOB_ID": "abc:4",
        "AWS_BATCH_JOB_ARRAY_INDEX": "4",
        "SPACED": "  a b; c=d $HOME '\"\\ ",
        "PEM": "-----BEGIN-----\nline two\n",
        "EMPTY": "",
    }
    attempt = make_attempt(tmp_path, ("env", "-0"), env=env)
    attempt = replace(
        attempt, host_env={"RUNNER_SECRET": "must-not-leak", "HTTP_PROXY": "http://u:pw@p:1"}
    )
    done = run(podman, attempt)
    assert done.returncode == 0, done.stderr
    seen = container_env(done.stdout)
    assert {k: seen.get(k) for k in env} == env  # every value exactly, a line break too
    # Nothing of the runner's: not its variables, not its proxy, not its PATH.
    assert set(seen) == set(env) | IMAGE_ENV
    assert seen["PATH"] != os.environ["PATH"]


@pytest.mark.slow
@pytest.mark.podman
async def test_no_value_is_on_any_command_line_while_the_container_runs(
    podman: str, tmp_path: Path
) -> None:
    # Through the local executor, as a run does: while the job runs, no process of this
    # machine (podman, conmon, the runtime, the job) shows a value of its environment
    # in its command line, which every local user can read. The values still arrive.
    token, pem = "tok-" + os.urandom(8).hex(), "pem-" + os.urandom(8).hex()
    env = {"TOKEN": token, "PEM": f"{pem}\nline two"}
    attempt = make_attempt(tmp_path, "env > seen.txt; echo started; sleep 60", env=env)
    attempt = replace(attempt, host_env=dict(os.environ))
    attempt.log_stem.parent.mkdir()
    executor = LocalExecutor(attempt.compute, grace=0.5)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(functools.partial(executor.run, attempt))
            await wait_until(
                lambda: b"started" in logfiles.beside(attempt.log_stem, "stdout").read_bytes()
            )
            assert command_lines_holding(token) == []
            assert command_lines_holding(pem) == []
            tg.cancel_scope.cancel()
    finally:
        await executor.aclose()
    seen = (tmp_path / "seen.txt").read_text()
    assert f"TOKEN={token}\n" in seen and f"PEM={pem}\nline two\n" in seen


@pytest.mark.slow
@pytest.mark.podman
def test_workdir_is_mounted_and_written_back(podman: str, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("payload\n")
    done = run(podman, make_attempt(tmp_path, "pwd; tr a-z A-Z < in.txt > out.txt"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path)
    assert (tmp_path / "out.txt").read_text() == "PAYLOAD\n"


@pytest.mark.slow
@pytest.mark.podman
def test_no_network_inside_unless_asked(podman: str, tmp_path: Path) -> None:
    offline = run(podman, make_attempt(tmp_path, ("ls", "/sys/class/net")))
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout.split() == ["lo"]
    online = run(podman, make_attempt(tmp_path, ("ls", "/sys/class/net"), network=True))
    assert online.returncode == 0, online.stderr
    assert sorted(online.stdout.split()) == sorted(os.listdir("/sys/class/net"))


# The hog runs in a subshell whose oom_score_adj is 1000 (raising it needs no privilege),
# so that the OOM killer takes the hog (and `head`, which can trigger a second OOM while
# the hog's memory is being freed) but never the outer shell, which then reads the memory
# cgroup's count of OOM kills: cgroup v1 keeps it in memory.oom_control, v2 in
# memory.events. Only builtins run after the kill, so the shell allocates nothing.
OOM_HOG = (
    "f=/sys/fs/cgroup/memory/memory.oom_control; [ -e $f ] || f=/sys/fs/cgroup/memory.events; "
    "(echo 1000 > /proc/self/oom_score_adj && head -c 100m /dev/zero | tail > /dev/null); "
    'rc=$?; while read -r k v; do [ "$k" = oom_kill ] && echo "oom_kill $v"; done < $f; '
    "exit $rc"
)


@pytest.mark.slow
@pytest.mark.podman
def test_memory_hog_is_oom_killed_with_137_and_retried(podman: str, tmp_path: Path) -> None:
    killed = run(podman, make_attempt(tmp_path, OOM_HOG, memory=32))
    assert killed.returncode == 137, killed.stderr
    # It was the kernel's OOM killer, in this container's cgroup, and not another signal.
    assert int(killed.stdout.split()[-1]) >= 1, killed.stdout
    # The same job with room to spare is not killed: the limit, not the command, did it.
    roomy = run(podman, make_attempt(tmp_path, OOM_HOG, memory=256))
    assert roomy.returncode == 0, roomy.stderr
    assert int(roomy.stdout.split()[-1]) == 0, roomy.stdout

    retry = RetryStrategy(
        attempts=3,
        rules=(
            RetryRule(on_exit_code="137", action="retry"),
            RetryRule(on_exit_code="*", action="exit"),
        ),
    )
    assert retry.should_retry(killed.returncode, "Essential container in task exited")
    assert not retry.should_retry(1, "Essential container in task exited")
    # An AWS-style rule on the reason matches too.
    by_reason = RetryStrategy(
        attempts=3,
        rules=(
            RetryRule(on_reason="OutOfMemoryError*", action="retry"),
            RetryRule(on_reason="*", action="exit"),
        ),
    )
    status = "Essential container in task exited"
    assert by_reason.should_retry(killed.returncode, status, exit_reason(killed.returncode))
    assert not by_reason.should_retry(roomy.returncode, status, exit_reason(roomy.returncode))


async def _start_sleeper(podman: str, tmp_path: Path) -> tuple[Process, str]:
    attempt = make_attempt(tmp_path, "echo started; sleep 60; echo finished")
    name = container_name(attempt)
    env_file = env_pipe(attempt.env)
    try:
        process = await anyio.open_process(
            container_argv(attempt, runtime=podman, name=name),
            stdin=env_file,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    finally:
        os.close(env_file)
    assert process.stdout is not None
    with anyio.fail_after(RUN_TIMEOUT):
        first = await process.stdout.receive()
    assert first.startswith(b"started"), first
    return process, name


@pytest.mark.slow
@pytest.mark.podman
async def test_sigterm_to_the_runtime_stops_the_container(podman: str, tmp_path: Path) -> None:
    process, name = await _start_sleeper(podman, tmp_path)
    async with process:
        process.terminate()
        with anyio.fail_after(RUN_TIMEOUT):
            returncode = await process.wait()
        assert process.stdout is not None
        rest = b"".join([chunk async for chunk in process.stdout])
    # 143 = 128 + SIGTERM: the job itself died of the signal (well before its sleep ended).
    assert returncode == 143
    assert b"finished" not in rest
    assert not container_exists(podman, name)


@pytest.mark.slow
@pytest.mark.podman
async def test_remove_container_stops_and_removes_it(podman: str, tmp_path: Path) -> None:
    process, name = await _start_sleeper(podman, tmp_path)
    async with process:
        assert container_exists(podman, name)
        await remove_container(podman, name)
        assert not container_exists(podman, name)
        with anyio.fail_after(RUN_TIMEOUT):
            returncode = await process.wait()
    assert returncode != 0
    # Removing what is already gone is quiet.
    await remove_container(podman, name)


# --- end to end: a pipeline through the runner, the local executor and the store -----

PIPELINE = f"""
definition boxed {{
  image  = "{IMAGE}"
  memory = 64MiB
}}

job make: boxed {{
  command = "echo made by $AWS_BATCH_JOB_ID in $(pwd) > made.txt"
}}

job hog: boxed {{
  memory  = 32MiB
  command = "head -c 100m /dev/zero | tail > /dev/null"
  retry {{
    attempts = 3
    evaluate_on_exit = [
      {{ on_exit_code = "137", action = "retry" }},
      {{ on_exit_code = "*",   action = "exit" }},
    ]
  }}
}}

job never: boxed {{
  command = "echo should not run > never.txt"
  after   = [hog]
}}
"""


@pytest.mark.slow
@pytest.mark.podman
def test_pipeline_runs_in_containers_and_retries_oom_kills(podman: str, tmp_path: Path) -> None:
    import flowbatch
    from flowbatch.store.jobstore import Store

    path = tmp_path / "boxed.flow"
    path.write_text(PIPELINE)
    env = dict(os.environ)
    # The flowbatch these tests import (the installed wheel in CI), in the child too.
    package_parent = str(Path(flowbatch.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    state = tmp_path / "state"
    argv = [sys.executable, "-m", "flowbatch", "run", str(path), "--state-dir", str(state)]
    done = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT * 3
    )
    assert done.returncode == 1, done.stderr  # a job failed

    with Store.open(state, create=False) as store:
        jobs = {job["jobName"]: job["jobId"] for job in store.jobs()}
        make, hog = store.describe(jobs["make"]), store.describe(jobs["hog"])
        never = store.describe(jobs["never"])
    # The container wrote into the pipeline's directory, with the job's environment.
    assert make["status"] == "SUCCEEDED"
    assert (tmp_path / "made.txt").read_text() == f"made by {jobs['make']} in {tmp_path}\n"
    # Every attempt of the hog was OOM-killed (137), and the 137 rule retried it until
    # the attempts ran out; its dependent never ran.
    assert hog["status"] == "FAILED"
    assert [a["container"]["exitCode"] for a in hog["attempts"]] == [137, 137, 137]
    assert never["status"] == "FAILED" and never["attempts"] == []
    assert not (tmp_path / "never.txt").exists()
    # conmon before 2.1.13 drops an `oom` file where the runtime runs (conmon#504): that
    # is the attempt's own directory, never the pipeline's.
    assert not (tmp_path / "oom").exists()


@pytest.mark.slow
@pytest.mark.podman
async def test_remove_container_cleans_up_a_container_left_created(
    podman: str, tmp_path: Path
) -> None:
    # What a runtime signalled while it creates the container leaves behind.
    attempt = make_attempt(tmp_path, "true")
    name = container_name(attempt)
    options = container_argv(attempt, runtime=podman, name=name)[2:]
    options.remove("--sig-proxy=true")  # a `run` option only
    created = subprocess.run(
        [podman, "create", *options], capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    assert created.returncode == 0, created.stderr
    assert container_exists(podman, name)
    await remove_container(podman, name)
    assert not container_exists(podman, name)


@pytest.mark.slow
@pytest.mark.podman
def test_a_run_gives_a_container_the_named_host_variables_and_nothing_else(
    podman: str, tmp_path: Path
) -> None:
    # Through `flowbatch run`: the runner's own environment stays out of the container
    # (it used to arrive whole, PATH included); what the job names arrives.
    import flowbatch

    token = "hf_" + os.urandom(8).hex()
    (tmp_path / "p.flow").write_text(
        f'job boxed {{\n  image = "{IMAGE}"\n  command = "env -0 > seen"\n'
        '  env = { MODE = "fast" }\n  env_from_host = ["FB_TEST_TOKEN"]\n}\n'
    )
    env = dict(os.environ, FB_TEST_TOKEN=token, FB_TEST_RUNNER_ONLY="runner-secret")
    package_parent = str(Path(flowbatch.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "flowbatch", "run", "p.flow", "--state-dir", "state"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = container_env((tmp_path / "seen").read_text())
    assert seen["FB_TEST_TOKEN"] == token and seen["MODE"] == "fast"
    assert "FB_TEST_RUNNER_ONLY" not in seen and seen["PATH"] != os.environ["PATH"]
    shell = {"PWD", "SHLVL"}  # what the image's /bin/sh, running the command, adds
    assert {k for k in seen if not k.startswith(("AWS_BATCH_", "FLOWBATCH_"))} == (
        IMAGE_ENV | shell | {"FB_TEST_TOKEN", "MODE"}
    )
