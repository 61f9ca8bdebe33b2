"""`flowbatch submit FILE.flow --server URL`: a pipeline's jobs sent to a flowbatch server
(or anything that speaks AWS Batch's API) as AWS Batch requests, and their ids printed.

What is sent, per job, in topological order: RegisterJobDefinition (`<pipeline>-<job>`,
type container, the image, resourceRequirements, timeout, retryStrategy with
evaluateOnExit, environment, the command), then SubmitJob to the job's queue with
`dependsOn`, `arrayProperties.size` and the job's tags. The translation is pure
(`job_requests`, `depends_on`, `case_script`) and tested without a server.

Commands are rendered here, with the language's own renderer, as `flowbatch run` renders
them for attempt 1: every value shell-quoted as always, `Ref::` placeholders filled
(so `parameters` are not sent: the server would fill a value that spells `Ref::x` a
second time). Two things are known only when the job runs:

- `job.id`: rendered as a marker, which the command puts back from $AWS_BATCH_JOB_ID
  (the job's id, `ID:N` in an array child, as in the language) before it runs the text
  exactly as rendered (`with_job_id`). A template that transforms the id
  (`job.id | upper`) cannot be rendered before the id exists and is refused.
- an array whose children render differently (`array.index`): one array job whose
  command picks its child's text by $AWS_BATCH_JOB_ARRAY_INDEX (`case_script`), each
  child's rendered text run by `/bin/sh -c` (or its argv run as it is) exactly.
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flowbatch.cli.common import params_option, state_dir_option
from flowbatch.cli.remote import Remote, RemoteError, server_option
from flowbatch.errors import HintedError
from flowbatch.lang.dependencies import depends_on
from flowbatch.lang.model import JobSpec, RetryStrategy
from flowbatch.outputs.jobview import visible

if TYPE_CHECKING:
    from flowbatch.lang.compile import Plan

MAX_COMMAND_BYTES = 1 << 20  # beyond this a request is refused (AWS's limit is far lower)
MIN_TIMEOUT = 60  # AWS's minimum attemptDurationSeconds
MAX_NAME = 128
PIPELINE_TAG = "flowbatch:pipeline"
JOB_TAG = "flowbatch:job"
_MAX_TAG_VALUE = 256
_SHELL = "/bin/sh"


class SubmitError(HintedError):
    """A pipeline `submit` cannot send as it is (exit 2), with a hint."""


def sanitized(name: str) -> str:
    """`name` as AWS takes a job or definition name: [A-Za-z0-9_-]{1,128}, starting
    alphanumeric."""
    text = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:MAX_NAME]
    if not text or not text[0].isalnum():
        text = ("j" + text)[:MAX_NAME]
    return text


# -- commands ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Marker:
    """The text `job.id` is rendered as, to be replaced by $AWS_BATCH_JOB_ID when the job
    runs: letters only (shell-quoting leaves them as they are), random (no value can
    spell it)."""

    text: str

    @classmethod
    def new(cls, letters: str = "abcdefghijklm", length: int = 24) -> Marker:
        return cls("".join(secrets.choice(letters) for _ in range(length)))


def with_job_id(script: str, marker: Marker) -> list[str]:
    """The argv that runs shell text `script` under /bin/sh exactly as written, once
    each `marker` in it is replaced by $AWS_BATCH_JOB_ID (POSIX parameter expansion, no
    other program). The id is checked first to be what AWS's ids are made of, so that
    it reads the same wherever the marker stood (quoted or not)."""
    if marker.text not in script:
        return [_SHELL, "-c", script]
    m = marker.text
    fill = (
        'case "$AWS_BATCH_JOB_ID" in ""|*[!A-Za-z0-9:_-]*) '
        'echo "flowbatch: unexpected AWS_BATCH_JOB_ID" >&2; exit 1 ;; esac\n'
        f"s={shlex.quote(script)}; r=\n"
        f"while :; do case $s in *{m}*) r=$r${{s%%{m}*}}$AWS_BATCH_JOB_ID; s=${{s#*{m}}} ;;"
        " *) break ;; esac; done\n"
        f'exec {_SHELL} -c "$r$s"\n'
    )
    return [_SHELL, "-c", fill]


def _as_shell(command: str | tuple[str, ...]) -> str:
    """A rendered command as shell text that runs it: a string as it is, an argv with
    each argument quoted (sh reads them back exactly) after `exec`."""
    return command if isinstance(command, str) else "exec " + shlex.join(command)


def case_script(children: Sequence[str | tuple[str, ...]]) -> str:
    """Shell text that runs child `$AWS_BATCH_JOB_ARRAY_INDEX`'s command: a string by
    `/bin/sh -c` with exactly its text (quoted here, so that one child's text, a
    comment at its end or a syntax error in it, can never touch another's: sh parses a
    whole `case` before it runs any of it), an argv as it is."""
    lines = ['case "$AWS_BATCH_JOB_ARRAY_INDEX" in']
    for index, command in enumerate(children):
        if isinstance(command, str):
            run = f"exec {_SHELL} -c {shlex.quote(command)}"
        else:
            run = "exec " + shlex.join(command)
        lines.append(f"{index}) {run}\n;;")
    lines.append(
        '*) echo "flowbatch: no command for array index $AWS_BATCH_JOB_ARRAY_INDEX" >&2; exit 1\n;;'
    )
    lines.append("esac")
    return "\n".join(lines) + "\n"


def _render(
    spec: JobSpec, params: Mapping[str, object], index: int | None, job_id: str
) -> str | tuple[str, ...]:
    from flowbatch.lang.template import Context, render_command

    ctx = Context(
        params=params,
        job_name=spec.name,
        job_id=job_id,
        attempt=1,
        index=index,
        size=spec.array_size,
    )
    return render_command(spec.command, ctx, spec.parameters)


def _mentions_job(command: str | tuple[str, ...]) -> bool:
    texts = [command] if isinstance(command, str) else list(command)
    return any("job" in text for text in texts)


def _same(one: str | tuple[str, ...], a: str, other: str | tuple[str, ...], b: str) -> bool:
    """Whether two renders differ only where the id went: `a` in one, `b` in the other."""

    def norm(command: str | tuple[str, ...], marker: str) -> tuple[str, ...]:
        parts = (command,) if isinstance(command, str) else command
        return tuple(part.replace(marker, "\0") for part in parts)  # no render holds NUL

    return norm(one, a) == norm(other, b)


def rendered_command(
    spec: JobSpec, params: Mapping[str, object], marker: Marker | None = None
) -> list[str]:
    """The argv SubmitJob sends for `spec`: its command rendered for every child (see
    the module's docstring). TemplateError from the renderer; SubmitError for a
    transformed `job.id` or a command over MAX_COMMAND_BYTES."""
    marker = marker or Marker.new()
    other = Marker.new("nopqrstuvwxyz", 27)  # other letters, another length
    indexes: Sequence[int | None] = [None] if spec.array_size is None else range(spec.array_size)
    check = _mentions_job(spec.command)
    children: list[str | tuple[str, ...]] = []
    for index in indexes:
        out = _render(spec, params, index, marker.text)
        again = _render(spec, params, index, other.text) if check else out
        if check and not _same(out, marker.text, again, other.text):
            raise SubmitError(
                f"job {spec.name}: its command changes `job.id` (a filter, a slice, ...), "
                "and a job's id is known only once the server has it",
                hint="use $AWS_BATCH_JOB_ID in the command, or `{{ job.id }}` as it is",
            )
        children.append(out)
    if all(child == children[0] for child in children):
        only = children[0]
        if isinstance(only, tuple) and not any(marker.text in part for part in only):
            argv = list(only)
        else:
            argv = with_job_id(only if isinstance(only, str) else _as_shell(only), marker)
    else:
        argv = with_job_id(case_script(children), marker)
    if "" in argv:
        # AWS refuses an empty argument ("Command field cannot have empty strings"):
        # the shell passes one on as it is, and an empty script does what `:` does.
        argv = [
            _SHELL,
            "-c",
            ":" if argv[2:] == [""] and argv[:2] == [_SHELL, "-c"] else "exec " + shlex.join(argv),
        ]
    size = sum(len(part.encode("utf-8", "surrogatepass")) for part in argv)
    if size > MAX_COMMAND_BYTES:
        raise SubmitError(
            f"job {spec.name}: its command, rendered for its {spec.size} children, is "
            f"{size:,} bytes, over the {MAX_COMMAND_BYTES:,} a request may carry",
            hint="let the command read $AWS_BATCH_JOB_ARRAY_INDEX instead of rendering "
            "`{{ array.index }}` into it, or split the array",
        )
    return argv


# -- requests ------------------------------------------------------------------------------
def retry_strategy(retry: RetryStrategy) -> dict[str, Any]:
    """The language's retry block as AWS's retryStrategy (the same semantics: first
    matching rule wins, no match retries). `backoff` has no AWS counterpart."""
    out: dict[str, Any] = {"attempts": retry.attempts}
    rules = []
    for rule in retry.rules:
        one: dict[str, str] = {"action": rule.action.upper()}
        for key, value in (
            ("onExitCode", rule.on_exit_code),
            ("onStatusReason", rule.on_status_reason),
            ("onReason", rule.on_reason),
        ):
            if value is not None:
                one[key] = value
        rules.append(one)
    if rules:
        out["evaluateOnExit"] = rules
    return out


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _tag_value(text: str) -> str:
    return text if len(text) <= _MAX_TAG_VALUE else text[-_MAX_TAG_VALUE:]


def definition_request(spec: JobSpec, pipeline: str, command: list[str]) -> dict[str, Any]:
    """RegisterJobDefinition's request for `spec`, its command already rendered."""
    stem = Path(pipeline).stem
    resources = [
        {"type": "VCPU", "value": _number(spec.vcpus)},
        {"type": "MEMORY", "value": str(spec.memory)},
    ]
    if spec.gpus:
        resources.append({"type": "GPU", "value": str(spec.gpus)})
    props: dict[str, Any] = {"command": command, "resourceRequirements": resources}
    if spec.image is not None:
        props["image"] = spec.image
    if spec.env:
        props["environment"] = [{"name": k, "value": v} for k, v in spec.env.items()]
    out: dict[str, Any] = {
        "jobDefinitionName": sanitized(f"{stem}-{spec.name}"),
        "type": "container",
        "containerProperties": props,
        "retryStrategy": retry_strategy(spec.retry),
        "tags": {PIPELINE_TAG: _tag_value(pipeline)},
    }
    if spec.timeout is not None:
        out["timeout"] = {"attemptDurationSeconds": _timeout(spec)}
    return out


def _timeout(spec: JobSpec) -> int:
    import math

    assert spec.timeout is not None
    if spec.timeout < MIN_TIMEOUT:
        raise SubmitError(
            f"job {spec.name}: timeout {spec.timeout:g}s is below AWS Batch's minimum of "
            f"{MIN_TIMEOUT}s, which the server keeps",
            hint=f"give it `timeout = {MIN_TIMEOUT}s` or more, or run it with `flowbatch run`",
        )
    return math.ceil(spec.timeout)


def submit_request(
    spec: JobSpec, pipeline: str, definition_arn: str, ids: Mapping[str, str]
) -> dict[str, Any]:
    """SubmitJob's request for `spec`, once the jobs it waits for have ids."""
    out: dict[str, Any] = {
        "jobName": sanitized(spec.name),
        "jobQueue": spec.queue,
        "jobDefinition": definition_arn,
        "tags": {
            **dict(spec.tags),
            PIPELINE_TAG: _tag_value(pipeline),
            JOB_TAG: spec.name,
        },
    }
    deps = depends_on(spec, ids)
    if deps:
        out["dependsOn"] = deps
    if spec.array_size is not None:
        out["arrayProperties"] = {"size": spec.array_size}
    if spec.priority:
        out["schedulingPriorityOverride"] = spec.priority
    if spec.share is not None:
        out["shareIdentifier"] = spec.share
    return out


@dataclass(frozen=True, slots=True)
class JobRequests:
    name: str
    definition: dict[str, Any]
    spec: JobSpec


def job_requests(plan: Plan) -> list[JobRequests]:
    """Every job's definition request, in topological order, after every check that
    can fail before anything is sent."""
    out = []
    for name in plan.jobs():
        spec = plan.job(name)
        if spec.env_from_host:
            names = ", ".join(spec.env_from_host)
            raise SubmitError(
                f"job {name} takes {names} from the environment (env_from_host): "
                "`submit` would store the value on the server, in a job definition "
                "anyone with a key can read",
                hint="give the job the value with `env` if it is no secret, or run the "
                "pipeline here with `flowbatch run`",
            )
        command = rendered_command(spec, plan.params)
        out.append(JobRequests(name, definition_request(spec, plan.path, command), spec))
    return out


# -- the command ---------------------------------------------------------------------------
def _queues_missing(remote: Remote, wanted: Sequence[str]) -> list[str]:
    from flowbatch.cli.remote import queue_names

    known = set(queue_names(remote))
    return [q for q in dict.fromkeys(wanted) if q not in known]


def submit_plan(remote: Remote, plan: Plan) -> list[tuple[str, str]]:
    """Register and submit every job of `plan`; (name, job id) of each, printed as it is
    submitted. RemoteError when the server refuses one (naming those already sent)."""
    requests = job_requests(plan)
    missing = _queues_missing(remote, [r.spec.queue for r in requests])
    if missing:
        raise SubmitError(
            f"no job queue {', '.join(f'`{q}`' for q in missing)} on the server at {remote.url}",
            hint="create it there (CreateJobQueue, or the server's --config file); "
            "`aws batch describe-job-queues` lists those it has",
        )
    ids: dict[str, str] = {}
    done: list[tuple[str, str]] = []
    try:
        for one in requests:
            registered = remote.call("register_job_definition", **one.definition)
            request = submit_request(one.spec, plan.path, registered["jobDefinitionArn"], ids)
            job_id = remote.call("submit_job", **request)["jobId"]
            ids[one.name] = job_id
            done.append((one.name, job_id))
            click.echo(f"{one.name} {job_id}")
    except RemoteError as exc:
        if done:
            sent = ", ".join(name for name, _ in done)
            raise RemoteError(
                f"{exc.message} (submitting job {one.name}; already submitted: {sent})",
                exc.code,
                hint="`flowbatch cancel --server URL JOB_ID` cancels a job submitted",
            ) from None
        raise
    return done


_WORKDIR_NOTE = (
    "note: {jobs} name inputs/outputs: on a server a job runs in the server's working "
    "directory (its state directory's work/), and relative paths in its command are "
    "relative to that, not to {file}"
)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@server_option
@params_option
@click.option(
    "--computes",
    "compute_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="A .flow file of compute environments and queues to add, as `run --computes` "
    "(e.g. ones as large as the server's, for the pipeline's checks).",
)
@state_dir_option
@click.pass_context
def submit(
    ctx: click.Context,
    file: Path,
    server: str | None,
    params: tuple[str, ...],
    compute_files: tuple[Path, ...],
    state_dir: Path | None,
) -> None:
    """Submit FILE's jobs to a flowbatch server and print `NAME JOB_ID` for each.

    Each job becomes a job definition (`<pipeline>-<job>`) and one SubmitJob to its
    queue (which must exist on the server), with its dependencies as dependsOn. The
    commands are rendered here, as `flowbatch run` renders them; they run on the
    server, in its working directory. Follow the jobs with `flowbatch jobs --server`."""
    from flowbatch.cli.common import load_plan

    if not server:
        raise click.UsageError("submit needs --server URL (or $FLOWBATCH_SERVER)")
    plan = load_plan(ctx, file, params, computes=compute_files)
    remote = Remote(server, state_dir, retry=False)
    with_paths = [n for n in plan.jobs() if plan.job(n).inputs or plan.job(n).outputs]
    if with_paths:
        jobs = ", ".join(with_paths[:5]) + (", ..." if len(with_paths) > 5 else "")
        click.echo(visible(_WORKDIR_NOTE.format(jobs=jobs, file=file.parent or ".")), err=True)
    backoff = [n for n in plan.jobs() if plan.job(n).retry.backoff is not None]
    if backoff:
        click.echo(
            f"note: retry backoff ({', '.join(backoff[:5])}) is not an AWS Batch setting: "
            "the server retries without waiting",
            err=True,
        )
    submit_plan(remote, plan)


COMMANDS: list[click.Command] = [submit]
