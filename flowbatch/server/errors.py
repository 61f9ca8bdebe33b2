"""The API's errors, as AWS Batch returns them: a code (the `__type` and the
`x-amzn-ErrorType` header), a message, and an HTTP status.

    ApiError            code, message, status
      ClientException   400: bad input, an unknown or busy resource
      Unsupported       400 ClientException: an operation flowbatch does not implement
      ServerException   500: a bug in flowbatch
      AuthError         403: a request that is unsigned or wrongly signed
"""

from __future__ import annotations


class ApiError(Exception):
    """An error the API answers with: `code`, `message`, HTTP `status`."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class ClientException(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__("ClientException", message, 400)


class Unsupported(ClientException):
    def __init__(self, operation: str) -> None:
        super().__init__(f"flowbatch server does not support Operation {operation}")
        self.operation = operation


class ServerException(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__("ServerException", message, 500)


class AuthError(ApiError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, 403)
