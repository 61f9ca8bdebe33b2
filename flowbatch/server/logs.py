"""CloudWatch Logs' GetLogEvents over an attempt's log files, so that `aws logs
get-log-events --log-group-name /aws/batch/job --log-stream-name STREAM` and
`flowbatch logs --server` read what a job printed.

An attempt's stream is its stdout followed by its stderr (flowbatch keeps them apart;
CloudWatch has one stream an attempt). One event a line, each stamped with its file's
modification time: the files keep no time per line. Tokens are `f/<offset>` into that
concatenation, as opaque to clients as AWS's; reading forward from the last token
returns no events and the same token, which is how clients know they have it all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flowbatch.server.errors import ClientException


class InvalidParameter(ClientException):
    """CloudWatch Logs' answer to bad input (a ClientException to the server, but with
    the code that Logs' clients know)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = "InvalidParameterException"


LOG_GROUP = "/aws/batch/job"
MAX_EVENTS = 10_000  # AWS's default and maximum `limit`
MAX_BYTES = 1024 * 1024  # AWS's largest response


def get_log_events(files: list[Path], params: dict[str, Any]) -> dict[str, Any]:
    """Events of the concatenation of `files` (missing ones are empty), from the start
    (`startFromHead`, or a `nextToken`); backward reading starts from the head too."""
    limit = int(params.get("limit") or MAX_EVENTS)
    if not 1 <= limit <= MAX_EVENTS:
        raise InvalidParameter(f"limit: must be 1 to {MAX_EVENTS}")
    start = _offset(params.get("nextToken"))
    events: list[dict[str, Any]] = []
    position = 0  # where the current file starts in the concatenation
    offset = start
    budget = MAX_BYTES
    for path in files:
        try:
            size = path.stat().st_size
            stamp = int(os.stat(path).st_mtime * 1000)
        except OSError:
            continue
        if offset >= position + size:
            position += size
            continue
        with path.open("rb") as f:
            f.seek(offset - position)
            while len(events) < limit and budget > 0:
                line = f.readline(budget)
                if not line:
                    break
                offset += len(line)
                budget -= len(line)
                text = line.rstrip(b"\n").decode("utf-8", errors="replace")
                events.append({"timestamp": stamp, "message": text, "ingestionTime": stamp})
        position += size
        if len(events) >= limit or budget <= 0:
            break
    return {
        "events": events,
        "nextForwardToken": f"f/{offset:020d}",
        "nextBackwardToken": f"b/{start:020d}",
    }


def _offset(token: object) -> int:
    if token is None:
        return 0
    text = str(token)
    kind, _, number = text.partition("/")
    # ASCII digits only: str.isdigit() is true of '²' too, which int() refuses.
    if kind not in ("f", "b") or not (number.isascii() and number.isdigit()):
        raise InvalidParameter("The specified nextToken is invalid.")
    return 0 if kind == "b" else int(number)
