"""The HTTP face of `flowbatch server`: AWS Batch's REST-JSON API as a Starlette app.

One request, in this order:

1. its body is read, at most `max_body` bytes (413 past that, refused from its
   Content-Length before a byte of it is read when it says so), within `body_timeout`
   seconds (408 after: a caller may not hold a connection by sending nothing);
2. `verify` checks its signature over the parts as received (403 `AuthError`), before
   anything of it is parsed: an unsigned caller learns nothing, not even which paths
   exist;
3. it is routed by botocore's model (404 `UnknownOperationException` off the map),
   its JSON parsed and its input checked against the operation's shape (400
   `ClientException` naming every problem);
4. `backend.call(operation, params)` answers, synchronously, on the event loop.

CloudWatch Logs' GetLogEvents (`X-Amz-Target`, JSON 1.1) takes the same steps, its
input checked against Logs' own model. Answers are ASCII JSON (other characters
escaped), so that no string a backend holds can make one fail to be written.

Responses are what botocore's REST-JSON parser reads: JSON bodies; for an error, the
status, the header `x-amzn-ErrorType` and the body `{"__type", "message"}`. Every
response carries an `x-amzn-RequestId` (botocore's `ResponseMetadata.RequestId`). An
exception that is not an `ApiError` is a bug: the client gets a 500 ServerException
that says only that, with the request id; the traceback goes to the log with that id,
the operation and nothing of the request's headers or body (they hold signatures and
users' values).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from flowbatch.server import jobs
from flowbatch.server.errors import ApiError, ClientException, ServerException, UnknownOperation
from flowbatch.server.logs import InvalidParameter
from flowbatch.server.model import InputCheck, ServiceModel, load, parse_json
from flowbatch.server.requests import Backend, RequestParts, Verify

# How long a request's body may take to arrive once its head has: a caller that sends
# it byte by byte, or never, holds a connection no longer than this.
BODY_TIMEOUT = 30.0

# 1 MiB is room for every valid request and a bound on what one caller can make the
# server hold while reading it.
MAX_BODY = 1024 * 1024
# AWS Batch's own quotas for what is kept: a SubmitJob's payload, a job definition. A
# kept request is shown again by every DescribeJobs of its job (100 ids at a time) and
# its command rebuilt: a megabyte each made one DescribeJobs a 100 MB answer that held
# the event loop for seconds.
PAYLOAD_LIMITS = {"SubmitJob": 30 * 1024, "RegisterJobDefinition": 24 * 1024}
# Rules a request must meet as it is received, beyond its shape (see `jobs.check_submit`).
_ON_RECEIPT: dict[str, Callable[[dict[str, Any]], None]] = {"SubmitJob": jobs.check_submit}

logger = logging.getLogger("flowbatch.server")

_JSON = "application/json"
_JSON11 = "application/x-amz-json-1.1"
_GET_LOG_EVENTS = "Logs_20140328.GetLogEvents"


class _LogsInput:
    """GetLogEvents' input, checked against CloudWatch Logs' own model; its errors in
    Logs' words (`InvalidParameterException`, which Logs' clients know)."""

    def __init__(self) -> None:
        self._check = InputCheck("logs", "GetLogEvents")

    def __call__(self, body: bytes) -> dict[str, Any]:
        try:
            return self._check(parse_json(body))
        except ClientException as error:
            raise InvalidParameter(error.message) from None


class _TooSlow(ApiError):
    def __init__(self, timeout: float) -> None:
        super().__init__(
            "RequestTimeoutException", f"request body not received within {timeout:g} seconds", 408
        )


class _TooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            "ClientException", f"request body is larger than the limit of {limit} bytes", 413
        )


def _dumps(document: Any) -> bytes:
    # ASCII, non-ASCII text escaped: a JSON reader gets the same strings, and a string
    # that has no UTF-8 (a lone surrogate) cannot make the answer, or an error about it,
    # fail to be written.
    return json.dumps(document, separators=(",", ":")).encode()


def _error(error: ApiError, request_id: str) -> Response:
    body = _dumps({"__type": error.code, "message": error.message})
    headers = {"x-amzn-ErrorType": error.code, "x-amzn-RequestId": request_id}
    if isinstance(error, _TooLarge | _TooSlow):
        # The rest of the body was not read: the connection can serve no other request.
        headers["connection"] = "close"
    return Response(body, status_code=error.status, headers=headers, media_type=_JSON)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge(limit)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


class _Api:
    """The one ASGI endpoint behind every path; routing is the model's, over the raw
    path (a `{resourceArn}` label is percent-encoded, `/` and all, in it)."""

    def __init__(
        self,
        backend: Backend,
        verify: Verify,
        model: ServiceModel,
        max_body: int,
        body_timeout: float,
    ) -> None:
        self._backend = backend
        self._verify = verify
        self._model = model
        self._max_body = max_body
        self._body_timeout = body_timeout
        self._logs_input = _LogsInput()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        request_id = str(uuid.uuid4())
        operation = "-"
        try:
            try:
                with anyio.fail_after(self._body_timeout):
                    body = await _read_body(request, self._max_body)
            except TimeoutError:
                raise _TooSlow(self._body_timeout) from None
            method = request.method
            # The path as sent (ASGI's `path` is decoded): SigV4 signs it encoded, and a
            # `{resourceArn}` label holds an encoded `/`.
            path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
            query = scope.get("query_string", b"").decode("latin-1")
            headers = tuple(
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in scope["headers"]
            )
            self._verify(RequestParts(method, path, query, headers, body))
            target = request.headers.get("x-amz-target", "")
            if method == "POST" and path == "/" and target == _GET_LOG_EVENTS:
                # CloudWatch Logs' one call the server answers (its jobs' logs), in Logs'
                # own protocol, JSON 1.1: the operation in a header, the body as is.
                operation = "GetLogEvents"
                result = self._backend.call(operation, self._logs_input(body))
                await Response(
                    _dumps(result), headers={"x-amzn-RequestId": request_id}, media_type=_JSON11
                )(scope, receive, send)
                return
            routed = self._model.route(method, path)
            if routed is None:
                raise UnknownOperation(method, path)
            found, labels = routed
            operation = found.name
            limit = PAYLOAD_LIMITS.get(operation)
            if limit is not None and len(body) > limit:
                raise ClientException(
                    f"the {operation} request is {len(body)} bytes, over AWS Batch's limit"
                    f" of {limit // 1024} KiB"
                )
            params = found.parse(labels, query, parse_json(body))
            on_receipt = _ON_RECEIPT.get(operation)
            if on_receipt is not None:
                on_receipt(params)
            result = self._backend.call(operation, params)
            response = Response(
                _dumps(result), headers={"x-amzn-RequestId": request_id}, media_type=_JSON
            )
        except ClientDisconnect:
            return
        except ApiError as error:
            response = _error(error, request_id)
        except Exception:
            # The traceback is the server's to read, and holds no more of the request
            # than the code's own names: never the headers (a signature) nor the body.
            logger.exception("request %s (%s) failed", request_id, operation)
            response = _error(
                ServerException(
                    f"An internal error occurred in the server (request id {request_id})."
                ),
                request_id,
            )
        await response(scope, receive, send)


def make_app(
    backend: Backend,
    verify: Verify,
    *,
    model: ServiceModel | None = None,
    max_body: int = MAX_BODY,
    body_timeout: float = BODY_TIMEOUT,
) -> Starlette:
    """The API over `backend`, every caller checked by `verify` first."""
    api = _Api(backend, verify, model if model is not None else load(), max_body, body_timeout)
    return Starlette(routes=[Mount("/", app=api)])


__all__ = ["BODY_TIMEOUT", "MAX_BODY", "PAYLOAD_LIMITS", "make_app"]
