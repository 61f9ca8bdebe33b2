"""What the HTTP app hands to the rest of the server, and what it needs from it.

`RequestParts` is a request as it arrived, before anything is parsed: the signature
check (`auth`) rebuilds SigV4's canonical request from it, so the path and the query are
kept percent-encoded exactly as the client sent them (botocore signs the encoded path),
and the body as bytes (its hash is part of the signature). `Verify` checks one and
returns the caller's access key id, or raises `errors.AuthError`. `Backend` is the
service the app calls once a request is verified and valid.

This module imports nothing from flowbatch, so that every server module may use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class RequestParts:
    """One request as received. `headers` are in their order of arrival, names as the
    HTTP server gives them (lowercased: HTTP/1.1 names are case-insensitive), values
    decoded as Latin-1, the bytes HTTP allows, so that they hash as they were sent."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first header called `name` (any case), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


# Returns the caller's access key id; raises errors.AuthError for a caller refused.
Verify = Callable[[RequestParts], str]


class Backend(Protocol):
    """The service behind the API: one plain, synchronous call per request, made on the
    event loop. `operation` is the model's name for it ("SubmitJob"); `params` are the
    validated input members, those of the path and the query string merged in
    (`resourceArn`, `tagKeys`). Returns the output members; raises `errors.ApiError`
    (`ClientException`, `Unsupported`, ...) for a request it refuses."""

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]: ...


__all__ = ["Backend", "RequestParts", "Verify"]
