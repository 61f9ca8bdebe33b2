"""The SSH executor against a real OpenSSH server on loopback (tests/ssh_fixtures.py):
exit codes and logs, environment and workdir, many jobs over few connections, host-key
checking, timeout and terminate killing the remote process group, and a host that goes
down mid-job and comes back."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
import ssh_fixtures
from anyio.abc import TaskStatus
from env_helpers import HOSTILE_ENV, command_lines_holding, env0, loose_umask, mode
from ssh_fixtures import SshServer

from flowbatch.executors import logfiles
from flowbatch.executors.base import REASON_HOST_LOST, REASON_TIMEOUT, Attempt, ExecResult
from flowbatch.executors.container import env_file_text
from flowbatch.executors.ssh import SshError, SshExecutor, env_script, job_argv, remote_command
from flowbatch.lang.model import ComputeEnv, Host
from flowbatch.run.records import RunStatus

pytestmark = [pytest.mark.anyio, pytest.mark.ssh]

sshd = ssh_fixtures.sshd
shared_dir = ssh_fixtures.shared_dir

# Bound on every wait for a real condition; well below the 300 s sleeps of the jobs that
# must be killed, so a job that survives fails the test.
WAIT = 20.0


def compute(server: SshServer, **options: Any) -> ComputeEnv:
    host = Host(
        name="h1", vcpus=2, memory=2048, address="127.0.0.1", port=server.port, user=server.user
    )
    opts: dict[str, object] = {
        "known_hosts": str(server.known_hosts),
        "identity": str(server.client_key),
    }
    opts.update(options)
    return ComputeEnv(name="remote", type="ssh", vcpus=2, memory=2048, options=opts, hosts=(host,))


def attempt(
    ce: ComputeEnv,
    workdir: Path,
    command: str | tuple[str, ...],
    *,
    name: str = "job",
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> Attempt:
    return Attempt(
        run_id="20250101-000000-abcd",
        job_id=f"id-{name}",
        name=name,
        index=None,
        attempt=1,
        command=command,
        env=env or {},
        workdir=workdir,
        vcpus=1,
        memory=256,
        gpus=0,
        timeout=timeout,
        image=None,
        log_stem=workdir / "logs" / f"{name}.attempt-1",
        compute=ce,
        host="h1",
    )


async def start(
    tg: anyio.abc.TaskGroup, executor: SshExecutor, att: Attempt, results: dict[str, ExecResult]
) -> str:
    """Start an attempt the way the runner does; its result lands in `results[name]`."""

    async def job(*, task_status: TaskStatus[str]) -> None:
        results[att.name] = await executor.run(att, task_status=task_status)

    return str(await tg.start(job))


async def run_and_close(ex: SshExecutor, att: Attempt) -> ExecResult:
    """`att` run to its end (within WAIT) on `ex`, which is closed whatever happens."""
    try:
        with anyio.fail_after(WAIT):
            return await _run_one(ex, att)
    finally:
        await ex.aclose()


async def wait_for(check: Callable[[], bool] | Callable[[], Awaitable[bool]]) -> None:
    with anyio.fail_after(WAIT):
        while True:
            got = check()
            if not isinstance(got, bool):
                got = await got
            if got:
                return
            await anyio.sleep(0.02)  # polling a real condition, bounded by fail_after


def group_alive(pgid: int) -> bool:
    return subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True).returncode == 0


def pgid_of(external_id: str) -> int:
    host, _, pid = external_id.partition(":")
    assert host == "h1"
    return int(pid)


def test_remote_command_quotes_workdir_and_arguments() -> None:
    ce = ComputeEnv(name="r", type="ssh", vcpus=1, memory=1, options={"known_hosts": "k"})
    att = attempt(ce, Path("/tmp/a b"), ("printf", "%s", "x; rm -rf ~"))
    line = remote_command(att, ["printf", "%s", "x; rm -rf ~"])
    assert line.startswith("cd -- '/tmp/a b' && exec setsid -w /bin/sh -c ")
    assert line.endswith("sh printf %s 'x; rm -rf ~'")


def test_a_container_runtime_runs_in_a_scratch_directory_removed_after(tmp_path: Path) -> None:
    # conmon before 2.1.13 drops an `oom` file where it runs (conmon#504). The remote
    # line runs in a real shell here; the "runtime" notes where it ran and drops one.
    ce = ComputeEnv(name="r", type="ssh", vcpus=1, memory=1, options={"known_hosts": "k"})
    att = replace(attempt(ce, tmp_path, "true"), image="busybox")
    where = tmp_path / "where"
    runtime = ["/bin/sh", "-c", f"pwd > {where}; touch oom; exit 3"]
    done = subprocess.run(
        ["/bin/sh", "-c", remote_command(att, runtime)], capture_output=True, text=True
    )
    assert done.returncode == 3  # the runtime's exit code is the job's
    assert done.stdout.splitlines()[0].isdigit()  # the wrapper's pid comes first, as ever
    scratch = Path(where.read_text().strip())
    assert scratch != tmp_path and not scratch.exists()  # ran elsewhere, and cleaned up
    assert not (tmp_path / "oom").exists()


ENV_VALUES = {
    "QUOTED": 'it\'s "x" $HOME `id` \\ ; a=b',
    "LEADING": "  spaced  ",
    "EMPTY": "",
    "PEM": "-----BEGIN-----\nline two\n",
}


def test_the_environment_goes_over_stdin_and_reaches_the_job(tmp_path: Path) -> None:
    # The remote line run in a real shell, the env script on its stdin as the channel
    # carries it: the job sees every value exactly, and none is on the command line.
    ce = ComputeEnv(name="r", type="ssh", vcpus=1, memory=1, options={"known_hosts": "k"})
    att = attempt(ce, tmp_path, ("/bin/sh", "-c", 'env -0 > "$0"', "seen"), env=ENV_VALUES)
    line = remote_command(att, job_argv(att))
    assert not [v for v in ENV_VALUES.values() if v.strip() and v in line]
    done = subprocess.run(["/bin/sh", "-c", line], input=env_script(att))
    assert done.returncode == 0
    entries = (tmp_path / "seen").read_text().split("\0")
    seen = dict(e.partition("=")[::2] for e in entries if e)
    assert {k: seen.get(k) for k in ENV_VALUES} == ENV_VALUES


def test_a_container_runtime_reads_its_env_file_from_stdin(tmp_path: Path) -> None:
    # For a container, the runtime gets the env-file on its stdin (--env-file
    # /dev/stdin) and, in its own environment, only what an env-file cannot carry.
    ce = ComputeEnv(name="r", type="ssh", vcpus=1, memory=1, options={"known_hosts": "k"})
    att = replace(attempt(ce, tmp_path, "true", env=ENV_VALUES), image="busybox")
    argv = job_argv(att)
    assert argv[argv.index("--env-file") + 1] == "/dev/stdin"
    runtime = ["/bin/sh", "-c", f"cat > {tmp_path}/file; env -0 > {tmp_path}/env"]
    done = subprocess.run(["/bin/sh", "-c", remote_command(att, runtime)], input=env_script(att))
    assert done.returncode == 0
    assert (tmp_path / "file").read_text() == env_file_text(ENV_VALUES)
    runtime_env = (tmp_path / "env").read_text().split("\0")
    assert "PEM=" + ENV_VALUES["PEM"] in runtime_env
    assert not [e for e in runtime_env if e.startswith(("QUOTED=", "LEADING=", "EMPTY="))]


@pytest.mark.slow
async def test_no_value_is_on_a_command_line_of_either_side(
    sshd: SshServer, shared_dir: Path
) -> None:
    # sshd runs here on loopback: the job's processes, sshd's and the client's are all on
    # this machine, so /proc shows every command line a user of either side could read.
    token = "tok-" + os.urandom(8).hex()
    ex = SshExecutor(compute(sshd))
    cmd = "env > seen.txt; echo started; sleep 300"
    att = attempt(ex._ce, shared_dir, cmd, env={"TOKEN": token, **ENV_VALUES})
    att = replace(att, host_env={"RUNNER_SECRET": "runner-" + token})  # never sent
    results: dict[str, ExecResult] = {}
    try:
        with loose_umask():
            async with anyio.create_task_group() as tg:
                await start(tg, ex, att, results)
                await wait_for(
                    lambda: b"started" in logfiles.beside(att.log_stem, "stdout").read_bytes()
                )
                assert command_lines_holding(token) == []
                tg.cancel_scope.cancel()
    finally:
        await ex.aclose()
    seen = (shared_dir / "seen.txt").read_text()
    assert f"TOKEN={token}\n" in seen and "QUOTED=" + ENV_VALUES["QUOTED"] in seen
    assert "RUNNER_SECRET" not in seen
    # The logs this side writes are private, whatever the umask.
    assert mode(att.log_stem.parent) == 0o700
    assert (
        mode(logfiles.beside(att.log_stem, "stdout"))
        == mode(logfiles.beside(att.log_stem, "stderr"))
        == 0o600
    )


@pytest.mark.slow
async def test_hostile_values_reach_the_job_over_a_real_connection(
    sshd: SshServer, shared_dir: Path
) -> None:
    # The channel's stdin, sshd, the login shell and the wrapper's eval, for real.
    ex = SshExecutor(compute(sshd))
    att = attempt(ex._ce, shared_dir, "env -0 > seen.env", name="hostile", env=HOSTILE_ENV)
    result = await run_and_close(ex, att)
    assert result.exit_code == 0, logfiles.beside(att.log_stem, "stderr").read_text()
    seen = env0(shared_dir / "seen.env")
    assert {k: seen.get(k) for k in HOSTILE_ENV} == HOSTILE_ENV
    assert not (shared_dir / "pwned").exists()


@pytest.mark.slow
async def test_the_users_ssh_config_sends_the_job_nothing_of_the_runner(
    sshd: SshServer, shared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # asyncssh reads ~/.ssh/config as OpenSSH does. A `SendEnv` there (sshd here accepts
    # FBTEST_*) would give every job the runner's variables, and `RequestTTY force` a
    # terminal that echoes the env script, values and all, into the job's stdout.
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host *\n  SendEnv FBTEST_*\n  RequestTTY force\n")
    monkeypatch.setenv("HOME", str(home))
    token = "tok-" + os.urandom(8).hex()
    monkeypatch.setenv("FBTEST_SECRET", "runner-" + token)
    ex = SshExecutor(compute(sshd))
    cmd = "env > seen-config.txt; if [ -t 0 ]; then echo on-a-tty; fi"
    att = attempt(ex._ce, shared_dir, cmd, name="config", env={"TOKEN": token})
    result = await run_and_close(ex, att)
    seen = (shared_dir / "seen-config.txt").read_text()
    assert f"TOKEN={token}\n" in seen
    assert "FBTEST_SECRET" not in seen
    assert logfiles.beside(att.log_stem, "stdout").read_bytes() == b""
    assert result.exit_code == 0


def test_executor_refuses_an_environment_without_known_hosts() -> None:
    host = Host(name="h1", vcpus=1, memory=1, address="127.0.0.1")
    ce = ComputeEnv(name="remote", type="ssh", vcpus=1, memory=1, hosts=(host,))
    with pytest.raises(SshError, match="needs `known_hosts`"):
        SshExecutor(ce)


@pytest.mark.slow
async def test_exit_code_logs_env_and_workdir(sshd: SshServer, shared_dir: Path) -> None:
    ex = SshExecutor(compute(sshd))
    cmd = 'echo out; echo err >&2; printf %s "$GREETING" > greeting; pwd > where; exit 3'
    att = attempt(ce=ex._ce, workdir=shared_dir, command=cmd, env={"GREETING": "hi there; $x"})
    results: dict[str, ExecResult] = {}
    try:
        async with anyio.create_task_group() as tg:
            external = await start(tg, ex, att, results)
    finally:
        await ex.aclose()
    assert pgid_of(external) > 1
    result = results["job"]
    assert result.exit_code == 3 and result.host == "h1" and not result.host_lost
    # The pid line is not logged.
    assert logfiles.beside(att.log_stem, "stdout").read_bytes() == b"out\n"
    assert logfiles.beside(att.log_stem, "stderr").read_bytes() == b"err\n"
    assert (shared_dir / "greeting").read_text() == "hi there; $x"
    assert (shared_dir / "where").read_text().strip() == str(shared_dir)
    assert (shared_dir / "where").stat().st_uid != 0  # ran as fbtest, not as us


@pytest.mark.slow
async def test_argv_command_is_not_run_through_a_shell(sshd: SshServer, shared_dir: Path) -> None:
    ex = SshExecutor(compute(sshd))
    att = attempt(ex._ce, shared_dir, ("printf", "[%s]", "a b", "$HOME", "x;y"))
    try:
        result = await _run_one(ex, att)
    finally:
        await ex.aclose()
    assert result.exit_code == 0
    assert logfiles.beside(att.log_stem, "stdout").read_text() == "[a b][$HOME][x;y]"


@pytest.mark.slow
async def test_large_output_streams_to_the_log(sshd: SshServer, shared_dir: Path) -> None:
    ex = SshExecutor(compute(sshd))
    att = attempt(ex._ce, shared_dir, "head -c 5000000 /dev/zero; echo done >&2")
    try:
        result = await _run_one(ex, att)
    finally:
        await ex.aclose()
    assert result.exit_code == 0
    assert logfiles.beside(att.log_stem, "stdout").stat().st_size == 5_000_000
    assert logfiles.beside(att.log_stem, "stderr").read_text() == "done\n"


@pytest.mark.slow
async def test_missing_workdir_fails_the_attempt(sshd: SshServer, shared_dir: Path) -> None:
    ex = SshExecutor(compute(sshd))
    att = attempt(ex._ce, shared_dir / "nowhere", "true")
    att = Attempt(**{**_fields(att), "log_stem": shared_dir / "logs" / "x.attempt-1"})
    try:
        result = await _run_one(ex, att)
    finally:
        await ex.aclose()
    assert result.exit_code not in (0, None) and not result.host_lost
    assert "nowhere" in (shared_dir / "logs" / "x.attempt-1.stderr").read_text()


@pytest.mark.slow
@pytest.mark.parametrize(("max_sessions", "connections"), [(100, 1), (10, 3)])
async def test_concurrent_jobs_share_connections(
    sshd: SshServer, shared_dir: Path, max_sessions: int, connections: int
) -> None:
    """20 jobs running at once: one connection when the server allows 100 sessions;
    with OpenSSH's default of 10, nine jobs per connection (one session kept for kill)."""
    n = 20
    ex = SshExecutor(compute(sshd, max_sessions=max_sessions))
    # Every job waits for `go`, so all 20 are provably running at the same time.
    cmd = 'touch "started.$I"; while [ ! -e go ]; do sleep 0.05; done; echo "job $N"; exit "$N"'
    atts = [
        attempt(ex._ce, shared_dir, cmd, name=f"j{i}", env={"I": str(i), "N": str(i % 7)})
        for i in range(n)
    ]
    results: dict[str, ExecResult] = {}
    try:
        async with anyio.create_task_group() as tg:
            for att in atts:
                tg.start_soon(start, tg, ex, att, results)
            await wait_for(lambda: len(list(shared_dir.glob("started.*"))) == n)
            (shared_dir / "go").touch()
    finally:
        await ex.aclose()
    assert ex.connections_opened == connections
    for i, att in enumerate(atts):
        assert results[att.name].exit_code == i % 7
        assert logfiles.beside(att.log_stem, "stdout").read_text() == f"job {i % 7}\n"


@pytest.mark.slow
async def test_wrong_known_hosts_is_refused_with_the_host_named(
    sshd: SshServer, shared_dir: Path
) -> None:
    ex = SshExecutor(compute(sshd, known_hosts=str(sshd.wrong_known_hosts)))
    att = attempt(ex._ce, shared_dir, "touch ran")
    try:
        result = await _run_one(ex, att)
        back = await ex.check_host("h1")
    finally:
        await ex.aclose()
    assert result.exit_code is None and not result.retryable and not result.host_lost
    assert "host key of `h1` (127.0.0.1:" in result.status_reason
    assert str(sshd.wrong_known_hosts) in result.status_reason
    assert not back and ex.connections_opened == 0
    assert not (shared_dir / "ran").exists()


@pytest.mark.slow
async def test_timeout_kills_the_remote_process_group(sshd: SshServer, shared_dir: Path) -> None:
    # The inner sleep ignores SIGTERM, so only the KILL after the grace period ends it.
    ex = SshExecutor(compute(sshd), grace=0.5)
    cmd = "trap '' TERM; sleep 300 & sleep 300; wait"
    att = attempt(ex._ce, shared_dir, cmd, timeout=1.0)
    results: dict[str, ExecResult] = {}
    try:
        async with anyio.create_task_group() as tg:
            pgid = pgid_of(await start(tg, ex, att, results))
            assert group_alive(pgid)
    finally:
        await ex.aclose()
    result = results["job"]
    assert result.status_reason == REASON_TIMEOUT and not result.retryable
    await wait_for(lambda: not group_alive(pgid))  # killed ones may wait a moment for reaping


@pytest.mark.slow
async def test_a_timed_out_job_that_exits_0_on_sigterm_failed(
    sshd: SshServer, shared_dir: Path
) -> None:
    # AWS: a timed-out attempt is FAILED whatever its exit code (issue 9 item 8).
    ex = SshExecutor(compute(sshd), grace=5.0)
    att = attempt(ex._ce, shared_dir, "trap 'exit 0' TERM; sleep 300 & wait", timeout=1.0)
    results: dict[str, ExecResult] = {}
    try:
        async with anyio.create_task_group() as tg:
            await start(tg, ex, att, results)
    finally:
        await ex.aclose()
    result = results["job"]
    assert result.exit_code == 0
    assert result.status_reason == REASON_TIMEOUT and not result.ok


@pytest.mark.slow
async def test_cancelling_the_task_terminates_the_remote_job(
    sshd: SshServer, shared_dir: Path
) -> None:
    ex = SshExecutor(compute(sshd), grace=2.0)
    att = attempt(ex._ce, shared_dir, "sleep 300 & sleep 300; wait")
    results: dict[str, ExecResult] = {}
    try:
        async with anyio.create_task_group() as tg:
            pgid = pgid_of(await start(tg, ex, att, results))
            assert group_alive(pgid)
            tg.cancel_scope.cancel()
    finally:
        await ex.aclose()
    assert "job" not in results  # cancellation propagates instead of a result
    await wait_for(lambda: not group_alive(pgid))


@pytest.mark.slow
async def test_host_lost_mid_job_then_back(sshd: SshServer, shared_dir: Path) -> None:
    ex = SshExecutor(compute(sshd))
    att = attempt(ex._ce, shared_dir, "sleep 300")
    results: dict[str, ExecResult] = {}
    pgid = 0
    try:
        async with anyio.create_task_group() as tg:
            pgid = pgid_of(await start(tg, ex, att, results))
            sshd.stop()
        result = results["job"]
        assert result.host_lost and result.exit_code is None and result.retryable
        assert result.status_reason == REASON_HOST_LOST.format(instance="h1")
        assert result.status_reason == "Host EC2 (instance h1) terminated."
        assert not await ex.check_host("h1")
        sshd.start()
        assert await ex.check_host("h1")
        # The reconnected host runs jobs again, on the connection check_host opened.
        again = await _run_one(ex, attempt(ex._ce, shared_dir, "exit 4", name="again"))
        assert again.exit_code == 4 and ex.connections_opened == 2
    finally:
        sshd.start()
        await ex.aclose()
        if pgid and group_alive(pgid):
            os.killpg(pgid, 9)  # the "terminated host" left its job behind: ours to clean


@pytest.mark.slow
async def test_unreachable_host_is_lost_not_an_error(shared_dir: Path, sshd: SshServer) -> None:
    ce = compute(sshd)
    dead = Host(name="h1", vcpus=1, memory=1, address="127.0.0.1", port=_closed_port())
    ce = ComputeEnv(name="remote", type="ssh", vcpus=1, memory=1, options=ce.options, hosts=(dead,))
    ex = SshExecutor(ce)
    try:
        result = await _run_one(ex, attempt(ce, shared_dir, "true"))
    finally:
        await ex.aclose()
    assert result.host_lost and result.status_reason == "Host EC2 (instance h1) terminated."


async def _run_one(ex: SshExecutor, att: Attempt) -> ExecResult:
    results: dict[str, ExecResult] = {}
    async with anyio.create_task_group() as tg:
        await start(tg, ex, att, results)
    return results[att.name]


def _fields(att: Attempt) -> dict[str, Any]:
    return {name: getattr(att, name) for name in att.__slots__}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PIPELINE = """
compute remote {
  type        = "ssh"
  known_hosts = "KNOWN_HOSTS"
  identity    = "IDENTITY"
  hosts       = [
    { address = "127.0.0.1", port = PORT, user = "fbtest", vcpus = 2, memory = 2GiB, name = "h1" },
  ]
}

queue q {
  compute = [remote]
}

job split {
  queue   = q
  array   = 3
  command = "echo part $AWS_BATCH_JOB_ARRAY_INDEX > part.$AWS_BATCH_JOB_ARRAY_INDEX"
}

job square {
  queue   = q
  array   = 3
  after   = [n_to_n(split)]
  command = "i=$AWS_BATCH_JOB_ARRAY_INDEX; echo $(cat part.$i) squared $((i * i)) > sq.$i"
}

job gather {
  queue   = q
  after   = [square]
  command = "cat sq.0 sq.1 sq.2 > all.txt; echo gathered"
}
"""


async def _run_pipeline(directory: Path, text: str, overrides: dict[str, str]) -> Any:
    from flowbatch.lang.load import load_text
    from flowbatch.run.runner import RunOptions, new_job_ids, new_run_id, run_plan

    path = directory / "fan.flow"
    path.write_text(text)
    plan = load_text(text, str(path), {})
    with anyio.fail_after(WAIT * 3):
        options = RunOptions(
            run_id=new_run_id(),
            job_ids=new_job_ids(plan),
            state_dir=directory / ".flowbatch",
            compute_overrides=overrides,
        )
        return await run_plan(plan, options)


@pytest.mark.slow
async def test_pipeline_on_ssh_gives_the_same_outputs_as_local(
    sshd: SshServer, shared_dir: Path
) -> None:
    """An array, an N_TO_N array and a fan-in: the same files over ssh as locally."""
    text = (
        PIPELINE.replace("KNOWN_HOSTS", str(sshd.known_hosts))
        .replace("IDENTITY", str(sshd.client_key))
        .replace("PORT", str(sshd.port))
    )
    remote_dir, local_dir = shared_dir / "remote", shared_dir / "local"
    for d in (remote_dir, local_dir):
        d.mkdir()
        d.chmod(0o777)
    remote = await _run_pipeline(remote_dir, text, {})
    local = await _run_pipeline(local_dir, text, {"remote": "local"})
    assert remote.status is local.status is RunStatus.SUCCEEDED, (remote, local)
    outputs = ["all.txt", "sq.0", "sq.1", "sq.2", "part.0", "part.1", "part.2"]
    for name in outputs:
        assert (remote_dir / name).read_bytes() == (local_dir / name).read_bytes(), name
    assert (remote_dir / "all.txt").read_text().splitlines()[2] == "part 2 squared 4"
    assert (remote_dir / "all.txt").stat().st_uid != (local_dir / "all.txt").stat().st_uid
    logs = list((remote_dir / ".flowbatch" / "logs").glob("*/gather.attempt-1.stdout"))
    assert [p.read_text() for p in logs] == ["gathered\n"]
