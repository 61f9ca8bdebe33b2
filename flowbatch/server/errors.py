"""The API's errors, as AWS writes them (a minimal stand-in: the `proto` helper owns this
module and the lead reconciles the two at merge).

    ApiError       code (AWS's `__type`), message, HTTP status
      AuthError    403: the caller is not who the request says (SigV4 checks)
"""

from __future__ import annotations


class ApiError(Exception):
    """An error the API answers with: `x-amzn-ErrorType: code`, `{"message": ...}`."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class AuthError(ApiError):
    """A request refused before any operation runs: AWS answers these with 403."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, 403)
