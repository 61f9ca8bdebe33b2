"""Serving the app: Uvicorn inside the caller's event loop (asyncio, through anyio).

`serve` binds the socket itself (port 0 gives a free port, and the URL handed to
`ready` names the real one; a bind that fails is a `ServeError`, not Uvicorn's
`sys.exit`), then runs `uvicorn.Server` as a task of its own and returns when its
caller's scope is cancelled, after a graceful stop: the socket closed, requests in
flight answered (within `grace` seconds). Uvicorn's signal handlers stay out: SIGTERM
and SIGINT belong to the command that runs the server, which cancels the scope.

No access log (its lines would carry paths with ARNs and the client's addresses for
every request, and help nothing that the job store does not); Uvicorn's own log goes to
the `uvicorn.error` logger, unconfigured here.

`check_bind` is the policy on where the server may listen: loopback, or TLS, or the
user's explicit `--insecure`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
from collections.abc import Callable, Generator

import anyio
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from flowbatch.errors import HintedError


class ServeError(HintedError):
    """The server cannot listen where or how it was told to."""


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if not host:
        return False
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in found)


def check_bind(host: str, tls: bool, insecure: bool) -> None:
    """Refuse to speak plain HTTP beyond this machine unless the user said so: requests
    are signed, not encrypted, and they carry jobs' commands and environments."""
    if tls or insecure or is_loopback(host):
        return
    raise ServeError(
        f"refusing to listen on {host or 'every interface'} without TLS: "
        "it is not a loopback address",
        hint=(
            "give --tls-cert and --tls-key to serve HTTPS, or --insecure to serve plain "
            "HTTP to the network anyway (requests are signed, but not encrypted)"
        ),
    )


def url_of(host: str, port: int, tls: bool) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host` ("" for every interface) and `port` (0: any free)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError as error:
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock = socket.socket(family, kind, proto)
    try:
        if os.name == "posix":
            # A restart reuses its port while the last run's connections sit in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sock


# How long a connection may take to send a request's head (its request line and
# headers), from when it opens or its last answer was sent.
HEAD_TIMEOUT = 30.0


def _protocol(head_timeout: float) -> type[H11Protocol]:
    """Uvicorn's HTTP/1.1 with a deadline on a request's head. Uvicorn closes a
    connection that stays silent after an answer, but not one that opens and then
    sends a head byte by byte, or never: every caller, signed or not, could hold
    connections (file descriptors the jobs need) for as long as it liked."""

    class Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            # A new request's head, once whole, makes a new cycle: until then the
            # connection is waiting for it.
            waiting = self.cycle

            def expire() -> None:
                if self.cycle is waiting and not self.transport.is_closing():
                    self.transport.close()

            self._deadline = self.loop.call_later(head_timeout, expire)

    return Protocol


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, started: Callable[[], None]) -> None:
        super().__init__(config)
        self._started = started

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The command that runs the server owns SIGTERM and SIGINT; it cancels us.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._started()


async def serve(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    tls_cert: str | os.PathLike[str] | None,
    tls_key: str | os.PathLike[str] | None,
    ready: Callable[[str], None],
    grace: int = 5,
    head_timeout: float = HEAD_TIMEOUT,
) -> None:
    """Serve `app` on `host:port` until the calling scope is cancelled; `ready(url)` is
    called once the socket accepts requests. HTTPS with `tls_cert` and `tls_key` (PEM
    files), which go together. Requests still in flight at a stop get `grace` seconds.
    asyncio only (Uvicorn's loop). A connection that has not sent a request's whole head
    `head_timeout` seconds after it opened or was last answered is closed."""
    if (tls_cert is None) != (tls_key is None):
        raise ServeError("a TLS certificate and its key go together: give both or neither")
    tls = tls_cert is not None
    config = uvicorn.Config(
        app,
        http=_protocol(head_timeout),
        lifespan="off",
        access_log=False,
        log_config=None,
        ws="none",
        proxy_headers=False,
        server_header=False,
        ssl_certfile=None if tls_cert is None else os.fspath(tls_cert),
        ssl_keyfile=None if tls_key is None else os.fspath(tls_key),
        timeout_graceful_shutdown=grace,
    )
    try:
        config.load()
    except (OSError, ValueError) as error:
        # ssl.SSLError is an OSError: a missing, unreadable or mismatched cert or key.
        raise ServeError(f"cannot use the TLS certificate and key: {error}") from None
    sock = _bind(host, port)
    bound = sock.getsockname()
    url = url_of(host or bound[0], bound[1], tls)
    server = _Server(config, lambda: ready(url))
    finished = anyio.Event()
    failed: list[Exception] = []

    async def run() -> None:
        # Shielded: a cancelled caller stops the server by `should_exit`, so that its
        # shutdown runs to the end (sockets closed, in-flight requests answered).
        with anyio.CancelScope(shield=True):
            try:
                await server.serve(sockets=[sock])
            except Exception as error:
                failed.append(error)
            finally:
                sock.close()
                finished.set()

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        try:
            await finished.wait()
        finally:
            server.should_exit = True
    if failed:
        raise ServeError(f"the server stopped: {failed[0]}") from failed[0]


__all__ = ["HEAD_TIMEOUT", "ServeError", "check_bind", "is_loopback", "serve", "url_of"]
