"""SigV4 verification (server/auth.py): requests signed by botocore itself, built by hand
with `SigV4Auth` or made by a real boto3 client, are accepted exactly when AWS would
accept them; every refusal carries AWS's code and wording and never the secret."""

from __future__ import annotations

import calendar
import contextlib
import json
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from flowbatch.server import credentials
from flowbatch.server.auth import (
    INCOMPLETE,
    INVALID,
    MISMATCH_MESSAGE,
    MISSING,
    UNRECOGNIZED,
    UNRECOGNIZED_MESSAGE,
    Verifier,
)
from flowbatch.server.errors import AuthError
from flowbatch.server.requests import RequestParts

REGION = "us-east-1"
KEY_ID = "AKIAFLOWBATCHTEST234"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzEXAMPLE9Z"
ENDPOINT = "http://127.0.0.1:8910"
JOB_ARN = "arn:aws:batch:us-east-1:000000000000:job/5f0c4e1a-3b9e-4a7e-9a55-0d1e2f3a4b5c"
BODY = b'{"jobName": "a", "jobQueue": "q", "jobDefinition": "d"}'


def verifier(*, offset: float = 0.0, keys: dict[str, str] | None = None) -> Verifier:
    """A verifier whose clock is the real one moved by `offset` seconds."""
    return Verifier(
        {KEY_ID: SECRET} if keys is None else keys,
        region=REGION,
        clock=lambda: time.time() + offset,
    )


def parts_of(prepared: Any) -> RequestParts:
    """What a server receives for a request botocore prepared: the request target split
    at '?', the headers plus the Host header the HTTP client adds."""
    url = urlsplit(prepared.url)
    headers = [
        (str(k), v.decode() if isinstance(v, bytes) else str(v))
        for k, v in prepared.headers.items()
    ]
    if not any(k.lower() == "host" for k, _ in headers):
        headers.insert(0, ("Host", url.netloc))
    body = prepared.body or b""
    return RequestParts(
        prepared.method,
        url.path,
        url.query,
        tuple(headers),
        body.encode() if isinstance(body, str) else body,
    )


def sign(
    method: str = "POST",
    target: str = "/v1/submitjob",
    body: bytes = BODY,
    headers: dict[str, str] | None = None,
    *,
    key_id: str = KEY_ID,
    secret: str = SECRET,
    region: str = REGION,
    service: str = "batch",
    token: str | None = None,
) -> RequestParts:
    request = AWSRequest(method=method, url=ENDPOINT + target, data=body, headers=headers)
    SigV4Auth(Credentials(key_id, secret, token), service, region).add_auth(request)
    return parts_of(request.prepare())


def replace_header(parts: RequestParts, name: str, value: str | None) -> RequestParts:
    kept = tuple((k, v) for k, v in parts.headers if k.lower() != name.lower())
    headers = kept if value is None else (*kept, (name, value))
    return RequestParts(parts.method, parts.path, parts.query, headers, parts.body)


def header(parts: RequestParts, name: str) -> str:
    return next(v for k, v in parts.headers if k.lower() == name.lower())


def refused(parts: RequestParts, check: Verifier | None = None) -> AuthError:
    with pytest.raises(AuthError) as caught:
        (check or verifier()).verify(parts)
    error = caught.value
    assert error.status == 403
    assert SECRET not in str(error) and SECRET not in error.message
    return error


# -- accepted ------------------------------------------------------------------------------


def test_a_request_signed_by_botocore_is_accepted_as_its_key() -> None:
    assert verifier().verify(sign()) == KEY_ID


def test_each_of_several_keys_is_accepted_as_itself() -> None:
    keys = {KEY_ID: SECRET, "AKIAOTHERKEY23456789": "another-secret-of-forty-characters-xxxxx"}
    check = verifier(keys=keys)
    for key_id, secret in keys.items():
        assert check.verify(sign(key_id=key_id, secret=secret)) == key_id


def test_headers_added_after_signing_do_not_matter() -> None:
    # Proxies and HTTP clients add headers; only the ones the client signed count.
    parts = replace_header(sign(), "X-Forwarded-For", "10.0.0.1")
    assert verifier().verify(parts) == KEY_ID


def test_a_query_string_in_any_order_and_encoding_is_canonicalized_as_signed() -> None:
    parts = sign("DELETE", "/v1/tags/x?tagKeys=b%20c&tagKeys=a~z&tagKeys=%C3%BC", b"")
    assert verifier().verify(parts) == KEY_ID
    # `~` and %7E are the same character, and SigV4 sorts the pairs: the same signature.
    reordered = RequestParts(
        parts.method, parts.path, "tagKeys=%C3%BC&tagKeys=a%7Ez&tagKeys=b%20c", parts.headers, b""
    )
    assert verifier().verify(reordered) == KEY_ID


def test_a_plus_in_a_query_is_a_space_to_the_signature_as_to_the_app() -> None:
    # The app reads `tagKeys=a+b` as the key "a b" (AWS's reading): the signature check
    # must read it so too, or a signature over the key "a+b" would stand for "a b".
    for_space = sign("DELETE", "/v1/tags/x?tagKeys=a%20b", b"")
    assert verifier().verify(with_query(for_space, "tagKeys=a+b")) == KEY_ID
    for_plus = sign("DELETE", "/v1/tags/x?tagKeys=a%2Bb", b"")
    assert verifier().verify(for_plus) == KEY_ID
    assert refused(with_query(for_plus, "tagKeys=a+b")).code == INVALID


def with_query(parts: RequestParts, query: str) -> RequestParts:
    return RequestParts(parts.method, parts.path, query, parts.headers, parts.body)


def test_a_header_the_client_chose_to_sign_that_botocore_never_signs_is_checked() -> None:
    # Other SDKs sign user-agent; botocore's own choice of headers would leave it out.
    request = AWSRequest(method="POST", url=ENDPOINT + "/v1/submitjob", data=BODY)
    request.headers["User-Agent"] = "other-sdk/1.0"
    signer = SigV4Auth(Credentials(KEY_ID, SECRET), "batch", REGION)
    signer.headers_to_sign = lambda r: _with_user_agent(SigV4Auth.headers_to_sign(signer, r), r)
    signer.add_auth(request)
    parts = parts_of(request.prepare())
    assert "user-agent" in header(parts, "Authorization")
    assert verifier().verify(parts) == KEY_ID
    assert refused(replace_header(parts, "User-Agent", "tampered/2.0")).code == INVALID


def _with_user_agent(headers: Any, request: AWSRequest) -> Any:
    headers["user-agent"] = request.headers["User-Agent"]
    return headers


# -- boto3's own requests, with ARNs in the path ---------------------------------------------


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # Nothing from the machine's own AWS configuration may take part.
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def boto3_request(operation: str, params: dict[str, Any]) -> RequestParts:
    """The request a real boto3 client sends for `operation`, captured before it leaves."""
    client = boto3.client(
        "batch",
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    sent: list[Any] = []

    def capture(request: Any, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, {}, _Body(b"{}"))

    try:
        client.meta.events.register("before-send.batch.*", capture)
        getattr(client, operation)(**params)
    finally:
        client.close()
    (request,) = sent
    return parts_of(request)


@pytest.mark.usefixtures("aws_env")
@pytest.mark.parametrize(
    ("operation", "params", "method"),
    [
        ("tag_resource", {"resourceArn": JOB_ARN, "tags": {"team": "a b/c"}}, "POST"),
        ("list_tags_for_resource", {"resourceArn": JOB_ARN}, "GET"),
        ("untag_resource", {"resourceArn": JOB_ARN, "tagKeys": ["team", "a b/c~ü"]}, "DELETE"),
    ],
)
def test_boto3_requests_with_an_arn_in_the_path_are_accepted_from_the_raw_path(
    operation: str, params: dict[str, Any], method: str
) -> None:
    parts = boto3_request(operation, params)
    assert parts.method == method
    # The ARN's ':' and '/' arrive percent-encoded; SigV4 encodes that path once more.
    assert (
        parts.path
        == "/v1/tags/arn%3Aaws%3Abatch%3Aus-east-1%3A000000000000%3Ajob%2F"
        + (JOB_ARN.rpartition("/")[2])
    )
    assert verifier().verify(parts) == KEY_ID
    # A server that handed over the decoded path would refuse every one of them.
    decoded = RequestParts(
        parts.method, unquote(parts.path), parts.query, parts.headers, parts.body
    )
    assert refused(decoded).code == INVALID


@pytest.mark.usefixtures("aws_env")
def test_boto3_submit_job_is_accepted_and_another_body_under_its_signature_is_not() -> None:
    parts = boto3_request("submit_job", {"jobName": "a", "jobQueue": "q", "jobDefinition": "d:1"})
    assert verifier().verify(parts) == KEY_ID
    other = parts.body.replace(b'"d:1"', b'"d:2"')
    assert other != parts.body
    replayed = RequestParts(parts.method, parts.path, parts.query, parts.headers, other)
    error = refused(replayed)
    assert (error.code, error.message) == (INVALID, MISMATCH_MESSAGE)


# -- refused -------------------------------------------------------------------------------


def test_an_unsigned_request_is_missing_its_token() -> None:
    parts = replace_header(sign(), "Authorization", None)
    error = refused(parts)
    assert (error.code, error.message) == (MISSING, "Missing Authentication Token")


def test_a_presigned_url_is_not_accepted_in_place_of_the_header() -> None:
    parts = replace_header(sign(), "Authorization", None)
    query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=" + "0" * 64
    presigned = RequestParts(parts.method, parts.path, query, parts.headers, parts.body)
    assert refused(presigned).code == MISSING


def test_an_unknown_key_is_unrecognized() -> None:
    error = refused(sign(key_id="AKIANOBODYKNOWSTHIS2"))
    assert (error.code, error.message) == (UNRECOGNIZED, UNRECOGNIZED_MESSAGE)


def test_a_session_token_is_unrecognized_since_none_was_issued() -> None:
    error = refused(sign(token="FwoGZXIvYXdzEXAMPLETOKEN"))
    assert (error.code, error.message) == (UNRECOGNIZED, UNRECOGNIZED_MESSAGE)


def test_the_wrong_secret_is_an_invalid_signature_in_aws_words() -> None:
    error = refused(sign(secret=SECRET[:-1] + "X"))
    assert error.code == "InvalidSignatureException"
    assert error.message == (
        "The request signature we calculated does not match the signature you provided. "
        "Check your AWS Secret Access Key and signing method. "
        "Consult the service documentation for details."
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [("Host", "127.0.0.1:9999"), ("X-Amz-Date", None), ("Content-Type", "text/plain")],
)
def test_a_signed_header_changed_or_dropped_is_refused(name: str, value: str | None) -> None:
    parts = sign(headers={"Content-Type": "application/json"})
    assert verifier().verify(parts) == KEY_ID
    assert refused(replace_header(parts, name, value)).code in (INVALID, INCOMPLETE)


def test_a_changed_method_path_or_query_is_refused() -> None:
    parts = sign("POST", "/v1/tags/x?tagKeys=a", b"")
    for changed in (
        RequestParts("DELETE", parts.path, parts.query, parts.headers, b""),
        RequestParts("POST", "/v1/tags/y", parts.query, parts.headers, b""),
        RequestParts("POST", parts.path, "tagKeys=b", parts.headers, b""),
    ):
        assert refused(changed).code == INVALID


def test_a_fragment_cannot_hide_the_rest_of_a_path() -> None:
    parts = sign("POST", "/v1/tags/x", b"")
    assert verifier().verify(parts) == KEY_ID
    longer = RequestParts("POST", "/v1/tags/x#/../../submitjob", "", parts.headers, b"")
    assert refused(longer).code == INVALID


def test_a_declared_body_hash_must_be_the_hash_of_the_body_received() -> None:
    import hashlib

    original = hashlib.sha256(BODY).hexdigest()
    parts = sign(headers={"X-Amz-Content-SHA256": original})
    assert "x-amz-content-sha256" in header(parts, "Authorization")
    assert verifier().verify(parts) == KEY_ID
    # The signature covers the declared hash, not the body: the hash is what must be checked.
    swapped = RequestParts(parts.method, parts.path, parts.query, parts.headers, b'{"x": 1}')
    assert refused(swapped).message == MISMATCH_MESSAGE
    unsigned = sign(headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    assert refused(unsigned).code == INVALID


def test_host_must_be_signed() -> None:
    parts = sign()
    auth = header(parts, "Authorization")
    without_host = auth.replace("SignedHeaders=host;", "SignedHeaders=")
    assert without_host != auth
    error = refused(replace_header(parts, "Authorization", without_host))
    assert error.code == INVALID and "'Host' must be a 'SignedHeader'" in error.message


@pytest.mark.parametrize(
    ("region", "service", "message"),
    [
        ("eu-west-1", "batch", "Credential should be scoped to a valid region, not 'eu-west-1'."),
        ("us-east-1", "ecs", "Credential should be scoped to correct service: 'batch'."),
    ],
)
def test_a_scope_for_another_region_or_service_is_refused(
    region: str, service: str, message: str
) -> None:
    error = refused(sign(region=region, service=service))
    assert (error.code, error.message) == (INVALID, message)


def test_the_scope_date_must_be_the_day_of_x_amz_date() -> None:
    parts = sign()
    day = header(parts, "X-Amz-Date")[:8]
    other = "19991231"
    auth = header(parts, "Authorization").replace(f"/{day}/", f"/{other}/")
    error = refused(replace_header(parts, "Authorization", auth))
    assert error.code == INVALID
    assert error.message == (
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
        f"from HTTP: '{other}' != '{day}', from 'X-Amz-Date'."
    )


def _at(text: str) -> float:
    return calendar.timegm(datetime.strptime(text, "%Y%m%dT%H%M%SZ").timetuple())


def _handmade(amz_date: str) -> RequestParts:
    # The time is checked before the signature, so a dummy signature shows the wording.
    auth = (
        f"AWS4-HMAC-SHA256 Credential={KEY_ID}/{amz_date[:8]}/{REGION}/batch/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={'0' * 64}"
    )
    headers = (("Host", "127.0.0.1"), ("X-Amz-Date", amz_date), ("Authorization", auth))
    return RequestParts("POST", "/v1/submitjob", "", headers, b"")


@pytest.mark.parametrize(
    ("now", "message"),
    [
        (
            "20261201T121501Z",
            "Signature expired: 20261201T120000Z is now earlier than 20261201T120001Z "
            "(20261201T121501Z - 15 min.)",
        ),
        (
            "20261201T114459Z",
            "Signature not yet current: 20261201T120000Z is still later than 20261201T115959Z "
            "(20261201T114459Z + 15 min.)",
        ),
    ],
)
def test_a_signature_more_than_15_minutes_off_is_refused_in_aws_words(
    now: str, message: str
) -> None:
    check = Verifier({KEY_ID: SECRET}, region=REGION, clock=lambda: _at(now))
    error = refused(_handmade("20261201T120000Z"), check)
    assert (error.code, error.message) == (INVALID, message)


@pytest.mark.parametrize(("offset", "accepted"), [(899, True), (901, False)])
@pytest.mark.parametrize("direction", [1, -1])
def test_the_skew_limit_is_15_minutes_either_way(
    offset: int, accepted: bool, direction: int
) -> None:
    parts = sign()
    now = _at(header(parts, "X-Amz-Date")) + direction * offset
    check = Verifier({KEY_ID: SECRET}, region=REGION, clock=lambda: now)
    if accepted:
        assert check.verify(parts) == KEY_ID
    else:
        assert refused(parts, check).message.startswith(
            "Signature expired:" if direction == 1 else "Signature not yet current:"
        )


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic Zm9vOmJhcg==",
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 Credential=AKIAX/20261201/us-east-1/batch/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AKIAX/20261201/us-east-1/batch/aws4_request, "
        "SignedHeaders=host;x-amz-date",
        "AWS4-HMAC-SHA256 Credential=AKIAX/20261201/us-east-1/aws4_request, "
        "SignedHeaders=host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=AKIAX/20261201/us-east-1/batch/aws4_request, "
        "SignedHeaders=Host;X-Amz-Date, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=AKIAX/20261201/us-east-1/batch/aws4_request, "
        "SignedHeaders=host, SignedHeaders=host, Signature=" + "0" * 64,
    ],
)
def test_a_malformed_authorization_header_is_an_incomplete_signature(authorization: str) -> None:
    parts = replace_header(sign(), "Authorization", authorization)
    assert refused(parts).code == INCOMPLETE


def test_a_request_without_x_amz_date_is_an_incomplete_signature() -> None:
    parts = replace_header(sign(), "X-Amz-Date", None)
    assert refused(parts).code == INCOMPLETE


def test_a_signature_that_is_not_hex_is_a_mismatch_not_a_crash() -> None:
    parts = sign()
    auth = header(parts, "Authorization")
    bad = auth[: auth.index("Signature=")] + "Signature=" + "é" * 64
    assert refused(replace_header(parts, "Authorization", bad)).code == INVALID


def test_no_secret_or_signature_reaches_a_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    good = sign()
    signature = header(good, "Authorization").rpartition("Signature=")[2]
    caplog.clear()  # the client side (botocore's add_auth) logs what it signs at DEBUG
    check = verifier()
    check.verify(good)
    for bad in (sign(secret="x" * 40), replace_header(good, "Host", "elsewhere")):
        with pytest.raises(AuthError):
            check.verify(bad)
    assert SECRET not in caplog.text and signature not in caplog.text


# -- end to end: boto3 against a server that calls the Verifier ------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Answers every request with the caller's key id as a tag, or the AuthError as AWS's
    REST-JSON error (status, x-amzn-ErrorType, {"message"})."""

    server: _Server

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path, _, query = self.path.partition("?")
        parts = RequestParts(self.command, path, query, tuple(self.headers.items()), body)
        extra = {}
        try:
            status, reply = 200, {"tags": {"caller": self.server.verifier.verify(parts)}}
        except AuthError as error:
            status, reply = error.status, {"__type": error.code, "message": error.message}
            extra["x-amzn-ErrorType"] = error.code
        data = json.dumps(reply).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **extra}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    verifier: Verifier


@contextlib.contextmanager
def serving(check: Verifier) -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.verifier = check
    # A short poll interval: shutdown() waits for the loop to look.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        # The socket listens from the constructor on: a client can connect at once.
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def endpoint(aws_env: None) -> Iterator[str]:
    with serving(verifier()) as url:
        yield url


def _client(endpoint: str, key_id: str, secret: str) -> Any:
    return boto3.client(
        "batch",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


def test_boto3_end_to_end_over_http(endpoint: str) -> None:
    client = _client(endpoint, KEY_ID, SECRET)
    try:
        assert client.list_tags_for_resource(resourceArn=JOB_ARN)["tags"] == {"caller": KEY_ID}
        client.untag_resource(resourceArn=JOB_ARN, tagKeys=["a b", "c/d"])
        client.tag_resource(resourceArn=JOB_ARN, tags={"k": "v"})
    finally:
        client.close()
    for key_id, secret, code in [
        (KEY_ID, "wrong" * 8, INVALID),
        ("AKIANOBODYKNOWSTHIS2", SECRET, UNRECOGNIZED),
    ]:
        client = _client(endpoint, key_id, secret)
        try:
            with pytest.raises(ClientError) as caught:
                client.list_tags_for_resource(resourceArn=JOB_ARN)
        finally:
            client.close()
        error = caught.value.response
        assert error["Error"]["Code"] == code
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.mark.slow
def test_the_aws_cli_works_as_the_created_credentials_file_says(tmp_path: Path) -> None:
    aws = Path(sys.executable).with_name("aws")
    assert aws.is_file(), "the AWS CLI (awscli, a test dependency) is not installed"
    path, created = credentials.ensure(tmp_path / "state")
    assert created
    check = Verifier(credentials.load(path), region=REGION)
    with serving(check) as url:
        told = credentials.usage(path, region=REGION, endpoint=url).rpartition("export ")[2]
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
            "AWS_EC2_METADATA_DISABLED": "true",
            **dict(item.split("=", 1) for item in shlex.split(told)),
        }
        args = ["batch", "list-tags-for-resource", "--resource-arn", JOB_ARN]
        done = subprocess.run(
            [str(aws), *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["tags"] == {"caller": next(iter(credentials.load(path)))}
        # The same with another secret: AWS's refusal, as the CLI shows it.
        lines = path.read_text().splitlines()
        lines[2] = "aws_secret_access_key = " + "x" * 40
        path.write_text("\n".join(lines) + "\n")
        refused_run = subprocess.run(
            [str(aws), *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert refused_run.returncode != 0
        assert "InvalidSignatureException" in refused_run.stderr
