"""What the README shows is what flowbatch does: its error example is the error
`flowbatch validate` prints for the edit it describes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from proc_helpers import Spawner
from server_process import start_server

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


@pytest.mark.slow
def test_the_readmes_service_lines_work_as_written(tmp_path: Path, spawn: Spawner) -> None:
    """The two lines of "As a service": the server started in a fresh directory, then
    the AWS CLI line run by a shell as written (only the port is the one the test's
    server took: tests never take a fixed port)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## As a service", 1)[1]
    lines = re.search(r"```sh\n(.*?)\n(.*?)\n```", section, re.S)
    assert lines, "the two lines of As a service"
    start, call = lines.groups()
    assert start.split("#")[0].split() == ["flowbatch", "server"]
    server = start_server(spawn, tmp_path / ".flowbatch", cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    line = call.replace("http://127.0.0.1:8910", server.url)
    done = subprocess.run(
        ["sh", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"jobQueues": []}
