"""One HTTP request as the server received it (a minimal stand-in: the `proto` helper owns
this module and the lead reconciles the two at merge).

Everything stays as it came off the wire, because a SigV4 signature covers the bytes the
client sent: the path still percent-encoded, the query string unparsed, every header
(repeated ones too) in order.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestParts:
    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
