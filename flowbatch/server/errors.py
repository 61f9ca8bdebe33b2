"""The errors of AWS Batch's API, as the server sends them.

    FlowbatchError
      ApiError            code, message, HTTP status: what a client receives
        ClientException   400: the caller's request cannot be done (bad input, ...)
          Unsupported     400: an operation of AWS Batch that flowbatch does not serve
        ServerException   500: a bug in the server (its text never says more than that)
        AuthError         403: a caller refused by the signature check, with AWS's codes
        UnknownOperation  404: a path no operation of the model lives at

AWS Batch itself declares only ClientException and ServerException; the 403s and 404s
come from AWS's front door with the codes botocore knows (MissingAuthenticationToken...,
UnknownOperationException). The app turns every one into REST-JSON's error shape.
An ApiError is a FlowbatchError so that one escaping into the CLI is reported as a
user's problem, not as a crash.
"""

from __future__ import annotations

from flowbatch.errors import FlowbatchError


class ApiError(FlowbatchError):
    """An error response: `code` goes to the client as its error type (botocore's
    `Error.Code`), `message` as its message, with HTTP `status`."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class ClientException(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__("ClientException", message, 400)


class Unsupported(ClientException):
    """An operation AWS Batch has and this server does not serve; the message names it
    so that a client's user knows it is the server, not their input."""

    def __init__(self, operation: str) -> None:
        super().__init__(f"flowbatch server does not support operation {operation}")
        self.operation = operation


class ServerException(ApiError):
    def __init__(self, message: str = "An internal error occurred in the server.") -> None:
        super().__init__("ServerException", message, 500)


class AuthError(ApiError):
    """A request the signature check refuses. `code` is AWS's
    (`MissingAuthenticationTokenException`, `UnrecognizedClientException`,
    `InvalidSignatureException`); the message never holds a secret."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, 403)


class UnknownOperation(ApiError):
    def __init__(self, method: str, path: str) -> None:
        super().__init__(
            "UnknownOperationException", f"no operation of AWS Batch at {method} {path}", 404
        )


__all__ = [
    "ApiError",
    "AuthError",
    "ClientException",
    "ServerException",
    "UnknownOperation",
    "Unsupported",
]
