"""Serving `flowbatch server`'s app: Uvicorn in the caller's loop on a real socket (port 0
gives the real port), a clean stop when the caller's scope is cancelled, HTTPS with a
certificate, and where it may listen without TLS."""

from __future__ import annotations

import datetime
import ipaddress
import signal
import socket
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import boto3
import pytest
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from server_helpers import served

from flowbatch.server.app import make_app
from flowbatch.server.requests import RequestParts
from flowbatch.server.serve import ServeError, check_bind, is_loopback, serve, url_of


class Backend:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(operation)
        return {"jobQueues": []}


def _accept_all(parts: RequestParts) -> str:
    return "AKID"


def _client(url: str, verify: str | bool | None = None) -> Any:
    return boto3.client(
        "batch",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKID",
        aws_secret_access_key="secret",
        verify=verify,
        config=Config(retries={"total_max_attempts": 1}),
    )


def _refused(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=5):
            return False
    except ConnectionRefusedError:
        return True


@pytest.mark.slow
def test_port_zero_serves_on_the_real_port_and_the_stop_closes_it() -> None:
    backend = Backend()
    with served(make_app(backend, _accept_all), port=0) as url:
        port = urlsplit(url).port
        assert url == f"http://127.0.0.1:{port}" and port not in (None, 0)
        assert _client(url).describe_job_queues()["jobQueues"] == []
        assert backend.calls == ["DescribeJobQueues"]
    assert _refused(url)


@pytest.mark.slow
def test_serving_leaves_the_signal_handlers_to_the_command() -> None:
    # Uvicorn installs its own SIGTERM/SIGINT handlers in the main thread; the server's
    # command owns them (it cancels the scope), so serve must leave them as they are.
    signals = (signal.SIGINT, signal.SIGTERM)
    before: dict[signal.Signals, Any] = {}  # in the loop (asyncio's runner has its own)
    during: dict[signal.Signals, Any] = {}
    urls: list[str] = []

    async def main() -> None:
        before.update({sig: signal.getsignal(sig) for sig in signals})
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:

                def ready(url: str) -> None:
                    urls.append(url)
                    during.update({sig: signal.getsignal(sig) for sig in before})
                    group.cancel_scope.cancel()

                group.start_soon(
                    lambda: serve(
                        make_app(Backend(), _accept_all),
                        host="127.0.0.1",
                        port=0,
                        tls_cert=None,
                        tls_key=None,
                        ready=ready,
                    )
                )

    anyio.run(main)
    assert during == before and len(before) == 2
    [url] = urls
    assert _refused(url)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flowbatch test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.mark.slow
def test_tls_serves_https_with_the_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    with served(make_app(Backend(), _accept_all), tls_cert=cert, tls_key=key) as url:
        assert url.startswith("https://127.0.0.1:")
        assert _client(url, verify=str(cert)).describe_job_queues()["jobQueues"] == []
        # The client checks the server: a client that does not trust the certificate
        # refuses it, as it would refuse an impostor.
        parts = urlsplit(url)
        context = ssl.create_default_context()
        with (
            pytest.raises(ssl.SSLCertVerificationError),
            socket.create_connection((parts.hostname or "", parts.port or 0), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1"),
        ):
            pass


def test_a_certificate_needs_its_key_and_both_must_be_usable(tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    app = make_app(Backend(), _accept_all)

    def ready(url: str) -> None:
        raise AssertionError("not to be ready")

    async def start(tls_cert: Path | None, tls_key: Path | None) -> None:
        await serve(app, host="127.0.0.1", port=0, tls_cert=tls_cert, tls_key=tls_key, ready=ready)

    with pytest.raises(ServeError, match="give both or neither"):
        anyio.run(start, cert, None)
    with pytest.raises(ServeError, match="cannot use the TLS certificate and key"):
        anyio.run(start, cert, tmp_path / "missing.pem")
    with pytest.raises(ServeError, match="cannot use the TLS certificate and key"):
        anyio.run(start, cert, cert)  # a certificate is not its key


def test_a_port_in_use_is_a_serve_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]

        async def start() -> None:
            await serve(
                make_app(Backend(), _accept_all),
                host="127.0.0.1",
                port=port,
                tls_cert=None,
                tls_key=None,
                ready=lambda url: None,
            )

        with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}: "):
            anyio.run(start)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost"])
def test_loopback_needs_neither_tls_nor_insecure(host: str) -> None:
    assert is_loopback(host)
    check_bind(host, tls=False, insecure=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.0.2.1"])
def test_any_other_address_needs_tls_or_insecure(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ServeError) as raised:
        check_bind(host, tls=False, insecure=False)
    assert raised.value.message == (
        f"refusing to listen on {host or 'every interface'} without TLS: "
        "it is not a loopback address"
    )
    assert "--tls-cert" in (raised.value.hint or "") and "--insecure" in (raised.value.hint or "")
    check_bind(host, tls=True, insecure=False)
    check_bind(host, tls=False, insecure=True)


def test_urls_name_ipv6_hosts_in_brackets() -> None:
    assert url_of("::1", 8910, tls=False) == "http://[::1]:8910"
    assert url_of("localhost", 443, tls=True) == "https://localhost:443"


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` within `seconds` (what it sent before is read)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    return True


@pytest.mark.slow
def test_a_connection_that_does_not_send_a_whole_request_head_is_closed() -> None:
    # Uvicorn alone kept each of these open for good: a caller, signed or not, could
    # hold as many connections (file descriptors) as it liked.
    app = make_app(Backend(), _accept_all)
    with served(app, head_timeout=0.5) as url:
        parts = urlsplit(url)
        address = (parts.hostname or "", parts.port or 0)
        with (
            socket.create_connection(address) as silent,
            socket.create_connection(address) as partial,
            socket.create_connection(address) as answered,
        ):
            partial.sendall(b"POST /v1/describejobqueues HTTP/1.1\r\nHost: x\r\n")
            answered.sendall(b"GET /v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answered.recv(12) == b"HTTP/1.1 404"
            answered.sendall(b"POST /v1/describejobqueues HTTP/1.1\r\n")  # a second head
            for sock in (silent, partial, answered):
                assert _closed_within(sock, 10)
        # A caller that sends its requests in time is served as before.
        assert _client(url).describe_job_queues()["jobQueues"] == []
