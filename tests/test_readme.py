"""What the README shows is what flowbatch does: its error example is the error
`flowbatch validate` prints for the edit it describes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowbatch.cli import app

ROOT = Path(__file__).resolve().parent.parent


def test_the_readmes_error_example_is_what_validate_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"```\n(pipelines/render\.flow:\d+:\d+: error: .*?)```", readme, re.S)
    assert found, "the README's error example"
    shown = found.group(1)
    # The example's own edit: `frames` misspelt in render.flow's N_TO_N dependency.
    source = (ROOT / "pipelines" / "render.flow").read_text(encoding="utf-8")
    assert source.count("n_to_n(frames)") == 1
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "render.flow").write_text(
        source.replace("n_to_n(frames)", "n_to_n(frame)"), encoding="utf-8"
    )
    (tmp_path / "pipelines" / "common.flow").write_text(
        (ROOT / "pipelines" / "common.flow").read_text(encoding="utf-8"), encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, ["validate", "pipelines/render.flow"], env={"NO_COLOR": "1", "GITHUB_ACTIONS": ""}
    )
    assert result.exit_code == 2
    assert result.stderr == shown
