"""Containers: how one attempt of a job with an `image` becomes a container runtime call.

Every executor type uses this module: the local executor runs `container_argv(...)`
itself, the ssh and slurm executors run `shlex.join(container_argv(...))` on the
remote machine. The runtime (podman or docker) runs attached (`run --rm`, no `-d`),
so the runtime process's exit status is the job's, its stdout and stderr are the job's,
and a signal sent to it reaches the job (`--sig-proxy`, with `--init` as PID 1 so that
a job that installs no handler still dies of SIGTERM, which a bare PID 1 would ignore).

A container's environment is the attempt's `env` and nothing else of the runner's (as
on AWS Batch), and the image keeps its own PATH. No value is ever on the runtime's command
line, where every local user could read it (`ps`): the values go in an env-file that the
runtime reads from its stdin (`--env-file /dev/stdin`; `env_file_text`), which each
executor feeds from a pipe (`env_pipe`) or a here-document, so no env-file is ever left
behind, not even by a runner killed mid-job. A value no env-file can carry (a line
break, or a line of 64 KiB or more, which the runtimes' parser refuses) is named with
`-e NAME` and read by the runtime from its own environment (`Attempt.process_env`).
podman would also pass on the runner's proxy variables (HTTP_PROXY, which may hold a
password), or all of them with `env_host = true` in a containers.conf:
`--http-proxy=false --env-host=false`.

A container sees only the attempt's working directory (mounted at the same path, so
paths in commands mean the same inside and out), no network unless the compute
environment says `network = true` (then the host's network), and hard cpu and memory
limits (swap equal to the memory limit, so that going over the limit is an OOM kill,
exit 137, as on AWS).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import PurePath
from typing import Final

import anyio

from flowbatch.errors import FlowbatchError
from flowbatch.executors.base import Attempt, env_bytes, env_file_can_carry
from flowbatch.lang.model import ComputeEnv

RUNTIMES: Final = ("podman", "docker")

# Labels on every container, so that containers a crashed runner left behind can be
# found (`podman ps -a --filter label=flowbatch.run_id=...`).
LABEL_RUN: Final = "flowbatch.run_id"
LABEL_JOB: Final = "flowbatch.job_id"

# AWS's container.reason for a container over its memory limit, so that rules written
# for AWS (`on_reason = "OutOfMemoryError*"`) match here.
REASON_OOM: Final = "OutOfMemoryError: Container killed due to memory usage"
OOM_EXIT_CODE: Final = 137  # 128 + SIGKILL

ENV_FILE_STDIN: Final = "/dev/stdin"
# A pipe this large holds any environment an exec could: Linux's default pipe-max-size.
MAX_ENV_BYTES: Final = 1024 * 1024

# What the runtime's own process reads from its environment: podman, docker, their Go
# runtime, the dynamic loader and libc. A value that goes by name (`-e NAME`) sits in that
# process's environment first, where a variable of these names would steer the runtime
# on this side of the container (LD_PRELOAD, CONTAINER_HOST, TMPDIR, ...) instead of
# reaching the job. None of these needs a line break or 64 KiB; a PEM in SSL_KEY does.
_RUNTIME_PREFIXES = (
    "LD_", "CONTAINER", "_CONTAINER", "DOCKER", "PODMAN", "BUILDAH", "STORAGE", "REGISTR",
    "CONMON", "CRUN", "RUNC", "XDG_", "SYSTEMD", "LISTEN_", "DBUS_", "GCONV", "MALLOC",
    "GLIBC", "LC_", "LANG",
)  # fmt: skip
_RUNTIME_NAMES = frozenset(
    (
        "PATH", "HOME", "TMPDIR", "USER", "LOGNAME", "SHELL", "TZ", "NLSPATH", "LOCPATH",
        "HOSTALIASES", "RES_OPTIONS", "LOCALDOMAIN", "TERM", "NOTIFY_SOCKET",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "GODEBUG", "GOGC", "GOMAXPROCS", "GOMEMLIMIT",
        "GOTRACEBACK",
    )
)  # fmt: skip


def steers_runtime(name: str) -> bool:
    """Whether a container runtime's own process would read variable `name`."""
    upper = name.upper()
    return upper in _RUNTIME_NAMES or upper.startswith(_RUNTIME_PREFIXES) or upper.endswith("PROXY")


_UNSAFE_NAME_CHARS = re.compile(r"[^a-z0-9_.-]+")


class ContainerError(FlowbatchError):
    """A job cannot be run in a container as configured; the message says why and what
    would be right."""


def choose_runtime(compute: ComputeEnv) -> str:
    """The container runtime for a compute environment.

    `compute.options["runtime"]` when given ("podman" or "docker"; not looked up on
    PATH, because for ssh and slurm it runs on another machine); otherwise podman if it
    is on this machine's PATH, else docker. Raises ContainerError for an unknown runtime
    or when neither is installed.
    """
    given = compute.options.get("runtime")
    if given is not None:
        if given not in RUNTIMES:
            raise ContainerError(
                f"compute `{compute.name}`: unknown container runtime {given!r}; "
                f'use runtime = "podman" or runtime = "docker"'
            )
        return str(given)
    for runtime in RUNTIMES:
        if shutil.which(runtime) is not None:
            return runtime
    raise ContainerError(
        f"compute `{compute.name}`: a job has an `image` but neither podman nor docker "
        "is on PATH; install one, or set `runtime` in the compute environment"
    )


def container_name(attempt: Attempt) -> str:
    """`fb-<run_id>-<job_id, ':' as '-'>-<attempt>`, lowercased, safe as a container name."""
    return name_of(attempt.run_id, attempt.job_id, attempt.attempt)


def name_of(run_id: str, job_id: str, attempt: int) -> str:
    """`container_name` from what the store keeps of an attempt."""
    raw = f"fb-{run_id}-{job_id.replace(':', '-')}-{attempt}"
    return _UNSAFE_NAME_CHARS.sub("-", raw.lower())


def _network_enabled(compute: ComputeEnv) -> bool:
    network = compute.options.get("network", False)
    if not isinstance(network, bool):
        raise ContainerError(
            f"compute `{compute.name}`: `network` must be true or false, not {network!r}"
        )
    return network


def _bind(path: PurePath) -> str:
    # A relative source would name a volume, not a directory, and a `:` would split the
    # -v spec: both would silently mount the wrong thing.
    if not path.is_absolute():
        raise ContainerError(f"working directory {str(path)!r} must be an absolute path")
    if ":" in str(path):
        raise ContainerError(f"working directory {str(path)!r} cannot contain `:`")
    return f"{path}:{path}"


def container_argv(attempt: Attempt, *, runtime: str, name: str) -> list[str]:
    """The argv that runs `attempt` in `attempt.image` with `runtime`, attached.

    `podman run --rm --name NAME --pull=never --network=none|host --init --sig-proxy=true
    --log-driver=none --cpus=V --memory=Mm --memory-swap=Mm -v WD:WD -w WD
    --env-file /dev/stdin [-e NAME ...] IMAGE /bin/sh -c CMD` (or IMAGE followed by the
    argv of a tuple command); the caller feeds `env_file_text(attempt.env)` to its
    stdin and runs it with `attempt.process_env()`. Images are
    never pulled: a missing image fails the attempt at once instead of hanging on a
    registry. Raises ContainerError for an attempt without an image, an empty command,
    a working directory that cannot be mounted, or a value that would have to go by name
    under a name the runtime reads itself (`steers_runtime`).
    """
    if attempt.image is None:
        raise ContainerError(f"job `{attempt.name}` has no image")
    if runtime not in RUNTIMES:
        raise ContainerError(f"unknown container runtime {runtime!r}")
    workdir = PurePath(attempt.workdir)
    argv = [runtime, "run", "--rm", "--name", name, "--pull=never"]
    # With `network = true` the job shares the host's network, as an uncontained job
    # would: it always works (no bridge or CNI setup needed, rootless too) and reaches
    # services on localhost. The flag is explicit because a runtime's default may be
    # none (flowbatch's CI sets netns = "none").
    argv.append("--network=host" if _network_enabled(attempt.compute) else "--network=none")
    argv += [
        "--init",
        "--sig-proxy=true",
        # The attached streams are the logs; a second copy in the runtime's log store
        # would only cost disk and time.
        "--log-driver=none",
        f"--label={LABEL_RUN}={attempt.run_id}",
        f"--label={LABEL_JOB}={attempt.job_id}",
    ]
    if attempt.vcpus > 0:
        argv.append(f"--cpus={attempt.vcpus:g}")
    if attempt.memory > 0:
        argv += [f"--memory={attempt.memory}m", f"--memory-swap={attempt.memory}m"]
    if runtime == "podman":
        # Explicit, so that a containers.conf saying `env_host = true` changes nothing.
        argv += ["--env-host=false", "--http-proxy=false"]
    argv += ["-v", _bind(workdir), "-w", str(workdir)]
    argv += ["--env-file", ENV_FILE_STDIN]
    for key, value in sorted(attempt.env.items()):
        if not env_file_can_carry(key, value):
            if steers_runtime(key):
                raise ContainerError(
                    f"`{key}` of job `{attempt.name}` cannot reach its container: the value "
                    "(with a line break, 64 KiB or more, or bytes that are not UTF-8) would "
                    f"have to pass through the runtime's own environment, where `{key}` "
                    "steers the runtime itself"
                )
            argv += ["-e", key]
    argv.append(attempt.image)
    if isinstance(attempt.command, str):
        argv += ["/bin/sh", "-c", attempt.command]
    elif attempt.command:
        argv += list(attempt.command)
    else:
        raise ContainerError(f"job `{attempt.name}` has an empty command")
    return argv


def env_file_text(env: Mapping[str, str]) -> str:
    """The env-file that gives a container `env`: `NAME=value` lines, the value as it is
    (podman and docker take everything after the first `=` literally). Values it cannot
    carry are left out: `container_argv` names them with `-e NAME`. Raises
    ContainerError for an environment too large to be handed over."""
    text = "".join(f"{k}={v}\n" for k, v in sorted(env.items()) if env_file_can_carry(k, v))
    if len(env_bytes(text)) > MAX_ENV_BYTES:
        raise ContainerError(
            f"the job's environment is larger than {MAX_ENV_BYTES // 1024} KiB; "
            "pass large data in files instead"
        )
    return text


def env_pipe(env: Mapping[str, str]) -> int:
    """The read end of a pipe holding `env_file_text(env)`, whole, its write end closed:
    the stdin of a runtime told `--env-file /dev/stdin`. The pipe is grown to hold the
    text, so writing it never blocks. The caller closes the descriptor."""
    data = env_bytes(env_file_text(env))
    read, write = os.pipe2(os.O_CLOEXEC)
    try:
        if len(data) > 65536:  # Linux's default pipe size
            fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, len(data))
        view = memoryview(data)
        while view:
            view = view[os.write(write, view) :]
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(write)
    return read


def exit_reason(exit_code: int | None) -> str:
    """AWS's container.reason for a container that ended by itself with `exit_code`.

    An OOM kill is SIGKILL, 137; the runtime cannot say more (podman's OOMKilled flag
    stays false under runc with cgroup v1, and `--rm` removes the container before it
    could be inspected). Inside a container nothing else sends SIGKILL unless the job
    does so itself, so 137 is reported as the memory limit. Executors must not use this
    for attempts they stopped themselves (timeout, cancel), which also end with 137.
    """
    return REASON_OOM if exit_code == OOM_EXIT_CODE else ""


def remove_argv(runtime: str, name: str) -> list[str]:
    """The argv that force-removes container `name` at once (for remote executors)."""
    if runtime == "podman":
        # podman's `rm -f` otherwise waits the stop timeout (10 s) after SIGTERM.
        return [runtime, "rm", "--force", "--time=0", "--ignore", name]
    return [runtime, "rm", "--force", name]


async def remove_container(runtime: str, name: str, *, timeout: float = 15.0) -> None:
    """Force-remove container `name`, best effort. Call it after stopping an attempt in
    any way: a runtime process that gets SIGKILL leaves its container running, and one
    that gets SIGTERM while still creating the container can exit (podman 4.3: with
    status 0) and leave it behind in the Created state, which `--rm` does not clean.

    Never raises (a container that is already gone is the usual case); shielded from
    cancellation, because it runs in cleanup, and bounded by `timeout` seconds."""
    with anyio.move_on_after(timeout, shield=True):
        with contextlib.suppress(OSError):  # the runtime is not installed: nothing to remove
            await anyio.run_process(remove_argv(runtime, name), check=False)
