"""Standard streams that outlive their readers: a closed pipe (`flowbatch run p.flow |
head -2`) drops what is written instead of stopping the run.
"""

from __future__ import annotations

import errno
import io
import os
import sys
from typing import TextIO, cast


class DropWhenClosed(io.TextIOBase):
    """A text stream that drops what it is given once its reader has gone (a closed pipe,
    as `flowbatch run p.flow | head -2` leaves) or it cannot be written, instead of
    raising: a run's progress is for watching, and losing the watcher must not stop the
    pipeline or change its exit status.

    On the first EPIPE it does what Python's documentation recommends (the SIGPIPE note
    of the `signal` module): point the descriptor at /dev/null, so that the interpreter's
    own flush at exit does not fail again with "Exception ignored ... BrokenPipeError"."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self.dropping = False

    def write(self, text: str) -> int:
        if not self.dropping:
            try:
                self._stream.write(text)
            except (OSError, ValueError) as err:
                self._stop(err)
        return len(text)

    def flush(self) -> None:
        if not self.dropping:
            try:
                self._stream.flush()
            except (OSError, ValueError) as err:
                self._stop(err)

    def isatty(self) -> bool:
        return not self.dropping and self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding

    def _stop(self, err: Exception) -> None:
        self.dropping = True
        if isinstance(err, OSError) and err.errno == errno.EPIPE:
            point_at_devnull(self._stream)


def point_at_devnull(stream: TextIO) -> None:
    """Python's recipe for a closed pipe: the stream's descriptor now writes to
    /dev/null, so whatever is still buffered can be flushed (and lost) without error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(devnull, stream.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


def keep_running_when_unread() -> None:
    """Send this process's stdout and stderr through DropWhenClosed, for a command
    (`run`) that must carry on whether or not anyone still reads what it prints."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        # None: started with the descriptor closed (`>&-`); print() and click drop it
        if stream is not None and not isinstance(stream, DropWhenClosed):
            setattr(sys, name, cast(TextIO, DropWhenClosed(stream)))
