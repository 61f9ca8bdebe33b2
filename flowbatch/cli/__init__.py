"""The command line: the composition root, the only place that prints diagnostics to
stderr and chooses exit codes (0 ok, 1 a job failed, 2 bad input or usage, 130
interrupted, 70 a bug in flowbatch).

A command lets a FlowbatchError it cannot handle better go: the group prints it
(`common.report_error`) and exits with its code. Any other exception is a bug, and is
reported as one (`common.report_bug`), never as bad input.

Each group of commands lives in its own module, imported only when one of its commands
runs: `flowbatch validate` must not pay for anyio, sqlite3 or graphviz.

    validate      validate;  graph: graph;  running: run;  control: cancel, terminate
    inspect       jobs, describe, logs, runs;  planning: plan;  reports: report
    server        server (the standing batch service, `flowbatch.server`)
    submitting    submit (a pipeline's jobs to a server);  remote: --server of the others
    common        what every command shares;  outputs: JUnit / step summary after a run
"""

from __future__ import annotations

import atexit
import gc
import importlib
import os
import sys
import threading

import click

from flowbatch.cli.common import begin_startup, finished_cleanly, startup_over
from flowbatch.errors import FlowbatchError

# command name -> the module that defines it (in its COMMANDS list)
COMMAND_MODULES = {
    "validate": "validate",
    "graph": "graph",
    "run": "running",
    "cancel": "control",
    "terminate": "control",
    "jobs": "inspect",
    "describe": "inspect",
    "logs": "inspect",
    "runs": "inspect",
    "plan": "planning",
    "report": "reports",
    "server": "server",
    "submit": "submitting",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMAND_MODULES if self.get_command(ctx, name))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module_name = COMMAND_MODULES.get(name)
        if module_name is None:
            return None
        module = importlib.import_module(f"flowbatch.cli.{module_name}")
        if name != "run":  # `run` says when its start-up is over, before its first job
            startup_over()
        return next((c for c in module.COMMANDS if c.name == name), None)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except FlowbatchError as err:
            from flowbatch.cli.reporting import fail

            fail(err)
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise  # click's own (usage, exit codes) and a gone reader (`main`) are no bug
        except Exception as err:
            from flowbatch.cli.reporting import report_bug

            report_bug(err)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """`--version`: the installed distribution's, or say that this is a checkout run
    through PYTHONPATH (click's own option raises RuntimeError there)."""
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("flowbatch")
    except PackageNotFoundError:
        found = "unknown (not installed: run from a source tree)"
    click.echo(f"flowbatch, version {found}")
    ctx.exit()


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
def app() -> None:
    """flowbatch: pipelines of batch jobs, with AWS Batch's semantics."""
    from flowbatch.cli.github import guard_workflow_commands, on_github

    if on_github():
        guard_workflow_commands()


def _fill_closed_descriptors() -> None:
    """Point descriptors 0, 1 and 2 that were closed at start (`>&-`, `2>&-`) at
    /dev/null, with sys.stdin/stdout/stderr on them (Python left those None). Else the
    job database or a log opened next would take one of these numbers, and whatever
    writes to "stderr" would write into it; and every command would have to allow for a
    stream that is None."""
    import os

    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: `fd` itself
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, encoding="utf-8", closefd=False))  # noqa: SIM115


def main() -> None:
    """The `flowbatch` command: the process's entry point."""
    _fill_closed_descriptors()
    begin_startup()  # until the command's start-up is over: see common.startup_over
    try:
        app(prog_name="flowbatch")
    except BrokenPipeError:
        # The reader of our output has gone (`flowbatch jobs | head -1`) in a place click
        # does not catch it: Python's recipe, /dev/null behind stdout and exit 1, quietly.
        from flowbatch.cli.streams import point_at_devnull

        point_at_devnull(sys.stdout)
        sys.exit(1)
    except SystemExit as done:
        if finished_cleanly() and _is_the_program():
            _exit_at_once(done.code)
        raise
    finally:
        _quick_exit()


def _is_the_program() -> bool:
    """Whether `main` runs as this process's program (`python -m flowbatch`, or the
    `flowbatch` script), not called by another program that goes on after it."""
    program = sys.modules.get("__main__")
    spec = getattr(program, "__spec__", None)
    if spec is not None:
        return bool(spec.name == "flowbatch.__main__")
    script = getattr(program, "__file__", None)
    return (
        script is not None
        and bool(sys.argv)
        and os.path.abspath(script) == os.path.abspath(sys.argv[0])
        and os.path.basename(script) == "flowbatch"
    )


def _exit_at_once(code: object) -> None:
    """End the process now, with exit status `code`, skipping the interpreter's own
    shutdown (~5-10 ms for `run`, its thousands of module objects torn down one by one:
    issue 13's teardown). What the shutdown would do that matters is done first: the
    atexit handlers (a coverage tool's, say), the standard streams flushed. Where that
    cannot be done as usual (another thread still runs, a stream will not flush, an exit
    status that is not a number), it returns and the usual shutdown follows."""
    if not isinstance(code, int) and code is not None:
        return
    if threading.active_count() > 1:
        return  # the usual shutdown waits for it
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            return  # the usual shutdown reports it (exit status 120)
    os._exit(code or 0)


def _quick_exit() -> None:
    """The command is done: what it made is garbage freed by reference counting, or lives
    until the process ends. The cycle collector's passes over every object at interpreter
    shutdown would cost ~20 ms of each command's wall time (issue 13: `run`'s teardown),
    so they skip what exists now. Shutdown is otherwise as usual (atexit handlers, the
    streams flushed; every file and database a command opens it closes itself), except
    after a command that ended cleanly (`run`), which skips it (`_exit_at_once`)."""
    gc.freeze()
    gc.enable()  # as a caller in the same process would expect it
