"""A command string of plain words runs without a shell (`lang.shell_words`), and a job
cannot tell: the same words, output, exit status and environment as under `/bin/sh -c`,
with cgroups and without. What needs the shell (syntax, builtins, a program the shell
would not find or could not exec as one) still goes through it."""

from __future__ import annotations

import dataclasses
import random
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus

from flowbatch.executors import local, logfiles
from flowbatch.executors.base import Attempt, ExecResult
from flowbatch.executors.cgroups import Cgroups
from flowbatch.executors.local import LocalExecutor
from flowbatch.lang.model import local_compute
from flowbatch.lang.shell_words import SHELL_WORDS, plain_words

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("sleep 0.5", ["sleep", "0.5"]),
        ("  /usr/bin/env\t-u X  ls ", ["/usr/bin/env", "-u", "X", "ls"]),
        ("./run.sh --in=a,b:c +1 @x 50%", ["./run.sh", "--in=a,b:c", "+1", "@x", "50%"]),
        ("true", None),  # the shell's own, as every builtin and reserved word
        ("echo hi", None),
        ("cd /tmp", None),
        ("exit 3", None),
        ("X=1 env", None),  # an assignment
        ("if", None),
        ("ls *", None),
        ("ls ~", None),
        ("ls $HOME", None),
        ("ls 'a b'", None),
        ('ls "a"', None),
        ("ls a\\ b", None),
        ("ls > out", None),
        ("ls; ls", None),
        ("ls && ls", None),
        ("ls | wc", None),
        ("ls & ", None),
        ("ls # comment", None),
        ("ls `pwd`", None),
        ("ls {a,b}", None),
        ("ls !x", None),
        ("ls\nls", None),
        ("ls é", None),
        ("", None),
        ("   ", None),
    ],
)
def test_plain_words_only_where_the_shell_would_just_split(
    command: str, words: list[str] | None
) -> None:
    assert plain_words(command) == words


def test_the_words_are_the_shells_words() -> None:
    """Random strings over sh's special characters and plain ones: every string taken as
    plain words is split exactly as /bin/sh splits it (one shell, many commands)."""
    rng = random.Random(13)
    alphabet = "ab-_./,:+@%=~*?[]{}$'\"\\;&|<>()#!^ \t\n"
    taken: list[tuple[str, list[str]]] = []
    seen = 0
    while len(taken) < 300:
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        seen += 1
        words = plain_words("cmd " + text)
        if words is not None:
            taken.append((text, words[1:]))
    assert seen > len(taken)  # the alphabet's special characters were refused too
    script = "args() { for a; do printf '%s\\n' \"$a\"; done; printf '%s\\n' '<end>'; }\n"
    script += "".join(f"args {text}\n" for text, _ in taken)
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True)
    split = out.stdout.split("<end>\n")[:-1]
    assert [s.splitlines() for s in split] == [w for _, w in taken]


def test_shell_words_keep_the_shell_for_its_builtins() -> None:
    # The shell's own `echo` reads backslashes where /bin/echo does not: the shell keeps it.
    found = subprocess.run(
        ["/bin/sh", "-c", "command -V echo printf test pwd kill true false"],
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    builtins = [line.split()[0] for line in found if "builtin" in line]
    assert builtins and set(builtins) <= SHELL_WORDS


def _workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    exit3 = work / "exit3"
    exit3.write_text('#!/bin/sh\necho out $# "$0" "$@"; echo err >&2; exit 3\n')
    exit3.chmod(0o755)
    noshebang = work / "noshebang"  # exec refuses it (ENOEXEC): the shell runs it
    noshebang.write_text("echo from a script without an interpreter line; exit 4\n")
    noshebang.chmod(0o755)
    (work / "notexec").write_text("#!/bin/sh\necho never\n")
    (work / "adir").mkdir()
    (work / "bin").mkdir()
    (work / "bin" / "s0").write_text('#!/bin/sh\necho "$0" "$PWD"\n')
    (work / "bin" / "s0").chmod(0o755)
    return work


COMMANDS = [
    "env",
    "/usr/bin/env",
    "printenv PWD",
    "printenv A-B",
    "/bin/pwd",
    "pwd",
    "ls",
    "ls -a .",
    "ls no-such-file",
    "cat no-such-file",
    "./exit3 a b=c",
    "exit3 x",  # through PATH's empty entry (the working directory): the shell's
    "s0 y",  # through PATH's relative entry
    "./noshebang",
    "./notexec",
    "notexec",
    "./adir",
    "adir",
    "no-such-program-13",
    "sleep 0",
    "true",
    "echo a\\\\b",
    "sh -c exit",
]


def _env(work: Path) -> dict[str, str]:
    return {
        "PATH": f"/usr/local/bin:/usr/bin:/bin:bin:{work}/adir",
        "LC_ALL": "C",
        "PWD": "/",  # stale: the shell sets it to the working directory
        "A-B": "dropped by the shell",
        "BASH_FUNC_f%%": "() { echo; }",
        "KEPT": "a b\tc",
    }


@pytest.fixture(params=["no cgroups", "cgroups"])
async def executor(request: pytest.FixtureRequest) -> AsyncIterator[LocalExecutor]:
    cgroups: Any = None
    if request.param == "cgroups":
        cgroups = Cgroups.create()
        if cgroups is None:
            pytest.skip("this machine gives flowbatch no writable cgroup")
    made = LocalExecutor(local_compute(2, 4096), grace=0.2, cgroups=cgroups)
    try:
        yield made
    finally:
        await made.aclose()


async def _run(executor: LocalExecutor, attempt: Attempt) -> ExecResult:
    results: list[ExecResult] = []

    async def body(*, task_status: TaskStatus[str]) -> None:
        results.append(await executor.run(attempt, task_status=task_status))

    async with anyio.create_task_group() as tg:
        await tg.start(body)
    return results[0]


def _attempt(tmp_path: Path, work: Path, n: int, command: str) -> Attempt:
    log_dir = tmp_path / "logs"
    log_dir.mkdir(exist_ok=True)
    return Attempt(
        run_id="20240101-000000-abcd",
        job_id=f"job-{n}",
        name="job",
        index=None,
        attempt=1,
        command=command,
        env={"AWS_BATCH_JOB_ID": f"job-{n}"},
        host_env=_env(work),
        workdir=work,
        vcpus=1,
        memory=256,
        gpus=0,
        timeout=None,
        image=None,
        log_stem=log_dir / f"job.{n}.attempt-1",
        compute=local_compute(2, 4096),
    )


def _norm(text: str, command: str) -> list[str]:
    lines = text.replace("eval: ", "").splitlines()  # the cgroup wrapper's (documented)
    return sorted(lines) if "env" in command else lines


@pytest.mark.slow
@pytest.mark.parametrize("empty_entry", [False, True])
async def test_a_job_sees_what_it_would_see_under_sh(
    executor: LocalExecutor, tmp_path: Path, empty_entry: bool
) -> None:
    work = _workdir(tmp_path)
    for n, command in enumerate(COMMANDS):
        attempt = _attempt(tmp_path, work, n, command)
        if empty_entry:
            path = attempt.host_env["PATH"] + ":"
            attempt = dataclasses.replace(attempt, host_env={**attempt.host_env, "PATH": path})
        result = await _run(executor, attempt)
        env = {**attempt.host_env, **attempt.env}
        sh = subprocess.run(
            ["/bin/sh", "-c", command], cwd=work, env=env, capture_output=True, text=True
        )
        out = logfiles.beside(attempt.log_stem, "stdout").read_text()
        err = logfiles.beside(attempt.log_stem, "stderr").read_text()
        assert (command, result.exit_code) == (command, sh.returncode)
        assert _norm(out, command) == _norm(sh.stdout, command), command
        assert _norm(err, command) == _norm(sh.stderr, command), command


def _record_started(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The argv of every process the local executor starts, in order."""
    started: list[list[str]] = []
    popen = subprocess.Popen

    def recording(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        started.append(list(argv))
        return popen(argv, **kwargs)

    monkeypatch.setattr(local.subprocess, "Popen", recording)
    return started


async def test_plain_words_are_execd_without_a_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = _workdir(tmp_path)
    started = _record_started(monkeypatch)
    executor = LocalExecutor(local_compute(2, 4096), grace=0.2, cgroups=None)
    try:
        for n, command in enumerate(["./exit3 a", "sleep 0", "true", "ls > x", "nope-13"]):
            await _run(executor, _attempt(tmp_path, work, n, command))
    finally:
        await executor.aclose()
    jobs = [argv for argv in started if "reaper.py" not in " ".join(argv)]
    assert jobs == [
        ["./exit3", "a"],
        ["sleep", "0"],
        ["/bin/sh", "-c", "true"],
        ["/bin/sh", "-c", "ls > x"],
        ["/bin/sh", "-c", "nope-13"],
    ]


@pytest.mark.parametrize("version", [1, 2])
async def test_in_a_cgroup_the_words_are_execd_alone_on_v1_and_behind_the_wrapper_on_v2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    """On v1 a thread of the runner steps into the job's cgroup, so a program spawns
    exactly as without one; v2 moves whole processes only, so there the wrapper does
    it. A command for the shell is evaluated by the wrapper's own shell either way."""
    cgroups = Cgroups.create(versions=(version,))
    if cgroups is None:
        pytest.skip(f"this machine gives flowbatch no writable cgroup v{version}")
    work = _workdir(tmp_path)
    started = _record_started(monkeypatch)
    executor = LocalExecutor(local_compute(2, 4096), grace=0.2, cgroups=cgroups)
    try:
        await _run(executor, _attempt(tmp_path, work, 0, "sleep 0"))
        await _run(executor, _attempt(tmp_path, work, 1, "true"))
    finally:
        await executor.aclose()
    jobs = [argv for argv in started if "reaper.py" not in " ".join(argv)]
    if version == 1:
        assert jobs[0] == ["sleep", "0"]
    else:
        assert jobs[0][-3:] == ["--", "sleep", "0"] and "exec" in jobs[0][2]
    assert jobs[1][-1] == "true" and "eval" in jobs[1][2]


def test_pwd_is_set_as_dash_sets_it(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    assert local._shell_pwd(None, link) == str(real)
    assert local._shell_pwd("/", link) == str(real)
    assert local._shell_pwd(str(link), link) == str(link)  # it names the same directory
    assert local._shell_pwd("link", link) == str(real)  # relative: not taken
    sh = subprocess.run(
        ["/bin/sh", "-c", "/usr/bin/printenv PWD"],
        cwd=link,
        env={"PWD": str(link)},
        capture_output=True,
        text=True,
    )
    assert sh.stdout.strip() == local._shell_pwd(str(link), link)


async def test_a_job_runs_inside_its_own_cgroup_either_way(tmp_path: Path) -> None:
    """Exec'd behind the wrapper or run by its shell, the job's process is in the
    attempt's cgroup (on v1 the wrapper moves itself alone: see `cgroups`)."""
    cgroups = Cgroups.create()
    if cgroups is None:
        pytest.skip("this machine gives flowbatch no writable cgroup")
    work = _workdir(tmp_path)
    executor = LocalExecutor(local_compute(2, 4096), grace=0.2, cgroups=cgroups)
    try:
        for n, command in enumerate(["cat /proc/self/cgroup", "cat /proc/self/cgroup; true"]):
            attempt = _attempt(tmp_path, work, n, command)
            assert (await _run(executor, attempt)).exit_code == 0
            lines = logfiles.beside(attempt.log_stem, "stdout").read_text().splitlines()
            hierarchy = "memory" if cgroups.version == 1 else ""
            mine = [line for line in lines if line.split(":")[1] in (hierarchy,)]
            assert mine and mine[0].endswith(f"/{cgroups.root.name}/job-{n}-a1"), lines
    finally:
        await executor.aclose()
