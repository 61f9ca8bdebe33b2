"""Shared test infrastructure: the `--update-goldens` option, the `golden` fixture that
compares produced text with a file under tests/golden/, the session-wide anyio
backend (asyncio), `spawn` (processes stopped in teardown) and `reaper`.

Test modules import helpers that live beside them as top-level modules
(`from engine_helpers import engine_unavailable`): pytest puts tests/ on sys.path, and
the repository root is deliberately not on it in CI, so `import flowbatch` finds the
installed wheel. Every test that starts a process does it through the `spawn` fixture
(or stops it in a `finally` of its own), so that none outlives its test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from proc_helpers import Spawner

from flowbatch.executors.reaper import Reaper

GOLDEN_DIR = Path(__file__).parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="rewrite the expected files under tests/golden/ from what the code produces",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Rewriting the expectations in CI would make every golden test pass by definition.
    if config.getoption("--update-goldens") and os.environ.get("CI") == "true":
        raise pytest.UsageError("--update-goldens is refused under CI=true")


class Golden:
    """Compares text with an expected file, or rewrites the file under --update-goldens.

    `golden(produced, "render/diamond.dot")`: a relative path is under tests/golden/.
    Fails the test when the file is missing or differs (pytest shows the diff).
    """

    def __init__(self, *, update: bool) -> None:
        self.update = update

    def path(self, name: str | Path) -> Path:
        path = Path(name)
        return path if path.is_absolute() else GOLDEN_DIR / path

    def __call__(self, produced: str, name: str | Path) -> None:
        path = self.path(name)
        if self.update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(produced, encoding="utf-8", newline="")
            return
        if not path.is_file():
            pytest.fail(
                f"golden file {path} is missing: run `pytest --update-goldens` to create it,"
                " then review it",
                pytrace=False,
            )
        with path.open(encoding="utf-8", newline="") as f:
            expected = f.read()
        assert produced == expected, f"output differs from {path} (--update-goldens rewrites it)"


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Golden:
    return Golden(update=bool(request.config.getoption("--update-goldens")))


@pytest.fixture(autouse=True)
def _no_state_dir_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own FLOWBATCH_STATE_DIR must not send the tests' runs into it.
    monkeypatch.delenv("FLOWBATCH_STATE_DIR", raising=False)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def spawn() -> Iterator[Spawner]:
    """`spawn(argv, **popen_options)` starts a process in a session of its own; it and
    all it started are stopped in teardown, whatever the test did."""
    spawner = Spawner()
    try:
        yield spawner
    finally:
        spawner.stop_all()


@pytest.fixture
def reaper() -> Iterator[Reaper]:
    """A reaper with a 0.1 s stop grace period, closed (and killed if it outlived that)
    in teardown."""
    reaper = Reaper(0.1)
    try:
        yield reaper
    finally:
        reaper.close()
        if reaper.proc.poll() is None:
            reaper.proc.kill()
        reaper.proc.wait()
