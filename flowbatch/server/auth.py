"""Who is calling: AWS Signature Version 4, checked as AWS checks it.

The signature is computed by botocore's own signer (`botocore.auth.SigV4Auth`, the code
that signed the request in boto3 and the AWS CLI) over an `AWSRequest` rebuilt from the
request as received: the raw path (botocore encodes it once more, as SigV4 wants for every
service but S3, so `/v1/tags/arn%3Aaws%3A...` must reach it still encoded), the query, the
headers the client says it signed with their received values, the time the client signed
at (its X-Amz-Date), and the SHA-256 of the body that actually arrived. Only one piece of
botocore is replaced: which headers are signed, since a client, not botocore, chose them.

Refusals are AWS's (403, the `__type` codes and messages AWS sends), checked in the
order a cheap refusal comes first: a missing or malformed Authorization header, a
session token (this server issues no temporary credentials), a clock more than 15
minutes off, a credential scope for another day, region or service, `host` unsigned, an
unknown key, a body that is not the one the client hashed, and last the signature.

Not supported: presigned URLs (query-string authentication), which no Batch client
uses; a `Date` header in place of `X-Amz-Date`; SigV4a. No message carries a secret, a
signature or a header's value beyond the client's own credential scope.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from flowbatch.server.errors import AuthError
from flowbatch.server.model import query_pairs
from flowbatch.server.requests import RequestParts

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=15)
_AMZ_DATE = "%Y%m%dT%H%M%SZ"

MISSING = "MissingAuthenticationTokenException"
UNRECOGNIZED = "UnrecognizedClientException"
INVALID = "InvalidSignatureException"
INCOMPLETE = "IncompleteSignatureException"

MISSING_MESSAGE = "Missing Authentication Token"
UNRECOGNIZED_MESSAGE = "The security token included in the request is invalid."
MISMATCH_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)

# What may appear in a message: the client's own scope parts, when they have this shape.
_SCOPE_PART = re.compile(r"[a-z0-9-]{1,64}")
_DATE = re.compile(r"\d{8}")
_AMZ_DATE_SHAPE = re.compile(r"\d{8}T\d{6}Z")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


@dataclass(frozen=True)
class _Authorization:
    key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


class Verifier:
    """Checks SigV4 requests against `keys` ({access key id: secret}) for one region and
    service; `clock` gives the server's time (seconds since the epoch)."""

    def __init__(
        self,
        keys: Mapping[str, str],
        *,
        region: str,
        service: str = "batch",
        also: tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`also`: other services a request may be scoped to (the server answers
        CloudWatch Logs' GetLogEvents for its jobs' logs, signed for `logs`)."""
        self._keys = keys
        self._region = region
        self._service = service
        self._services = (service, *also)
        self._clock = clock

    def verify(self, parts: RequestParts) -> str:
        """The caller's access key id, or `AuthError` saying why the request is refused."""
        headers = _headers(parts.headers)
        values = headers.get("authorization", [])
        if not values:
            raise AuthError(MISSING, MISSING_MESSAGE)
        if len(values) > 1:
            raise AuthError(INCOMPLETE, "Only one Authorization header may be given.")
        auth = _parse_authorization(values[0])
        if "x-amz-security-token" in headers:
            # Temporary credentials are issued by STS, which this server is not.
            raise AuthError(UNRECOGNIZED, UNRECOGNIZED_MESSAGE)
        amz_date = _amz_date(headers)
        self._check_time(amz_date)
        self._check_scope(auth, amz_date)
        if "host" not in auth.signed_headers:
            raise AuthError(INVALID, "'Host' must be a 'SignedHeader' in the AWS Authorization.")
        secret = self._keys.get(auth.key_id)
        if secret is None:
            raise AuthError(UNRECOGNIZED, UNRECOGNIZED_MESSAGE)
        body_hash = hashlib.sha256(parts.body).hexdigest()
        # A signed x-amz-content-sha256 lets a signature stand for a body without reading
        # it: one that is not this body's hash would let a signed request carry another body.
        if any(v.strip() != body_hash for v in headers.get("x-amz-content-sha256", [])):
            raise AuthError(INVALID, MISMATCH_MESSAGE)
        expected = self._signature(parts, headers, auth, amz_date, secret, body_hash)
        if not hmac.compare_digest(expected, auth.signature):
            raise AuthError(INVALID, MISMATCH_MESSAGE)
        return auth.key_id

    def _check_time(self, amz_date: datetime) -> None:
        now = datetime.fromtimestamp(self._clock(), UTC).replace(microsecond=0)
        given = amz_date.strftime(_AMZ_DATE)
        if amz_date < now - MAX_SKEW:
            raise AuthError(
                INVALID,
                f"Signature expired: {given} is now earlier than "
                f"{(now - MAX_SKEW).strftime(_AMZ_DATE)} ({now.strftime(_AMZ_DATE)} - 15 min.)",
            )
        if amz_date > now + MAX_SKEW:
            raise AuthError(
                INVALID,
                f"Signature not yet current: {given} is still later than "
                f"{(now + MAX_SKEW).strftime(_AMZ_DATE)} ({now.strftime(_AMZ_DATE)} + 15 min.)",
            )

    def _check_scope(self, auth: _Authorization, amz_date: datetime) -> None:
        day = amz_date.strftime("%Y%m%d")
        if auth.date != day:
            raise AuthError(
                INVALID,
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
                f"date from HTTP: '{auth.date}' != '{day}', from 'X-Amz-Date'.",
            )
        if auth.region != self._region:
            raise AuthError(
                INVALID, f"Credential should be scoped to a valid region, not '{auth.region}'."
            )
        if auth.service not in self._services:
            raise AuthError(
                INVALID, f"Credential should be scoped to correct service: '{self._service}'."
            )

    def _signature(
        self,
        parts: RequestParts,
        headers: Mapping[str, list[str]],
        auth: _Authorization,
        amz_date: datetime,
        secret: str,
        body_hash: str,
    ) -> str:
        signed = HTTPHeaders()
        for name in auth.signed_headers:
            if name not in headers:
                # The client signed a header that did not arrive: nothing can match.
                raise AuthError(INVALID, MISMATCH_MESSAGE)
            for value in headers[name]:
                signed[name] = value  # HTTPHeaders keeps repeats; SigV4 joins them with ','
        # A '#' would end the path botocore reads from the URL (urlsplit takes it for a
        # fragment) while the router sees all of it: a signature for a prefix of the path.
        if not parts.path.startswith("/") or "#" in parts.path:
            raise AuthError(INVALID, MISMATCH_MESSAGE)
        # The authority is a placeholder: the signed `host` header is what is checked.
        request = AWSRequest(method=parts.method, url="http://flowbatch.invalid" + parts.path)
        # The pairs as the app reads its members from them (`+` a space), for botocore to
        # encode again as SigV4 wants: a client may send `~` or `%7E`, a space as %20.
        request.params = query_pairs(parts.query)
        # The hash of the body received, in the place botocore reads a declared one from.
        request.headers["X-Amz-Content-SHA256"] = body_hash
        request.context["timestamp"] = amz_date.strftime(_AMZ_DATE)
        signer = _ReceivedHeaders(
            Credentials(auth.key_id, secret), auth.service, self._region, signed
        )
        canonical = signer.canonical_request(request)
        result: str = signer.signature(signer.string_to_sign(request, canonical), request)
        return result


class _ReceivedHeaders(SigV4Auth):  # type: ignore[misc]  # botocore has no type hints
    """botocore's SigV4 with the client's choice of signed headers: botocore's own choice
    (every header but a few hop-by-hop ones) is a signer's, and other signers choose
    otherwise (some sign user-agent, which botocore never does)."""

    def __init__(self, credentials: Any, service: str, region: str, signed: Any) -> None:
        super().__init__(credentials, service, region)
        self._signed = signed

    def headers_to_sign(self, request: Any) -> Any:
        return self._signed


def _headers(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in pairs:
        headers.setdefault(name.lower(), []).append(value)
    return headers


def _incomplete() -> AuthError:
    # AWS's words; it also echoes the header, which this server keeps out of its messages.
    return AuthError(
        INCOMPLETE,
        " ".join(
            f"Authorization header requires '{name}' parameter."
            for name in ("Credential", "Signature", "SignedHeaders")
        ),
    )


def _parse_authorization(value: str) -> _Authorization:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise AuthError(
            INCOMPLETE,
            f"Authorization header must use {ALGORITHM} (Signature Version 4), "
            "with 'Credential', 'SignedHeaders' and 'Signature' parameters.",
        )
    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, eq, field = item.strip().partition("=")
        if not eq or name in fields:
            raise _incomplete()
        fields[name] = field
    if set(fields) != {"Credential", "SignedHeaders", "Signature"}:
        raise _incomplete()
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or not _KEY_ID.fullmatch(scope[0]) or not _DATE.fullmatch(scope[1]):
        raise AuthError(
            INCOMPLETE,
            "Credential must have the form "
            "<access key id>/<YYYYMMDD>/<region>/<service>/aws4_request.",
        )
    key_id, date, region, service, terminator = scope
    if not (_SCOPE_PART.fullmatch(region) and _SCOPE_PART.fullmatch(service)):
        raise AuthError(INCOMPLETE, "Credential's region and service must be lowercase names.")
    if terminator != "aws4_request":
        raise AuthError(
            INVALID, "Credential should be scoped with a valid terminator: 'aws4_request'."
        )
    names = tuple(fields["SignedHeaders"].split(";"))
    if not all(_HEADER_NAME.fullmatch(n) for n in names) or len(set(names)) != len(names):
        raise AuthError(INCOMPLETE, "SignedHeaders must be lowercase header names split by ';'.")
    if not _SIGNATURE.fullmatch(fields["Signature"]):
        raise AuthError(INVALID, MISMATCH_MESSAGE)
    return _Authorization(key_id, date, region, service, names, fields["Signature"])


def _amz_date(headers: Mapping[str, list[str]]) -> datetime:
    values = headers.get("x-amz-date", [])
    if len(values) != 1:
        raise AuthError(
            INCOMPLETE,
            "Authorization header requires existence of exactly one 'X-Amz-Date' header.",
        )
    if not _AMZ_DATE_SHAPE.fullmatch(values[0]):
        raise AuthError(
            INCOMPLETE, "X-Amz-Date must be in ISO-8601 'basic format' (YYYYMMDD'T'HHMMSS'Z')."
        )
    try:
        return datetime.strptime(values[0], _AMZ_DATE).replace(tzinfo=UTC)
    except ValueError:
        raise AuthError(INCOMPLETE, "X-Amz-Date is not a valid date and time.") from None
