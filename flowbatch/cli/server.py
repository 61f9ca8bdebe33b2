"""`flowbatch server`: the standing batch service over one state directory, speaking
AWS Batch's API (see `flowbatch.server`).

It prints one line, `listening on URL`, once it accepts requests (scripts and tests
wait for that line), and stops on SIGTERM or SIGINT: it stops taking requests, stops
its jobs, flushes the store and exits 0. What was running is settled by the next start.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from flowbatch.cli.common import state_dir as state_dir_of
from flowbatch.cli.common import state_dir_option

if TYPE_CHECKING:
    from flowbatch.server.service import Service

DEFAULT_LISTEN = "127.0.0.1:8910"
DEFAULT_REGION = "us-east-1"


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise click.BadParameter(f"expected HOST:PORT, got `{text}`", param_hint="'--listen'")
    if not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"port {port} is not 0-65535", param_hint="'--listen'")
    return host.strip("[]"), int(port)


@click.command("server")
@click.option(
    "--listen",
    default=DEFAULT_LISTEN,
    show_default=True,
    metavar="HOST:PORT",
    help="Where to accept requests (port 0: any free port; the line printed says which).",
)
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A .flow file whose compute environments and queues the server offers.",
)
@click.option("--region", default=DEFAULT_REGION, show_default=True, help="The region in ARNs.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow plain HTTP on an address other than loopback (keys and jobs in clear).",
)
@click.option(
    "--keep-hours",
    type=click.FloatRange(min=0, min_open=True),
    default=24.0,
    show_default=True,
    help="How long a job stays listable and describable after it ends (AWS: 24).",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where jobs run (default: STATE_DIR/work); relative paths in commands start here.",
)
@state_dir_option
def server(
    listen: str,
    config: Path | None,
    region: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    insecure: bool,
    keep_hours: float,
    workdir: Path | None,
    state_dir: Path | None,
) -> None:
    """Run a batch service that AWS Batch's clients (boto3, the AWS CLI) can use.

    Callers sign their requests with a key of STATE_DIR/credentials (made on the first
    start, 0600); point a client at it with the lines the server prints.
    """
    import anyio

    from flowbatch.server import serve as serving

    host, port = _listen(listen)
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    serving.check_bind(host, tls=tls_cert is not None, insecure=insecure)
    directory = state_dir_of(state_dir).absolute()
    work = workdir.absolute() if workdir is not None else directory / "work"
    anyio.run(
        _serve, directory, host, port, config, region, tls_cert, tls_key, keep_hours * 3600, work
    )


async def _serve(
    directory: Path,
    host: str,
    port: int,
    config: Path | None,
    region: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    keep: float,
    workdir: Path,
) -> None:
    import anyio

    from flowbatch.lang.load import load, this_machine
    from flowbatch.run.runner import RunOptions, standing_runner
    from flowbatch.server import arns, credentials, serve
    from flowbatch.server.app import make_app
    from flowbatch.server.auth import Verifier
    from flowbatch.server.registry import Registry
    from flowbatch.server.service import RUN_ID, NamedSink, Service
    from flowbatch.store.jobstore import Store

    plan = load(config, {}) if config is not None else None
    machine = this_machine()
    store = Store.open(directory)
    try:
        path, created = credentials.ensure(directory)
        keys = credentials.load(path)
        names: dict[str, str] = {}
        runner = standing_runner(
            RunOptions(run_id=RUN_ID, job_ids={}, state_dir=directory),
            sinks=[NamedSink(store, names)],
        )
        workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        service = Service(
            store,
            runner,
            names,
            make_registry=lambda callbacks: Registry(
                store.catalog,
                region=region,
                account=arns.ACCOUNT,
                machine_vcpus=machine.vcpus,
                machine_memory=machine.memory,
                scheduling=callbacks,
                job_tags=callbacks,
            ),
            workdir=workdir,
            keep=keep,
        )
        resumed = service.start(
            plan.computes if plan is not None else None, plan.queues if plan is not None else None
        )
        app = make_app(service, Verifier(keys, region=region, also=("logs",)).verify)

        def ready(url: str) -> None:
            if created:
                click.echo(credentials.usage(path, region=region, endpoint=url), err=True)
            if resumed:
                click.echo(f"{resumed} unfinished jobs of the last start scheduled again", err=True)
            click.echo(f"listening on {url}")
            sys.stdout.flush()

        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run, False)
            tg.start_soon(_expire, service)
            tg.start_soon(
                lambda: serve.serve(
                    app,
                    host=host,
                    port=port,
                    tls_cert=tls_cert,
                    tls_key=tls_key,
                    ready=ready,
                )
            )
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    break
        store.flush()
    finally:
        store.close()


async def _expire(service: Service) -> None:
    import anyio

    # A minute apart (a quarter of a short `--keep-hours` apart), at once again while a
    # backlog of ended jobs is deleted 1,000 at a time.
    every = min(60.0, service.keep / 4)
    while True:
        await anyio.sleep(every if service.expire() < 1000 else 0)


COMMANDS = [server]
