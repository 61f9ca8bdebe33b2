"""What every CLI command shares: `-p NAME=VALUE` options, loading a pipeline, where the
state directory is, and which job an id on the command line means. Errors are printed
in `reporting`, streams kept alive in `streams`, GitHub's workflow commands in `github`.

One rule for every command, as Nextflow and Snakemake keep theirs: the state directory is
`--state-dir`, else `$FLOWBATCH_STATE_DIR`, else `.flowbatch` in the current directory
(the directory a command is run from, never the pipeline file's). `flowbatch run
pipelines/x.flow` followed by `flowbatch jobs` from the same directory then see the same
runs; a pipeline's own relative paths (`workdir`) still resolve against its file.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from flowbatch.lang.compile import Plan
    from flowbatch.store.jobstore import Store

STATE_DIR_ENV = "FLOWBATCH_STATE_DIR"
DEFAULT_STATE_DIR = ".flowbatch"

F = TypeVar("F", bound=Callable[..., Any])


class _Startup:
    collector_off = False  # by `begin_startup`, until `startup_over`
    clean_end = False  # by `end_cleanly`: see `finished_cleanly`


def begin_startup() -> None:
    """`main`, first: no cycle collection until the command's start-up is over. Start-up
    makes hundreds of thousands of objects and no garbage cycles (~120 objects at the
    end of a run's), and the collections cost `flowbatch run` ~9 ms before its first job
    (issue 13)."""
    gc.disable()
    _Startup.collector_off = True


def startup_over() -> None:
    """The command's start-up (imports, and for `run` the pipeline loaded and the store
    opened) is done: from here the cycle collector runs, as usual, over what is made
    from now on; what exists now lives for the whole command and is kept out of its
    passes (gc.freeze). Nothing to do for a command not started by `main` (a test's
    CliRunner): the collector is as its caller left it."""
    if _Startup.collector_off:
        _Startup.collector_off = False
        gc.freeze()
        gc.enable()


def end_cleanly() -> None:
    """The command has closed every file, database and process it opened, and will
    write nothing more but to stdout and stderr: `main` may end the process without the
    interpreter's shutdown (issue 13: `run`'s teardown). Only `run` says so, as its
    last step."""
    _Startup.clean_end = True


def finished_cleanly() -> bool:
    """Whether the command said `end_cleanly`."""
    return _Startup.clean_end


def params_option(func: F) -> F:
    """The `-p NAME=VALUE` option, repeatable, as a tuple of strings named `params`."""
    return click.option(
        "-p",
        "--param",
        "params",
        multiple=True,
        metavar="NAME=VALUE",
        help="Override a pipeline parameter (repeatable).",
    )(func)


def state_dir_option(func: F) -> F:
    """`--state-dir DIR`, as a Path or None (then `state_dir()` picks the default)."""
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=f"Where the job database and logs are (default: ${STATE_DIR_ENV}, else "
        f"{DEFAULT_STATE_DIR} in the current directory).",
    )(func)


def state_dir(option: Path | None) -> Path:
    """The state directory: `--state-dir`, else $FLOWBATCH_STATE_DIR, else ./.flowbatch.
    A leading `~` is the home directory, as a CI file's `env:` or `--state-dir=~/x`
    pass it without a shell to expand it."""
    if option is not None:
        return option.expanduser()
    from_env = os.environ.get(STATE_DIR_ENV, "")
    return Path(from_env).expanduser() if from_env else Path(DEFAULT_STATE_DIR)


def _where_from(option: Path | None) -> str:
    if option is not None:
        return "given by --state-dir"
    if os.environ.get(STATE_DIR_ENV, ""):
        return f"from ${STATE_DIR_ENV}"
    return f"the default, {DEFAULT_STATE_DIR} in the current directory"


def open_existing_store(option: Path | None) -> Store:
    """The store of an existing state directory; StoreError saying where it looked, why
    it looked there and how to point elsewhere when there is no job database."""
    from flowbatch.store.jobstore import DB_NAME, Store, StoreError

    directory = state_dir(option)
    if not (directory / DB_NAME).exists():
        raise StoreError(
            f"no job database at `{os.path.abspath(directory / DB_NAME)}` "
            f"({_where_from(option)}): nothing has run with this state directory yet. "
            f"flowbatch keeps its state in {DEFAULT_STATE_DIR} of the directory `flowbatch "
            f"run` was started from: run this command there, or pass --state-dir DIR or set "
            f"{STATE_DIR_ENV}=DIR"
        )
    return Store.open(directory, create=False)


def parse_params(values: tuple[str, ...]) -> dict[str, str]:
    """`-p NAME=VALUE` options as a mapping; click.BadParameter (exit 2) for a bad one."""
    params: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            from flowbatch.outputs.jobview import visible  # on an error only

            raise click.BadParameter(
                f"expected NAME=VALUE, got `{visible(item)}`", param_hint="'-p'"
            )
        params[name.strip()] = value
    return params


def load_plan(
    ctx: click.Context, file: str | Path, params: tuple[str, ...], **options: Any
) -> Plan:
    """The Plan of FILE with `-p` overrides; raises FlowError (the CLI's handler prints
    it and exits 2)."""
    from flowbatch.lang.load import load

    return load(file, parse_params(params), **options)


def storable(text: str) -> str:
    """`text` as the store can hold it. An argument that is not valid UTF-8 reaches Python
    with lone surrogates, which SQLite cannot encode: its bad bytes become U+FFFD (an id
    then matches nothing and says so; a reason or a path keeps the rest)."""
    try:
        raw = text.encode("utf-8", "surrogateescape")  # the argument's own bytes
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")


class StoredText(click.ParamType[str, str]):
    """A text option whose value goes to the store: `storable`."""

    name = "text"

    def convert(self, value: str, param: click.Parameter | None, ctx: click.Context | None) -> str:
        return storable(value)


STORED_TEXT = StoredText()


def resolve_job_id(store: Store, text: str) -> str:
    """The job id `text` stands for: an id (or `ID:INDEX` for an array child), the
    `NAME` or `NAME:INDEX` of a job of the latest run, or a unique prefix of an id
    (`PREFIX:INDEX` too). A name is taken before a prefix. StoreError for an ambiguous
    prefix (naming the candidates), else the store's own error for `text` (with its
    suggestion) when nothing matches."""
    from flowbatch.store.jobstore import StoreError

    text = storable(text)
    try:
        store.describe(text)
        return text
    except StoreError as err:
        not_found = err
    base, sep, index = text.rpartition(":")
    if not (sep and index.isdigit()):
        base, index = text, ""
    suffix = f":{index}" if index else ""
    if not base:
        raise not_found
    latest = store.latest_run()
    if latest is not None:
        named = store.jobs(run_id=latest, name=base)
        if len(named) == 1:
            return f"{named[0]['jobId']}{suffix}"
    found = store.job_ids_starting(base)
    if len(found) == 1 and found[0] + suffix != text:
        return f"{found[0]}{suffix}"
    if len(found) > 1:
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        raise StoreError(f"`{base}` is the start of several job ids: {shown}; give more of it")
    if not found and any(run["runId"] == text for run in store.runs()):
        raise StoreError(
            f"`{text}` is a run, not a job: `flowbatch jobs --run {text}` lists its jobs"
        )
    earlier = store.jobs(name=base) if latest is not None and not found else []
    if earlier:  # a name is looked up in the latest run only: say where it did run
        last = earlier[-1]
        raise StoreError(
            f"no job named `{base}` in the latest run ({latest}); it ran in run "
            f"{last['runId']} as job `{last['jobId']}{suffix}`"
        )
    raise not_found
