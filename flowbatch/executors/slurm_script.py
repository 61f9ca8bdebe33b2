"""The batch script and sbatch arguments for one submission: a single job, or many
children of one array job submitted together as one `sbatch --array`.

The job gets the environment SLURM gives `sbatch --export=NONE` (the user's login
environment on the node, and SLURM's own variables) plus the attempt's `env`; nothing
of the runner's, which sbatch's default `--export=ALL` would copy into every job. The
script carries the attempt's `env` as shell-quoted `export` lines (never on sbatch's
command line, which any user can read, and free of sbatch's splitting of `--export` on
commas); it is written private (0600, in 0700 directories), as are the logs it leaves.
For an array, the environment shared by every child is exported once and a `case`
on `SLURM_ARRAY_TASK_ID` holds what differs (the command, AWS_BATCH_JOB_ID, ...), so a
10,000-child script stays small enough to write in one go. A container gets its
environment as an env-file here-document on its runtime's stdin (see container.py),
not exported into the runtime's own environment.

The script records the command's exit status in `<log stem>.slurm-exit-code` (beside the
attempt's logs, see logfiles.py), so that a job SLURM has already purged (MinJobAge)
still has a known ending.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path

from flowbatch.executors import logfiles
from flowbatch.executors.base import Attempt, env_file_can_carry
from flowbatch.executors.slurm_parse import format_indices, time_limit_minutes

EXIT_FILE = "slurm-exit-code"
# Ends a container's env-file here-document; it has no `=`, so no env-file line can be it.
ENV_END = "FLOWBATCH_ENV_END"

# sbatch refuses a script holding a CRLF ("DOS line breaks"), which a value or a command
# may: every CR is written as this variable, set at the top of a script that needs it.
_CR = '"$fb_cr"'
_CR_SET = "fb_cr=$(printf '\\r')"


def _quote(word: str) -> str:
    """shlex.quote, with no raw CR in the result."""
    return _CR.join(shlex.quote(part) for part in word.split("\r"))


def _join(argv: Sequence[str]) -> str:
    return " ".join(_quote(word) for word in argv)


# Turns an attempt into the argv that runs it (the container engineer's container_argv
# when `attempt.image` is set); None means run `attempt.command` directly.
ArgvFor = Callable[[Attempt], Sequence[str] | None]


def command_line(attempt: Attempt, argv_for: ArgvFor) -> str:
    """The shell line(s) that run the attempt's command in the batch script: for a
    container, its runtime with the env-file as a here-document on its stdin."""
    argv = argv_for(attempt)
    if argv is not None:
        from flowbatch.executors.container import env_file_text

        text = env_file_text(attempt.env)
        return f"{_join(argv)} <<'{ENV_END}'\n{text}{ENV_END}"
    if isinstance(attempt.command, str):
        return _join(["/bin/sh", "-c", attempt.command])
    return _join(attempt.command)


def _escaped(text: str) -> str:
    return text.replace("%", "%%")  # sbatch expands `%` in --output and --error


def output_pattern(attempts: Sequence[Attempt]) -> str | None:
    """A `--output` stem pattern (with `%a` for the array index) that names every
    attempt's log stem, or None when the stems follow no such pattern (the script then
    redirects its output itself)."""
    first = attempts[0]
    if first.index is None:
        return _escaped(str(first.log_stem))
    run_dir = first.log_stem.parent
    for a in attempts:
        if a.log_stem != logfiles.stem(run_dir, a.name, a.index, a.attempt):
            return None
    name = logfiles.stem_name(_escaped(first.name), "%a", first.attempt)
    return f"{_escaped(str(run_dir))}/{name}"


def script_path(attempts: Sequence[Attempt], token: str) -> Path:
    """Where the batch script goes, beside the logs (on the shared filesystem): the
    attempt's `<stem>.slurm-batch.sh`, or for an array, whose children share one script,
    `<name>.attempt-<N>.slurm-<token>.sh` in the directory of every child's logs (the
    stem an array job itself never writes logs at)."""
    first = attempts[0]
    if first.index is None:
        return logfiles.beside(first.log_stem, "slurm-batch.sh")
    common = Path(os.path.commonpath([str(a.log_stem.parent) for a in attempts]))
    return logfiles.beside(
        logfiles.stem(common, first.name, None, first.attempt), f"slurm-{token}.sh"
    )


def _exported(attempt: Attempt) -> dict[str, str]:
    """What the script exports: the whole `env` of a job that runs in the script's
    shell; of a container's, only what its env-file cannot carry (container.py)."""
    if attempt.image is None:
        return dict(attempt.env)
    return {k: v for k, v in attempt.env.items() if not env_file_can_carry(k, v)}


def _exports(env: dict[str, str]) -> list[str]:
    return [f"export {k}={_quote(v)}" for k, v in sorted(env.items())]


def batch_script(attempts: Sequence[Attempt], argv_for: ArgvFor, *, redirect: bool) -> str:
    """The text of the batch script for these attempts (one single job, or children of
    one array job with the same attempt number)."""
    first = attempts[0]
    lines = [
        "#!/bin/sh",
        f"# flowbatch: job {first.name}, attempt {first.attempt}, run {first.run_id}",
    ]
    if first.index is not None:  # read before any export of the job's env can change it
        lines.append('fb_task="$SLURM_ARRAY_TASK_ID"')
    # srun in the job passes the job's environment on to its steps; --export=NONE would
    # otherwise reach them through SLURM_EXPORT_ENV.
    lines.append("export SLURM_EXPORT_ENV=ALL")
    envs = [_exported(a) for a in attempts]
    common = {k: v for k, v in envs[0].items() if all(e.get(k) == v for e in envs[1:])}
    lines += _exports(common)

    def body(a: Attempt, env: dict[str, str]) -> list[str]:
        out = [f"fb_stem={_quote(str(a.log_stem))}"]
        if redirect:
            out.append('exec >"$fb_stem.stdout" 2>"$fb_stem.stderr"')
        out.append(f"cd {_quote(str(a.workdir))} || exit 1")
        if a.image is not None:  # the runtime runs in a directory of its own (conmon#504)
            out.append('mkdir -m 700 "$fb_stem.conmon" 2>/dev/null; cd "$fb_stem.conmon" || exit 1')
        out += _exports({k: v for k, v in env.items() if k not in common})
        out.append(command_line(a, argv_for))
        return out

    if first.index is None:
        lines += body(first, envs[0])
    else:
        lines.append('case "$fb_task" in')
        for a, env in zip(attempts, envs, strict=True):
            lines.append(f"{a.index})")
            lines += ["  " + line for line in body(a, env)]
            lines.append("  ;;")
        lines += [
            '*) echo "flowbatch: task $fb_task is not in this batch" >&2; exit 1 ;;',
            "esac",
        ]
    lines += [
        "fb_rc=$?",
        f'(umask 077 && printf "%s\\n" "$fb_rc" >"$fb_stem.{EXIT_FILE}")',
        'exit "$fb_rc"',
        "",
    ]
    if any(_CR in line for line in lines):
        lines.insert(2, _CR_SET)
    return "\n".join(lines)


def sbatch_argv(
    attempts: Sequence[Attempt], script: Path, options: dict[str, object], *, pattern: str | None
) -> list[str]:
    """The sbatch command line for one submission."""
    first = attempts[0]
    argv = [
        "sbatch",
        "--parsable",
        f"--job-name=fb-{first.name}",
        f"--cpus-per-task={max(1, int(-(-first.vcpus // 1)))}",
        f"--mem={first.memory}",
        f"--chdir={first.workdir}",
        "--export=NONE",
    ]
    for key in ("partition", "account", "qos"):
        if options.get(key):
            argv.append(f"--{key}={options[key]}")
    if first.gpus:
        argv.append(f"--gres=gpu:{first.gpus}")
    if first.timeout is not None:
        argv.append(f"--time={time_limit_minutes(first.timeout)}")
    if pattern is not None:
        argv += [f"--output={pattern}.stdout", f"--error={pattern}.stderr"]
    else:
        argv += ["--output=/dev/null", "--error=/dev/null"]
    if first.index is not None:
        argv.append(f"--array={format_indices(a.index for a in attempts if a.index is not None)}")
    argv.append(str(script))
    return argv
