"""The server's catalog: compute environments, job queues and job definitions, each kept
as the JSON of its AWS shape in the `catalog` table (schema v5).

The catalog is small (tens to thousands of rows) and read whole once, when the server
starts; after that the server's registry holds it in memory and writes each change
through here before it answers the API call that made it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Final, Literal

from flowbatch.store.schema import StoreError, Transaction, reads

Kind = Literal["compute_environment", "job_queue", "job_definition"]
KINDS: Final[tuple[Kind, ...]] = ("compute_environment", "job_queue", "job_definition")


class Catalog:
    """The `catalog` table of one job database; `kind` is one of KINDS and `name` is a
    resource's name (a job definition's is `NAME:REVISION`)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    def put(self, kind: Kind, name: str, arn: str, body: dict[str, Any]) -> None:
        """Create or replace one resource, committed when this returns."""
        _check(kind)
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        with Transaction(self._conn, self.path):
            self._conn.execute(
                "INSERT INTO catalog (kind, name, arn, body, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (kind, name) DO UPDATE SET"
                " arn = excluded.arn, body = excluded.body, updated_at = excluded.updated_at",
                (kind, name, arn, text, time.time()),
            )

    def delete(self, kind: Kind, name: str) -> None:
        """Remove one resource (nothing if there is none), committed when this returns."""
        _check(kind)
        with Transaction(self._conn, self.path):
            self._conn.execute("DELETE FROM catalog WHERE kind = ? AND name = ?", (kind, name))

    @reads
    def load(self, kind: Kind) -> list[dict[str, Any]]:
        """Every resource of `kind`, its body as put, ordered by name."""
        _check(kind)
        rows = self._conn.execute(
            "SELECT name, body FROM catalog WHERE kind = ? ORDER BY name", (kind,)
        ).fetchall()
        bodies: list[dict[str, Any]] = []
        for name, text in rows:
            try:
                body = json.loads(text)
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise StoreError(
                    f"job database `{self.path}`: catalog entry {kind} {name} is not a JSON object"
                )
            bodies.append(body)
        return bodies


def _check(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown catalog kind {kind!r}")
