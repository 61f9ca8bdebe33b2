"""What a test does when its real engine (SLURM, sshd, podman, chromium) is not there:
in CI (CI=true) it fails, because CI must have started the engine; elsewhere it skips."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def engine_unavailable(engine: str, why: str) -> NoReturn:
    message = f"{engine} is not available: {why} (`bash ci/test.sh` installs and starts it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
