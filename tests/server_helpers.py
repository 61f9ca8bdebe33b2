"""Helpers for tests of `flowbatch server`'s HTTP layer: an app served on a free port of
loopback in a thread of its own (stopped, and waited for, whatever the test does), and
the smallest values botocore's model accepts for a shape (inputs to send, outputs for a
fake backend to answer with)."""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import time
from collections.abc import Iterator, Mapping
from typing import Any

from anyio.from_thread import start_blocking_portal
from starlette.types import ASGIApp

from flowbatch.server.serve import HEAD_TIMEOUT, serve

READY_TIMEOUT = 20.0


@contextlib.contextmanager
def served(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls_cert: str | os.PathLike[str] | None = None,
    tls_key: str | os.PathLike[str] | None = None,
    head_timeout: float = HEAD_TIMEOUT,
) -> Iterator[str]:
    """Serves `app` until the block ends; yields its URL once the server accepts
    requests (an error of `serve` before then is raised here)."""
    urls: queue.Queue[str] = queue.Queue()
    with start_blocking_portal() as portal:
        running = portal.start_task_soon(
            functools.partial(
                serve,
                app,
                host=host,
                port=port,
                tls_cert=tls_cert,
                tls_key=tls_key,
                ready=urls.put,
                grace=1,
                head_timeout=head_timeout,
            )
        )
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while True:
                if running.done():
                    running.result()  # raises what stopped it
                    raise AssertionError("serve returned before it was ready")
                try:
                    url = urls.get(timeout=0.05)
                    break
                except queue.Empty:
                    if time.monotonic() > deadline:
                        raise AssertionError("the server was not ready in time") from None
            yield url
        finally:
            # The portal's exit waits for the cancelled serve to finish its shutdown.
            running.cancel()


def minimal(shapes: Mapping[str, Mapping[str, Any]], name: str) -> Any:
    """The smallest instance of shape `name` that its constraints accept: required
    members only, the first enum value, the shortest strings and lists allowed."""
    shape = shapes[name]
    kind = shape["type"]
    if kind == "structure":
        members = shape["members"]
        return {m: minimal(shapes, members[m]["shape"]) for m in shape.get("required", ())}
    if kind == "list":
        return [minimal(shapes, shape["member"]["shape"]) for _ in range(shape.get("min", 0))]
    if kind == "map":
        key, value = shape["key"]["shape"], shape["value"]["shape"]
        return {
            f"{minimal(shapes, key)}{index}": minimal(shapes, value)
            for index in range(shape.get("min", 0))
        }
    if kind == "string":
        if "enum" in shape:
            return shape["enum"][0]
        return "x" * max(shape.get("min", 1), 1)
    if kind in ("integer", "long"):
        return shape.get("min", 1)
    if kind in ("double", "float"):
        return float(shape.get("min", 1))
    if kind == "boolean":
        return True
    raise AssertionError(f"no minimal value for a {kind}")
