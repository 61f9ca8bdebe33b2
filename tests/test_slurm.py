"""The SLURM executor: output parsing without a cluster, and real jobs on the
single-node SLURM that `ci/engines/slurm.sh` starts (partition in
FLOWBATCH_TEST_SLURM_PARTITION)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus
from engine_helpers import engine_unavailable
from env_helpers import HOSTILE_ENV, env0, loose_umask, mode

from flowbatch.executors import logfiles
from flowbatch.executors.base import REASON_TIMEOUT, Attempt, ExecResult
from flowbatch.executors.container import env_file_text
from flowbatch.executors.slurm import SlurmExecutor, _write_files
from flowbatch.executors.slurm_parse import (
    REASON_OOM,
    REASON_SCANCEL,
    exit_code_of,
    format_indices,
    parse_indices,
    parse_squeue,
    result_of,
    result_of_gone,
    scancel_ids,
    time_limit_minutes,
)
from flowbatch.executors.slurm_script import (
    EXIT_FILE,
    batch_script,
    output_pattern,
    sbatch_argv,
    script_path,
)
from flowbatch.lang.model import ComputeEnv, Host
from flowbatch.run.records import RunStatus


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- parsing, no cluster ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("indices", "text"),
    [([0], "0"), ([0, 1, 2, 5], "0-2,5"), ([9, 7, 8, 3, 1], "1,3,7-9"), (range(10000), "0-9999")],
)
def test_format_indices_collapses_runs_and_parses_back(indices: Any, text: str) -> None:
    assert format_indices(indices) == text
    assert parse_indices(text) == frozenset(indices)


def test_parse_indices_reads_step_throttle_and_brackets() -> None:
    assert parse_indices("[0-6:2]%4") == frozenset({0, 2, 4, 6})
    with pytest.raises(ValueError):
        parse_indices("1-x")


def test_scancel_ids_collapse_array_tasks() -> None:
    keys = [f"12_{i}" for i in (5, 0, 1, 2)] + ["7", "13_4", "7"]
    assert scancel_ids(keys) == ["7", "12_[0-2,5]", "13_[4]"]


def test_wait_status_becomes_shell_exit_code() -> None:
    assert exit_code_of(1280) == 5
    assert exit_code_of(0) == 0
    assert exit_code_of(15) == 128 + 15
    assert exit_code_of(None) is None


SQUEUE_TEXT = """\
5|5|N/A|CANCELLED|None|15|vm|
2|1|0|COMPLETED|None|0|vm|
4|1|5|FAILED|NonZeroExitCode|1280|vm|
7|7|3,8-9%2|PENDING|Resources|0||
garbage line
"""


def test_parse_squeue_rows_single_task_and_compressed_pending() -> None:
    rows = {r.key: r for r in parse_squeue(SQUEUE_TEXT)}
    assert set(rows) == {"5", "1_0", "1_5", "7"}
    assert rows["1_5"].task == 5 and rows["1_5"].wait_status == 1280
    assert rows["7"].tasks == frozenset({3, 8, 9}) and rows["7"].task is None


def _row(state: str, status: int | None = 0) -> Any:
    text = f"9|9|N/A|{state}|None|{'' if status is None else status}|node1|"
    return parse_squeue(text)[0]


def test_states_map_to_aws_outcomes() -> None:
    ok = result_of(_row("COMPLETED"), host="h")
    assert ok is not None and ok.ok and ok.host == "h"
    failed = result_of(_row("FAILED", 3 << 8), host=None)
    assert failed is not None and failed.exit_code == 3 and failed.retryable
    timeout = result_of(_row("TIMEOUT"), host=None)
    assert timeout is not None and timeout.status_reason == REASON_TIMEOUT
    assert not timeout.retryable
    cancelled = result_of(_row("CANCELLED", 15), host=None)
    assert cancelled is not None and cancelled.status_reason == REASON_SCANCEL
    assert cancelled.exit_code is None and not cancelled.retryable
    oom = result_of(_row("OUT_OF_MEMORY"), host=None)
    assert oom is not None and oom.exit_code == 137 and oom.reason == REASON_OOM
    lost = result_of(_row("NODE_FAIL"), host=None)
    assert lost is not None and lost.host_lost and lost.status_reason.startswith("Host EC2")
    assert "node1" in lost.status_reason
    assert result_of(_row("RUNNING"), host=None) is None
    assert result_of(_row("PENDING"), host=None) is None


def test_a_purged_job_ends_with_the_exit_status_its_script_wrote() -> None:
    assert result_of_gone("4_2", "3\n", host=None).exit_code == 3
    unknown = result_of_gone("4_2", None, host=None)
    assert unknown.exit_code is None and "4_2" in unknown.status_reason


def test_time_limit_rounds_up_to_minutes() -> None:
    assert time_limit_minutes(1) == 1
    assert time_limit_minutes(60) == 1
    assert time_limit_minutes(61) == 2


def _attempt(tmp: Path, *, index: int | None = None, command: Any = "true", **kw: Any) -> Attempt:
    ce = kw.pop("compute", None) or _compute()
    log = logfiles.stem(tmp / "logs" / "run", "job", index, 1)
    env = {"AWS_BATCH_JOB_ID": f"p:{index}" if index is not None else "p", "SHARED": "a,b c"}
    if index is not None:
        env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(index)
    base: dict[str, Any] = dict(
        run_id="20250101-000000-abcd",
        job_id=f"p:{index}" if index is not None else "p",
        name="job",
        index=index,
        attempt=1,
        command=command,
        env=env,
        workdir=tmp,
        vcpus=1,
        memory=100,
        gpus=0,
        timeout=None,
        image=None,
        log_stem=log,
        compute=ce,
        host="slurm",
    )
    base.update(kw)
    return Attempt(**base)


def _compute(**options: object) -> ComputeEnv:
    opts: dict[str, object] = {"poll_interval": 0.2}
    partition = os.environ.get("FLOWBATCH_TEST_SLURM_PARTITION")
    if partition:
        opts["partition"] = partition
    opts.update(options)
    return ComputeEnv(
        name="cluster",
        type="slurm",
        vcpus=64,
        memory=64 * 1024,
        options=opts,
        hosts=(Host(name="slurm", vcpus=64, memory=64 * 1024),),
    )


def test_array_script_exports_shared_env_once_and_quotes_commas(tmp_path: Path) -> None:
    attempts = [_attempt(tmp_path, index=i, command=f"echo {i}") for i in range(3)]
    text = batch_script(attempts, lambda a: None, redirect=False)
    assert text.count("export SHARED='a,b c'") == 1
    assert text.count("export AWS_BATCH_JOB_ARRAY_INDEX=") == 3
    assert "2)" in text and "'echo 2'" in text
    assert output_pattern(attempts) == f"{tmp_path}/logs/run/job.%a.attempt-1"


def test_an_array_child_runs_its_own_branch_whatever_the_env_exports(tmp_path: Path) -> None:
    # The env shared by every child is exported before the `case`: one that sets
    # SLURM_ARRAY_TASK_ID used to send every child down the same branch.
    attempts = [
        _attempt(tmp_path, index=i, command=f"echo {i} > out", env={"SLURM_ARRAY_TASK_ID": "0"})
        for i in range(3)
    ]
    for a in attempts:
        a.log_stem.parent.mkdir(parents=True, exist_ok=True)
    text = batch_script(attempts, lambda _: None, redirect=True)
    env = {"SLURM_ARRAY_TASK_ID": "2", "PATH": os.environ["PATH"]}
    done = subprocess.run(["/bin/sh", "-c", text], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out").read_text() == "2\n"


def test_output_pattern_refuses_log_stems_without_a_common_shape(tmp_path: Path) -> None:
    a = _attempt(tmp_path, index=0)
    b = _attempt(tmp_path, index=1, log_stem=tmp_path / "elsewhere")
    assert output_pattern([a, b]) is None
    assert "exec >" in batch_script([a, b], lambda _: None, redirect=True)


ENV_VALUES = {
    "QUOTED": 'it\'s "x" $HOME `id` \\ ; a=b',
    "LEADING": "  spaced  ",
    "PEM": "-----BEGIN-----\nline two\n",
}


def test_sbatch_exports_nothing_of_the_runner_and_carries_no_value(tmp_path: Path) -> None:
    a = _attempt(tmp_path, env=ENV_VALUES)
    argv = sbatch_argv([a], tmp_path / "s.sh", {}, pattern=None)
    assert "--export=NONE" in argv  # sbatch's default, ALL, copies the runner's env
    assert not [w for w in argv if any(v.strip() in w for v in ENV_VALUES.values())]
    text = batch_script([a], lambda _: None, redirect=False)
    assert "export SLURM_EXPORT_ENV=ALL" in text  # srun in the job keeps the job's env


def test_a_cr_in_a_value_or_the_command_never_reaches_the_script_raw(tmp_path: Path) -> None:
    # sbatch refuses a script holding "\r\n"; the shell still gives the job every CR.
    a = _attempt(tmp_path, command="printf '%s|%s' \"$V\" 'x\r\ny' > seen", env={"V": "a\r\nb\r"})
    a.log_stem.parent.mkdir(parents=True)
    text = batch_script([a], lambda _: None, redirect=True)
    assert "\r" not in text
    done = subprocess.run(["/bin/sh", "-c", text], env={"PATH": os.environ["PATH"]})
    assert done.returncode == 0
    assert (tmp_path / "seen").read_bytes() == b"a\r\nb\r|x\r\ny"


@pytest.mark.parametrize("index", [None, 1])
def test_a_container_gets_its_env_file_as_a_here_document(
    tmp_path: Path, index: int | None
) -> None:
    # The script run by a real shell, with a stand-in runtime that keeps its stdin and
    # its environment: the env-file exactly, and in the runtime's environment only
    # what an env-file cannot carry (a job's TMPDIR or HOME must not steer podman).
    a = _attempt(tmp_path, index=index, image="busybox", env=ENV_VALUES)
    a.log_stem.parent.mkdir(parents=True)
    runtime = ["/bin/sh", "-c", f"cat > {tmp_path}/file; env -0 > {tmp_path}/env"]
    text = batch_script([a], lambda _: runtime, redirect=True)
    env = {"SLURM_ARRAY_TASK_ID": str(index), "PATH": os.environ["PATH"]}
    done = subprocess.run(["/bin/sh", "-c", text], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "file").read_text() == env_file_text(ENV_VALUES)
    runtime_env = (tmp_path / "env").read_text().split("\0")
    assert "PEM=" + ENV_VALUES["PEM"] in runtime_env
    assert not [e for e in runtime_env if e.startswith(("QUOTED=", "LEADING="))]


def test_scripts_and_logs_are_private_whatever_the_umask(tmp_path: Path) -> None:
    attempts = [_attempt(tmp_path, index=i) for i in range(3)]
    script = script_path(attempts, "t0k3n")
    with loose_umask():
        _write_files(attempts, script, "#!/bin/sh\n")
    assert mode(script) == 0o600
    for a in attempts:
        assert mode(logfiles.beside(a.log_stem, "stdout")) == 0o600
        assert mode(logfiles.beside(a.log_stem, "stderr")) == 0o600
    assert mode(tmp_path / "logs") == mode(tmp_path / "logs" / "run") == 0o700
    # An array's one script, beside its children's logs; no directory of their own.
    assert script.parent == tmp_path / "logs" / "run"
    assert [p.name for p in script.parent.iterdir() if p.is_dir()] == []


# -- real SLURM ------------------------------------------------------------------------


class _ScriptedSlurm(SlurmExecutor):
    """A SlurmExecutor whose squeue answers from `states` (key -> "STATE|wait status"),
    for what SLURM says of jobs an earlier runner submitted; every call is kept."""

    def __init__(self, states: dict[str, str]) -> None:
        super().__init__(_compute(poll_interval=0.01))
        self.states = states
        self.argvs: list[list[str]] = []

    async def _command(self, argv: Any) -> tuple[int, str, str]:
        self.argvs.append(list(argv))
        self.calls[argv[0]] += 1
        if argv[0] != "squeue":
            return 0, "", ""
        ids = argv[-1].removeprefix("--jobs=").split(",")
        lines = []
        for key, state in self.states.items():
            job, _, task = key.partition("_")
            if job in ids:
                name, _, status = state.partition("|")
                lines.append(f"{key}|{job}|{task or 'N/A'}|{name}|None|{status}|node1|")
        return 0, "\n".join(lines), ""


@pytest.mark.anyio
async def test_adopted_jobs_are_polled_together_and_end_as_slurm_says(tmp_path: Path) -> None:
    ex = _ScriptedSlurm({"10": "RUNNING|", "11_3": "RUNNING|", "13": "CANCELLED|15"})
    purged = _attempt(tmp_path / "purged")
    purged.log_stem.parent.mkdir(parents=True)
    logfiles.beside(purged.log_stem, EXIT_FILE).write_text("0\n")  # ended unwatched, purged
    # One an older flowbatch submitted: its log_path a directory holding the exit file.
    old = _attempt(tmp_path / "old", log_stem=tmp_path / "old" / "job" / "attempt-1")
    old.log_stem.mkdir(parents=True)
    (old.log_stem / EXIT_FILE).write_text("3\n")
    results: dict[str, ExecResult | None] = {}

    async def adopt(a: Attempt, key: str) -> None:
        results[key] = await ex.adopt(a, key)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(adopt, _attempt(tmp_path / "a"), "10")
            tg.start_soon(adopt, _attempt(tmp_path / "b", index=3), "11_3")
            tg.start_soon(adopt, _attempt(tmp_path / "c"), "12")  # SLURM never heard of it
            tg.start_soon(adopt, _attempt(tmp_path / "d"), "13")  # scancelled meanwhile
            tg.start_soon(adopt, purged, "14")
            tg.start_soon(adopt, old, "15")
            while len(results) < 4:
                await anyio.sleep(0.01)
            assert set(results) == {"12", "13", "14", "15"}  # the others still run
            ex.states.update({"10": "COMPLETED|0", "11_3": "FAILED|512"})
    ok, failed = results["10"], results["11_3"]
    assert ok is not None and ok.ok and ok.extra["slurm_job_id"] == "10"
    assert failed is not None and failed.exit_code == 2 and failed.host == "slurm"
    assert results["12"] is None and results["13"] is None  # lost: the caller settles them
    done = results["14"]
    assert done is not None and done.ok
    gone_old = results["15"]
    assert gone_old is not None and gone_old.exit_code == 3
    squeues = [argv for argv in ex.argvs if argv[0] == "squeue"]
    assert squeues[0][-1] == "--jobs=10,11,12,13,14,15"  # one call for every adopted job
    assert ex.calls["sbatch"] == 0 and ex.calls["scancel"] == 0


@pytest.fixture(scope="module")
def slurm() -> Iterator[str]:
    if shutil.which("sbatch") is None:
        engine_unavailable("slurm", "sbatch is not on PATH")
    partition = os.environ.get("FLOWBATCH_TEST_SLURM_PARTITION", "")
    probe = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if probe.returncode != 0 or not probe.stdout.strip():
        engine_unavailable("slurm", f"sinfo failed: {probe.stderr.strip()}")
    yield partition


async def _run_all(ex: SlurmExecutor, attempts: list[Attempt]) -> dict[int | None, ExecResult]:
    results: dict[int | None, ExecResult] = {}

    async def one(a: Attempt) -> None:
        results[a.index] = await _start_and_wait(ex, a)

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for a in attempts:
                tg.start_soon(one, a)
    return results


async def _start_and_wait(ex: SlurmExecutor, a: Attempt) -> ExecResult:
    box: list[ExecResult] = []

    async def runner(*, task_status: TaskStatus[str]) -> None:
        box.append(await ex.run(a, task_status=task_status))

    async with anyio.create_task_group() as tg:
        await tg.start(runner)
    return box[0]


def _squeue_active(key: str) -> str:
    out = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", key], capture_output=True, text=True)
    return out.stdout.strip()


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.anyio
async def test_exit_code_stdout_and_stderr_come_back(slurm: str, tmp_path: Path) -> None:
    ex = SlurmExecutor(_compute())
    a = _attempt(tmp_path, command='echo "out $SHARED"; echo err >&2; exit 7')
    result = (await _run_all(ex, [a]))[None]
    assert result.exit_code == 7
    assert logfiles.beside(a.log_stem, "stdout").read_text() == "out a,b c\n"
    assert logfiles.beside(a.log_stem, "stderr").read_text() == "err\n"
    assert ex.calls["sbatch"] == 1


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.anyio
async def test_the_job_gets_its_env_and_nothing_of_the_runner(
    slurm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # sbatch runs in this process's environment: its default, --export=ALL, would copy
    # this variable into the job (and into SLURM's records of it).
    secret = "runner-" + os.urandom(8).hex()
    monkeypatch.setenv("FB_TEST_RUNNER_SECRET", secret)
    ex = SlurmExecutor(_compute())
    a = _attempt(tmp_path, command="env -0 > seen", env={"TOKEN": "tok", **ENV_VALUES})
    with loose_umask():
        result = (await _run_all(ex, [a]))[None]
    assert result.exit_code == 0, logfiles.beside(a.log_stem, "stderr").read_text()
    entries = (tmp_path / "seen").read_text().split("\0")
    seen = dict(e.partition("=")[::2] for e in entries if e)
    assert "FB_TEST_RUNNER_SECRET" not in seen
    assert {k: seen.get(k) for k in ENV_VALUES} == ENV_VALUES and seen["TOKEN"] == "tok"
    assert seen["SLURM_EXPORT_ENV"] == "ALL"
    # Everything left behind is private, and none of it holds the runner's variable.
    script = logfiles.beside(a.log_stem, "slurm-batch.sh")
    assert mode(script) == 0o600 and secret not in script.read_text()
    assert mode(a.log_stem.parent) == 0o700
    for name in ("stdout", "stderr", EXIT_FILE):
        assert mode(logfiles.beside(a.log_stem, name)) == 0o600, name


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.anyio
async def test_hostile_values_reach_a_real_slurm_job_exactly(slurm: str, tmp_path: Path) -> None:
    # Through sbatch and slurmd for real (the script alone is run in test_env_values.py):
    # sbatch refuses a script with a CRLF in it, which a value may hold.
    ex = SlurmExecutor(_compute())
    a = _attempt(tmp_path, command="env -0 > seen.env", env=HOSTILE_ENV)
    result = (await _run_all(ex, [a]))[None]
    assert result.exit_code == 0, (
        result.status_reason,
        logfiles.beside(a.log_stem, "stderr").read_text(),
    )
    seen = env0(tmp_path / "seen.env")
    assert {k: seen.get(k) for k in HOSTILE_ENV} == HOSTILE_ENV
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.anyio
async def test_an_array_of_20_is_one_sbatch_call(slurm: str, tmp_path: Path) -> None:
    ex = SlurmExecutor(_compute())
    cmd = 'echo "$AWS_BATCH_JOB_ARRAY_INDEX $AWS_BATCH_JOB_ID"'
    attempts = [_attempt(tmp_path, index=i, command=cmd) for i in range(20)]
    began = time.monotonic()
    results = await _run_all(ex, attempts)
    elapsed = time.monotonic() - began
    assert ex.calls["sbatch"] == 1
    assert all(results[i].ok for i in range(20))
    for a in attempts:
        assert logfiles.beside(a.log_stem, "stdout").read_text() == f"{a.index} p:{a.index}\n"
        assert logfiles.beside(a.log_stem, "stderr").read_text() == ""
    # Each child's own files, side by side in the run's directory: none of its own.
    run_dir = attempts[0].log_stem.parent
    assert [p.name for p in run_dir.iterdir() if p.is_dir()] == []
    # One squeue per poll interval (0.2 s) for all 20, never one per child: how many
    # intervals that is depends on how fast SLURM starts the tasks (each loads the
    # user's login environment, --export=NONE).
    assert ex.calls["squeue"] <= elapsed / 0.2 + 2


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.anyio
async def test_timeout_is_enforced_exactly_and_not_retryable(slurm: str, tmp_path: Path) -> None:
    ex = SlurmExecutor(_compute())
    a = _attempt(tmp_path, command="sleep 60", timeout=1.0)
    result = (await _run_all(ex, [a]))[None]
    assert result.status_reason == REASON_TIMEOUT
    assert not result.retryable
    key = result.extra["slurm_job_id"]
    with anyio.fail_after(15):
        while _squeue_active(key):
            await anyio.sleep(0.2)


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.anyio
async def test_scancel_behind_flowbatchs_back_is_a_final_failure(
    slurm: str, tmp_path: Path
) -> None:
    ex = SlurmExecutor(_compute())
    a = _attempt(tmp_path, command="sleep 60")
    results: list[ExecResult] = []

    async def runner(*, task_status: TaskStatus[str]) -> None:
        results.append(await ex.run(a, task_status=task_status))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            key = await tg.start(runner)
            subprocess.run(["scancel", key], check=True)
    assert results[0].status_reason == REASON_SCANCEL
    assert results[0].exit_code is None and not results[0].retryable
    assert results[0].extra["slurm_state"] == "CANCELLED"


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.anyio
async def test_terminate_scancels_the_job(slurm: str, tmp_path: Path) -> None:
    ex = SlurmExecutor(_compute())
    a = _attempt(tmp_path, command="sleep 60")

    async def runner(*, task_status: TaskStatus[str]) -> None:
        await ex.run(a, task_status=task_status)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            key = await tg.start(runner)
            # wait until SLURM really runs it, so that the scancel stops a live job
            while "RUNNING" not in _squeue_active(key):
                await anyio.sleep(0.1)
            tg.cancel_scope.cancel()
    assert ex.calls["scancel"] == 1
    # scancel is asynchronous: the job passes through COMPLETING, then leaves the queue
    with anyio.fail_after(15):
        while _squeue_active(key):
            await anyio.sleep(0.1)
    states = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%T", "-j", key], capture_output=True, text=True
    ).stdout.split()
    assert states == ["CANCELLED"]


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.anyio
async def test_resources_reach_slurm(slurm: str, tmp_path: Path) -> None:
    ex = SlurmExecutor(_compute())
    a = _attempt(tmp_path, command="sleep 30", vcpus=2, memory=300, timeout=90)

    async def runner(*, task_status: TaskStatus[str]) -> None:
        await ex.run(a, task_status=task_status)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            key = await tg.start(runner)
            shown = subprocess.run(
                ["scontrol", "show", "job", "-o", key], capture_output=True, text=True
            ).stdout
            tg.cancel_scope.cancel()
    assert "CPUs/Task=2" in shown
    assert "MinMemoryNode=300M" in shown
    assert "TimeLimit=00:02:00" in shown


PIPELINE = """
compute cluster {
  type          = "slurm"
  partition     = "%(partition)s"
  max_vcpus     = 4
  memory        = 4GiB
  poll_interval = 0.2
}

queue hpc {
  compute = [cluster]
}

job split {
  queue   = hpc
  command = "echo part-{{ array.index }} > split-$AWS_BATCH_JOB_ARRAY_INDEX.txt"
  array   = 4
  memory  = 64MiB
}

job square {
  queue   = hpc
  command = "n={{ array.index }}; cat split-$n.txt > sq-$n.txt; echo $((n*n)) >> sq-$n.txt"
  array   = 4
  memory  = 64MiB
  after   = [n_to_n(split)]
}

job gather {
  queue   = hpc
  command = "cat sq-0.txt sq-1.txt sq-2.txt sq-3.txt > all.txt"
  memory  = 64MiB
  after   = [square]
}
"""


class _Sink:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)

    def flush(self) -> None:
        pass


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.anyio
async def test_pipeline_on_slurm_gives_the_same_outputs_as_on_local(
    slurm: str, tmp_path: Path
) -> None:
    from flowbatch.executors import make_executor
    from flowbatch.lang.load import load_text
    from flowbatch.run.runner import RunOptions, new_job_ids, new_run_id, run_plan

    outputs: dict[str, dict[str, str]] = {}
    calls: dict[str, int] = {}
    for where in ("cluster", "local"):
        work = tmp_path / where
        work.mkdir()
        path = work / "p.flow"
        text = PIPELINE % {"partition": slurm or "debug"}
        path.write_text(text)
        plan = load_text(text, str(path))
        made: list[Any] = []

        def factory(ce: ComputeEnv, made: list[Any] = made) -> Any:
            made.append(make_executor(ce))
            return made[-1]

        with anyio.fail_after(120):
            options = RunOptions(
                run_id=new_run_id(),
                job_ids=new_job_ids(plan),
                state_dir=work / ".flowbatch",
                compute_overrides={"cluster": "local"} if where == "local" else {},
            )
            result = await run_plan(plan, options, sinks=[_Sink()], executors=factory)
        assert result.status is RunStatus.SUCCEEDED, result
        outputs[where] = {p.name: p.read_text() for p in sorted(work.glob("*.txt"))}
        calls[where] = sum(getattr(e, "calls", {}).get("sbatch", 0) for e in made)
    assert outputs["cluster"] == outputs["local"]
    assert outputs["cluster"]["all.txt"] == "".join(f"part-{i}\n{i * i}\n" for i in range(4))
    # split: one sbatch for the array; square: children become ready one by one as
    # their split child ends, so at most one sbatch each; gather: one.
    assert 3 <= calls["cluster"] <= 1 + 4 + 1
    assert calls["local"] == 0
