"""ListJobs: a request made a store query (`store.views.JobQuery`), its page made
JobSummaries, and the nextToken that carries a listing from one page to the next.

Pure, like `jobs`: the service resolves the queue, runs the query on the store and
hands in the key that signs tokens. AWS's rules: one of `jobQueue` and `arrayJobId`;
without a filter only the jobs in `jobStatus` (default RUNNING), oldest first; with
one filter (at most one) any status, newest first (AWS sorts a filtered listing by
createdAt, most recent first); the children of an array are listed by index and never
filtered. A nextToken is opaque, signed, and good only for the request it came from
(a page size may change between pages, nothing else).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any, Final

from flowbatch.run.state import JobState
from flowbatch.server.errors import ClientException
from flowbatch.store.views import JobQuery, ListedJob

__all__ = [
    "DEFAULT_MAX_RESULTS",
    "MAX_FILTERED_RESULTS",
    "MAX_FILTER_VALUES",
    "MAX_RESULTS",
    "job_summary",
    "list_query",
    "next_token",
]

_AWS: Final = "Error executing request, Exception : "


def _client(text: str) -> ClientException:
    return ClientException(_AWS + text)


def _present(out: dict[str, Any], **members: Any) -> None:
    # AWS leaves out what a job does not have yet rather than sending null.
    out.update({k: v for k, v in members.items() if v is not None})


def job_summary(job: ListedJob, *, job_arn: str) -> dict[str, Any]:
    """A listed job as an entry of ListJobs' `jobSummaryList`, a JobSummary."""
    r = job.record
    out: dict[str, Any] = {
        "jobArn": job_arn,
        "jobId": r.job_id,
        "jobName": r.name,
        "status": r.status.value,
        "isCancelled": job.cancelled,
        "isTerminated": job.terminated,
    }
    _present(
        out,
        createdAt=r.created_at,
        startedAt=r.started_at,
        stoppedAt=r.stopped_at,
        statusReason=r.status_reason or None,
        jobDefinition=job.definition,
    )
    container: dict[str, Any] = {}
    _present(container, exitCode=r.exit_code, reason=job.reason or None)
    if container:
        out["container"] = container
    if r.array_size is not None:
        out["arrayProperties"] = {
            "size": r.array_size,
            "statusSummary": {s.value: (r.status_summary or {}).get(s, 0) for s in JobState},
        }
    elif r.array_index is not None:
        out["arrayProperties"] = {"index": r.array_index}
    return out


DEFAULT_MAX_RESULTS: Final = 100
MAX_RESULTS: Final = 1000  # AWS returns at most 1,000 jobs a page
MAX_FILTERED_RESULTS: Final = 100  # ... and at most 100 when a filter is used
_FILTERS: Final = ("JOB_NAME", "JOB_DEFINITION", "BEFORE_CREATED_AT", "AFTER_CREATED_AT")
# A filter's values, each a term of one SQL expression: SQLite refuses one deeper than
# 1,000 terms, so a request with thousands was a 500. AWS documents no number; a
# hundred is more than any listing by name or definition needs.
MAX_FILTER_VALUES: Final = 100
_MAX_MS: Final = 2**63 - 1  # epoch ms, as the store's integers hold them
_TOKEN_VERSION: Final = 1
_MAC_BYTES: Final = 16


def list_query(
    params: Mapping[str, Any], *, queue: str | None, run_id: str | None, key: bytes
) -> JobQuery:
    """The store query a ListJobs request (`params`) asks for. `queue` is the name of the
    queue its `jobQueue` names (the caller resolves a name or an ARN and refuses an
    unknown one); `run_id` the run whose jobs are listed (None: every run); `key`
    signs and checks nextTokens (`next_token`). `maxResults` is 1 to 1,000 (100 with
    a filter), 100 when not given. ClientException for what AWS refuses and for a
    nextToken that is not this request's."""
    if params.get("multiNodeJobId"):
        raise ClientException("flowbatch server does not support multi-node parallel jobs")
    parent = params.get("arrayJobId") or None
    if (queue is None) == (parent is None):
        raise _client("Exactly one of jobQueue and arrayJobId must be given")
    filters = [] if parent is not None else list(params.get("filters") or ())
    if len(filters) > 1:
        raise _client("Only one filter can be used at a time")
    limit = params.get("maxResults")
    if limit is not None and int(limit) < 1:
        raise _client(f"maxResults must be at least 1, got {limit}")
    cap = MAX_FILTERED_RESULTS if filters else MAX_RESULTS
    query = JobQuery(
        run_id=run_id,
        queue=None if parent is not None else queue,
        parent=parent,
        status=None if filters else str(params.get("jobStatus") or JobState.RUNNING.value),
        newest_first=bool(filters),
        limit=min(int(limit or DEFAULT_MAX_RESULTS), cap),
        **(_filter(filters[0]) if filters else {}),
    )
    token = params.get("nextToken")
    if token:
        return _with_cursor(query, _read_token(str(token), query, key))
    return query


def _filter(item: Mapping[str, Any]) -> dict[str, Any]:
    name = str(item.get("name", ""))
    values = list(dict.fromkeys(str(v) for v in item.get("values") or ()))
    if name not in _FILTERS:
        raise _client(f"Filter name must be one of {', '.join(_FILTERS)}, got `{name}`")
    if not values:
        raise _client(f"Filter {name} needs a value")
    if len(values) > MAX_FILTER_VALUES:
        raise _client(
            f"Filter {name} can have at most {MAX_FILTER_VALUES} values, got {len(values)}"
        )
    if name == "JOB_NAME":
        # Case-insensitive, `*` at the end a prefix (AWS): LIKE patterns.
        return {"name_like": tuple(_like(v) for v in values)}
    if name == "JOB_DEFINITION":
        return {"definition_glob": tuple(_definition_glob(v) for v in values)}
    times = []
    for v in values:
        # ASCII digits: str.isdigit() holds for '²' too, which int() refuses.
        if not (v.isascii() and v.isdigit()) or int(v) > _MAX_MS:
            raise _client(f"Filter {name} value must be epoch milliseconds, got `{v}`")
        times.append(int(v))
    # Of several values, the widest reading: a job matching any of them is listed.
    if name == "BEFORE_CREATED_AT":
        return {"created_before": max(times)}
    return {"created_after": min(times)}


def _like(value: str) -> str:
    prefix = value.endswith("*")
    text = value[:-1] if prefix else value
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + ("%" if prefix else "")


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _definition_glob(value: str) -> str:
    """A GLOB over a job's definition ARN for one JOB_DEFINITION value: an ARN (with its
    revision: that revision; without: any), `name:revision`, `name` (any revision) or
    `prefix*` (case-sensitive, AWS)."""
    if value.startswith("arn:"):
        if "*" in value:
            raise _client("Asterisk (*) isn't supported when the ARN is used")
        tail = value.rpartition("job-definition/")[2]
        return _glob_escape(value) + ("" if ":" in tail else ":*")
    if value.endswith("*"):
        return f"*:job-definition/{_glob_escape(value[:-1])}*"
    name, _, revision = value.partition(":")
    if revision:
        return f"*:job-definition/{_glob_escape(name)}:{_glob_escape(revision)}"
    return f"*:job-definition/{_glob_escape(name)}:*"


def _with_cursor(query: JobQuery, cursor: int) -> JobQuery:
    return dataclasses.replace(query, cursor=cursor)


def _fingerprint(query: JobQuery) -> str:
    # What a token belongs to: the query without its page size and position.
    shown = {
        "run": query.run_id,
        "queue": query.queue,
        "parent": query.parent,
        "status": query.status,
        "name": list(query.name_like),
        "definition": list(query.definition_glob),
        "before": query.created_before,
        "after": query.created_after,
        "newest": query.newest_first,
    }
    digest = hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()
    return digest[:16]


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]


def next_token(query: JobQuery, cursor: int, *, key: bytes) -> str:
    """The nextToken of the page of `query` whose last job is at `cursor` (its
    `ListedJob.cursor`): opaque, and signed with `key` so that a token altered, or
    given with another query, is refused."""
    payload = json.dumps(
        {"v": _TOKEN_VERSION, "c": cursor, "q": _fingerprint(query)}, separators=(",", ":")
    ).encode()
    return base64.urlsafe_b64encode(payload + _mac(key, payload)).decode().rstrip("=")


def _read_token(token: str, query: JobQuery, key: bytes) -> int:
    bad = _client("Invalid nextToken: it was not returned by ListJobs for this request")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise bad from None
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, _mac(key, payload)):
        raise bad
    try:
        found = json.loads(payload)
        cursor = found["c"]
        ok = found["v"] == _TOKEN_VERSION and found["q"] == _fingerprint(query)
    except (ValueError, KeyError, TypeError):
        raise bad from None
    if not ok or not isinstance(cursor, int) or isinstance(cursor, bool):
        raise bad
    return cursor
