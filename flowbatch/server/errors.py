"""The errors the API answers with, in AWS's shape: a code, a message and a status.

A minimal version for the `jobs` branch; the proto branch owns the full module
(ServerException, Unsupported, AuthError) and the two are reconciled at merge.
"""

from __future__ import annotations

from typing import ClassVar


class ApiError(Exception):
    """An error the API returns to its caller as `{"__type": code, "message": ...}`."""

    code: ClassVar[str] = "ServerException"
    status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientException(ApiError):
    """Bad input from the caller (HTTP 400), with a message that says what and where."""

    code: ClassVar[str] = "ClientException"
    status: ClassVar[int] = 400
