"""The HTTP layer of `flowbatch server` driven over real HTTP by unmodified boto3: every
operation of botocore's Batch model routed, input checked, errors in the shapes botocore
reads, the signature check first. The backend is a fake that records its calls."""

from __future__ import annotations

import http.client
import json
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.loaders import Loader
from server_helpers import minimal, served

from flowbatch.server.app import MAX_BODY, PAYLOAD_LIMITS, make_app
from flowbatch.server.errors import AuthError, Unsupported
from flowbatch.server.model import load, query_pairs
from flowbatch.server.requests import RequestParts

RAW = Loader().load_service_model("batch", "service-2")
SHAPES = RAW["shapes"]
MODEL = load()

KEY, SECRET = "AKIDTESTKEY000000000", "test-secret-0123456789"
# verify refuses this one key, as the real check refuses an unknown one.
REFUSED = "AKIDREFUSED000000000"

QUEUE_ARN = "arn:aws:batch:us-east-1:000000000000:job-queue/my queue:v/1"


class FakeBackend:
    """Records (operation, params); answers with `answers[operation]`, or calls `act`
    when a test sets it (to raise, say)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, dict[str, Any]] = {}
        self.act: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((operation, params))
        if self.act is not None:
            return self.act(operation, params)
        return self.answers.get(operation, {})


class FakeVerify:
    def __init__(self) -> None:
        self.seen: list[RequestParts] = []

    def __call__(self, parts: RequestParts) -> str:
        self.seen.append(parts)
        if REFUSED in (parts.header("authorization") or ""):
            raise AuthError(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        return KEY


class Api:
    def __init__(self, url: str, backend: FakeBackend, verify: FakeVerify) -> None:
        self.url = url
        self.backend = backend
        self.verify = verify
        self._clients: dict[tuple[str, bool], Any] = {}

    def client(self, key: str = KEY, *, validate: bool = True) -> Any:
        """A boto3 client of the server (made once: making one takes a tenth of a second)."""
        made = self._clients.get((key, validate))
        if made is None:
            made = self._clients[key, validate] = self._new_client(key, validate)
        return made

    def _new_client(self, key: str, validate: bool) -> Any:
        config = Config(retries={"total_max_attempts": 1}, parameter_validation=validate)
        return boto3.client(
            "batch",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key=SECRET,
            config=config,
        )

    def raw(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """A request without botocore (the fake verify accepts it: it is unsigned)."""
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            connection.close()


@pytest.fixture(scope="module")
def served_api() -> Iterator[Api]:
    backend, verify = FakeBackend(), FakeVerify()
    with served(make_app(backend, verify)) as url:
        yield Api(url, backend, verify)


@pytest.fixture
def api(served_api: Api) -> Api:
    served_api.backend.calls.clear()
    served_api.backend.answers.clear()
    served_api.backend.act = None
    served_api.verify.seen.clear()
    return served_api


@pytest.fixture(scope="module")
def client(served_api: Api) -> Any:
    return served_api.client()


def _error(raised: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    response = raised.value.response
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"]["Message"],
    )


def _answer(response: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def _idempotency_tokens(shape: str | None) -> list[str]:
    members = SHAPES[shape]["members"] if shape else {}
    return [name for name, member in members.items() if member.get("idempotencyToken")]


@pytest.mark.slow
def test_every_operation_of_the_model_is_routed_and_answered(api: Api, client: Any) -> None:
    assert len(MODEL.operations) >= 40  # the model, not an empty table
    for name, operation in MODEL.operations.items():
        sent = minimal(SHAPES, operation.input_shape) if operation.input_shape else {}
        answer = minimal(SHAPES, operation.output_shape) if operation.output_shape else {}
        if operation.output_shape:
            assert MODEL.check(operation.output_shape, answer) == [], name
        api.backend.answers[name] = answer
        got = getattr(client, botocore.xform_name(name))(**sent)
        operation_called, params = api.backend.calls[-1]
        for member in _idempotency_tokens(operation.input_shape):
            # botocore fills a token in when the caller gives none
            assert isinstance(params.pop(member), str)
        assert (operation_called, params) == (name, sent)
        assert _answer(got) == answer, name


def test_answers_arrive_as_the_backend_gave_them(api: Api, client: Any) -> None:
    detail = {
        "jobName": "j",
        "jobId": "1f0e",
        "jobQueue": QUEUE_ARN,
        "status": "RUNNING",
        "startedAt": 1_700_000_000_123,
        "jobDefinition": "arn:aws:batch:us-east-1:000000000000:job-definition/d:3",
        "dependsOn": [{"jobId": "0a", "type": "N_TO_N"}],
        "arrayProperties": {"statusSummary": {"RUNNING": 2, "SUCCEEDED": 1}, "size": 3},
        "tags": {"team": "ünïcode"},
    }
    answer = {"jobs": [detail]}
    assert MODEL.check("DescribeJobsResponse", answer) == []
    api.backend.answers["DescribeJobs"] = answer
    got = client.describe_jobs(jobs=["1f0e"])
    assert _answer(got) == answer
    assert api.backend.calls == [("DescribeJobs", {"jobs": ["1f0e"]})]


def test_tag_operations_get_their_path_and_query_members(api: Api, client: Any) -> None:
    client.tag_resource(resourceArn=QUEUE_ARN, tags={"a b": "c&d", "e": ""})
    client.untag_resource(resourceArn=QUEUE_ARN, tagKeys=["a b", "x=y&z", "e"])
    api.backend.answers["ListTagsForResource"] = {"tags": {"e": "f"}}
    listed = client.list_tags_for_resource(resourceArn=QUEUE_ARN)
    assert api.backend.calls == [
        ("TagResource", {"resourceArn": QUEUE_ARN, "tags": {"a b": "c&d", "e": ""}}),
        ("UntagResource", {"resourceArn": QUEUE_ARN, "tagKeys": ["a b", "x=y&z", "e"]}),
        ("ListTagsForResource", {"resourceArn": QUEUE_ARN}),
    ]
    assert listed["tags"] == {"e": "f"}


def test_bad_input_is_a_client_exception_naming_the_members(api: Api) -> None:
    # botocore checks some of this on the client; a client that does not is refused
    # by the server with a message that names each member.
    client = api.client(validate=False)
    with pytest.raises(ClientError) as raised:
        client.submit_job(
            jobName="j",
            jobDefinition="d",
            containerOverrides={"resourceRequirements": [{"value": "1"}, {"type": "CPU"}]},
        )
    status, code, message = _error(raised)
    assert (status, code) == (400, "ClientException")
    assert message.split("; ") == [
        "containerOverrides.resourceRequirements[0].type: required",
        "containerOverrides.resourceRequirements[1].type: must be one of GPU, VCPU, MEMORY "
        "(got 'CPU')",
        "containerOverrides.resourceRequirements[1].value: required",
        "jobQueue: required",
    ]
    assert api.backend.calls == []


def test_limits_botocore_does_not_check_are_checked_here(api: Api, client: Any) -> None:
    with pytest.raises(ClientError) as raised:
        client.tag_resource(resourceArn=QUEUE_ARN, tags={"k" * 129: "v"})
    assert _error(raised) == (
        400,
        "ClientException",
        f"tags: key '{'k' * 40}...' must have at most 128 characters (got 129)",
    )
    with pytest.raises(ClientError) as raised:
        client.untag_resource(resourceArn=QUEUE_ARN, tagKeys=[f"k{i}" for i in range(51)])
    assert _error(raised) == (
        400,
        "ClientException",
        "tagKeys: must have at most 50 items (got 51)",
    )
    assert api.backend.calls == []


def test_an_unsupported_operation_says_so_by_name(api: Api, client: Any) -> None:
    def refuse(operation: str, params: dict[str, Any]) -> dict[str, Any]:
        raise Unsupported(operation)

    api.backend.act = refuse
    with pytest.raises(ClientError) as raised:
        client.create_scheduling_policy(name="p")
    assert _error(raised) == (
        400,
        "ClientException",
        "flowbatch server does not support operation CreateSchedulingPolicy",
    )


def test_a_bug_is_a_500_that_tells_the_client_nothing_more(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    def crash(operation: str, params: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("internal detail 7c1d")

    api.backend.act = crash
    client = api.client(key="AKIDLOGGEDNOT0000000")
    with (
        caplog.at_level(logging.ERROR, logger="flowbatch.server"),
        pytest.raises(ClientError) as raised,
    ):
        client.submit_job(jobName="body-value-5e2a", jobQueue="q", jobDefinition="d")
    status, code, message = _error(raised)
    request_id = raised.value.response["ResponseMetadata"]["RequestId"]
    assert (status, code) == (500, "ServerException")
    assert message == f"An internal error occurred in the server (request id {request_id})."
    assert "7c1d" not in json.dumps(raised.value.response)
    # The server's log has the traceback, the request id and the operation; never the
    # request's headers (the caller's key, its signature) or body.
    [record] = [r for r in caplog.records if r.name == "flowbatch.server"]
    logged = caplog.text
    assert record.exc_info is not None and "internal detail 7c1d" in logged
    assert request_id in logged and "SubmitJob" in logged
    assert "AKIDLOGGEDNOT" not in logged and "body-value-5e2a" not in logged


def test_a_caller_verify_refuses_gets_its_403(api: Api) -> None:
    with pytest.raises(ClientError) as raised:
        api.client(key=REFUSED).describe_job_queues()
    assert _error(raised) == (
        403,
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )
    assert api.backend.calls == []


def test_verify_comes_before_the_body_is_parsed_or_routed(api: Api) -> None:
    refused = {"Authorization": f"AWS4-HMAC-SHA256 Credential={REFUSED}/x"}
    for method, path, body in [
        ("POST", "/v1/submitjob", b"{not json"),
        ("POST", "/v1/nothing-here", b"{}"),
    ]:
        status, headers, _ = api.raw(method, path, body, refused)
        assert (status, headers["x-amzn-errortype"]) == (403, "UnrecognizedClientException")


def test_verify_gets_what_sigv4_needs_exactly_as_sent(api: Api, client: Any) -> None:
    client.untag_resource(resourceArn=QUEUE_ARN, tagKeys=["a b", "c/d"])
    [parts] = api.verify.seen
    assert parts.method == "DELETE"
    assert parts.path == "/v1/tags/" + QUEUE_ARN.replace(":", "%3A").replace("/", "%2F").replace(
        " ", "%20"
    )
    assert parts.query == "tagKeys=a%20b&tagKeys=c%2Fd"
    # botocore's own signer, over a request rebuilt from the parts alone, gives the
    # signature the client sent: nothing the check needs was lost or decoded on the way.
    authorization = parts.header("authorization") or ""
    fields = dict(item.strip().split("=", 1) for item in authorization.split(" ", 1)[1].split(","))
    signed = fields["SignedHeaders"].split(";")
    request = AWSRequest(
        method=parts.method,
        url=f"http://{parts.header('host')}{parts.path}?{parts.query}",
        headers={name: value for name, value in parts.headers if name in signed},
        data=parts.body,
    )
    request.context["timestamp"] = parts.header("x-amz-date")
    signer = SigV4Auth(Credentials(KEY, SECRET), "batch", "us-east-1")
    canonical = signer.canonical_request(request)
    assert (
        signer.signature(signer.string_to_sign(request, canonical), request)
        == (fields["Signature"])
    )


def test_an_unknown_path_or_method_is_unknown_operation(api: Api) -> None:
    for method, path in [("POST", "/v1/nothing"), ("GET", "/v1/submitjob"), ("GET", "/")]:
        status, headers, body = api.raw(method, path)
        assert status == 404
        assert headers["x-amzn-errortype"] == "UnknownOperationException"
        assert json.loads(body)["__type"] == "UnknownOperationException"
    assert api.backend.calls == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "request body is not valid JSON: Expecting property name"),
        (b'{"jobName": NaN}', "request body is not valid JSON: NaN is not a JSON value"),
        (b"[" * 100_000 + b"]" * 100_000, "request body is not valid JSON: nested too deeply"),
        (b"[1]", "request body: expected a JSON object, got a list"),
        (b"\xff", "request body is not valid JSON: 'utf-8' codec can't decode"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_client_exception(
    api: Api, body: bytes, message: str
) -> None:
    # (DescribeJobs: a SubmitJob this large is refused by its size before it is parsed.)
    status, headers, answer = api.raw("POST", "/v1/describejobs", body)
    assert (status, headers["x-amzn-errortype"]) == (400, "ClientException")
    assert json.loads(answer)["message"].startswith(message)
    assert api.backend.calls == []


def _exchange(url: str, head: bytes, chunks: list[bytes]) -> bytes:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=10) as sock:
        sock.sendall(head + b"".join(chunks))
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    return answer


def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(api: Api) -> None:
    # Declared too long: refused before a byte of it is sent.
    declared = _exchange(
        api.url,
        b"POST /v1/submitjob HTTP/1.1\r\nHost: x\r\n"
        + f"Content-Length: {MAX_BODY + 1}\r\n\r\n".encode(),
        [],
    )
    # Chunked, so its length is known only as it arrives: refused past the limit. (Just
    # one byte past: the server then has read all that was sent, and its close of the
    # connection does not reset it under the answer.)
    chunk = b"x" * 65536
    chunks = [chunk] * (MAX_BODY // len(chunk)) + [b"x" * (MAX_BODY % len(chunk) + 1)]
    streamed = _exchange(
        api.url,
        b"POST /v1/submitjob HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        [b"%x\r\n%s\r\n" % (len(part), part) for part in chunks],
    )
    for answer in (declared, streamed):
        head, _, body = answer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode().split("\r\n")
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
        assert status_line.startswith("HTTP/1.1 413"), answer[:200]
        assert headers["x-amzn-errortype"] == "ClientException"
        assert json.loads(body) == {
            "__type": "ClientException",
            "message": f"request body is larger than the limit of {MAX_BODY} bytes",
        }
    assert api.verify.seen == [] and api.backend.calls == []


def test_a_lone_surrogate_is_refused_and_no_answer_can_fail_to_be_written(api: Api) -> None:
    # JSON can spell a string that has no UTF-8: kept, it failed every later answer that
    # showed it (DescribeJobDefinitions, for everyone, for good), and the 500 about it too.
    body = b'{"jobName": "j", "jobQueue": "q", "jobDefinition": "d", "tags": {"k": "\\ud800"}}'
    status, headers, answer = api.raw("POST", "/v1/submitjob", body)
    assert (status, headers["x-amzn-errortype"]) == (400, "ClientException")
    assert "lone surrogate" in json.loads(answer)["message"]
    assert api.backend.calls == []
    # A pair is a character (an emoji), and comes through as one.
    pair = b'{"jobName": "j", "jobQueue": "q", "jobDefinition":"d", "tags":{"k":"\\ud83d\\ude00"}}'
    assert api.raw("POST", "/v1/submitjob", pair)[0] == 200
    assert api.backend.calls[-1][1]["tags"] == {"k": "\U0001f600"}
    # Whatever a backend answers with (a row stored before this check), the answer and
    # the error are JSON that botocore reads.
    api.backend.answers["DescribeJobQueues"] = {"jobQueues": [], "nextToken": "a\udc80é"}
    status, _, answer = api.raw("POST", "/v1/describejobqueues", b"{}")
    assert status == 200 and json.loads(answer) == {"jobQueues": [], "nextToken": "a\udc80é"}

    def refuse(operation: str, params: dict[str, Any]) -> dict[str, Any]:
        raise Unsupported("x\ud800")

    api.backend.act = refuse
    status, headers, answer = api.raw("POST", "/v1/describejobqueues", b"{}")
    assert (status, headers["x-amzn-errortype"]) == (400, "ClientException")
    assert "x\ud800" in json.loads(answer)["message"]


def test_a_query_is_decoded_as_the_signature_check_decodes_it(api: Api) -> None:
    # One reading for both (`+` a space, `%2B` a plus): the check had `+` a plus and the
    # app a space, a member's value other than the one its signature covered.
    status, _, _ = api.raw("DELETE", "/v1/tags/arn?tagKeys=a+b&tagKeys=c%2Bd%20e")
    assert status == 200
    assert api.backend.calls == [
        ("UntagResource", {"resourceArn": "arn", "tagKeys": ["a b", "c+d e"]})
    ]
    [parts] = api.verify.seen
    assert query_pairs(parts.query) == [("tagKeys", "a b"), ("tagKeys", "c+d e")]


def test_get_log_events_input_is_checked_by_logs_own_model(api: Api) -> None:
    logs = boto3.client(
        "logs",
        endpoint_url=api.url,
        region_name="us-east-1",
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        config=Config(retries={"total_max_attempts": 1}, parameter_validation=False),
    )
    api.backend.answers["GetLogEvents"] = {"events": [], "nextForwardToken": "f/0"}
    got = logs.get_log_events(logGroupName="/aws/batch/job", logStreamName="d/default/x.1", limit=5)
    assert got["events"] == []
    assert api.backend.calls == [
        (
            "GetLogEvents",
            {"logGroupName": "/aws/batch/job", "logStreamName": "d/default/x.1", "limit": 5},
        )
    ]
    api.backend.calls.clear()
    for bad, words in [
        ({"limit": "abc"}, "limit: expected an integer, got a string"),
        ({"limit": 10_001}, "limit: must be at most 10000"),
        ({"logStreamName": 5}, "logStreamName: expected a string, got a number"),
        ({"startFromHead": "yes"}, "startFromHead: expected a boolean"),
    ]:
        with pytest.raises(ClientError) as raised:
            logs.get_log_events(
                **{"logGroupName": "/aws/batch/job", "logStreamName": "d/default/x.1", **bad}
            )
        status, code, message = _error(raised)
        assert (status, code) == (400, "InvalidParameterException")
        assert message.startswith(words), message
    assert api.backend.calls == []


@pytest.mark.slow
def test_a_body_that_does_not_arrive_in_time_is_408_and_the_connection_closed() -> None:
    # It was waited for as long as the caller liked, before any signature was checked.
    backend, verify = FakeBackend(), FakeVerify()
    with served(make_app(backend, verify, body_timeout=0.5)) as url:
        parts = urlsplit(url)
        address = (parts.hostname or "", parts.port or 0)
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(
                b"POST /v1/describejobqueues HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{"
            )
            answer = b""
            while data := sock.recv(65536):  # to the server's close
                answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body) == {
        "__type": "RequestTimeoutException",
        "message": "request body not received within 0.5 seconds",
    }
    assert verify.seen == [] and backend.calls == []


def test_a_job_payload_or_definition_over_awss_quota_is_refused(api: Api, client: Any) -> None:
    # AWS Batch's quotas (30 KiB a SubmitJob, 24 KiB a definition): a megabyte was kept,
    # and shown again by every DescribeJobs of the job, a hundred at a time.
    script = "x" * PAYLOAD_LIMITS["SubmitJob"]
    with pytest.raises(ClientError) as raised:
        client.submit_job(
            jobName="j",
            jobQueue="q",
            jobDefinition="d",
            containerOverrides={"command": ["sh", "-c", script]},
        )
    status, code, message = _error(raised)
    assert (status, code) == (400, "ClientException")
    assert message.endswith("over AWS Batch's limit of 30 KiB")
    with pytest.raises(ClientError) as raised:
        client.register_job_definition(
            jobDefinitionName="d",
            type="container",
            containerProperties={"command": ["sh", "-c", script[: 24 * 1024]]},
        )
    assert _error(raised)[2].endswith("over AWS Batch's limit of 24 KiB")
    assert api.backend.calls == []
    # Just under is as before.
    client.submit_job(
        jobName="j",
        jobQueue="q",
        jobDefinition="d",
        containerOverrides={"command": ["sh", "-c", script[:30_000]]},
    )
    assert [operation for operation, _ in api.backend.calls] == ["SubmitJob"]


def test_a_submit_job_is_checked_on_receipt_before_the_backend_sees_it(
    api: Api, client: Any
) -> None:
    # The rules of `jobs.check_submit` (a variable named A=B, 1e-300 vCPU, an aws: tag)
    # are the app's to apply, once: the backend also makes jobs of requests kept before.
    for overrides, tags, words in [
        ({"environment": [{"name": "A=B", "value": "x"}]}, {}, "cannot contain '='"),
        ({"resourceRequirements": [{"type": "VCPU", "value": "1e-300"}]}, {}, "at least 0.25"),
        ({}, {"aws:x": "y"}, "the aws: prefix is reserved"),
    ]:
        with pytest.raises(ClientError) as raised:
            client.submit_job(
                jobName="j",
                jobQueue="q",
                jobDefinition="d",
                containerOverrides=overrides,
                **({"tags": tags} if tags else {}),
            )
        status, code, message = _error(raised)
        assert (status, code) == (400, "ClientException") and words in message
    assert api.backend.calls == []
