"""What a command pays before and after its work (issue 13: `flowbatch run`'s start-up
and teardown). Every module is paid for before the first job starts, so what only
another command, an option or an error needs is imported where it is used; at the end,
the cycle collector skips what the command made, and shutdown is otherwise as usual,
except that `run`, all it opened closed, ends the process without the interpreter's."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from proc_helpers import imported_by, run_python, run_to_end

from flowbatch.cli import app
from flowbatch.store.jobstore import Store

PLAIN = 'job one {\n  command = "true"\n}\n'

NOT_FOR_RUN = (
    "flowbatch.cli.control",  # cancel / terminate; `run --resume` imports it
    "flowbatch.cli.planning",  # `plan`; `run --resume` imports it
    "configparser",  # --server without AWS credentials
    "difflib",  # "did you mean": an error only
    "importlib.resources",  # the grammar is read beside the package
    "zipfile",
    "lark",  # the LALR tables come from the cache
    "jinja2",
    "botocore",
    "starlette",
    "uvicorn",
    "flowbatch.server",
    "flowbatch.executors.ssh",
    "flowbatch.executors.slurm",
    "flowbatch.executors.aws_batch",
    "flowbatch.lang.parse_errors",
    "flowbatch.lang.messages",
    "flowbatch.store.views",  # the reading commands, and a failed run's hints
    "flowbatch.store.standing",  # the server
)


@pytest.mark.slow
def test_a_plain_run_imports_nothing_it_does_not_need(tmp_path: Path) -> None:
    (tmp_path / "one.flow").write_text(PLAIN)
    imported, err = imported_by(["run", "one.flow", "--state-dir", "state"], NOT_FOR_RUN, tmp_path)
    assert imported == []
    assert "succeeded" in err


@pytest.mark.slow
def test_a_command_ends_with_its_objects_frozen_and_its_output_whole(tmp_path: Path) -> None:
    (tmp_path / "one.flow").write_text(PLAIN)
    code = (
        "import atexit, gc, runpy, sys\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
        "sys.argv = ['flowbatch', 'validate', 'one.flow', 'nowhere.flow']\n"
        "runpy.run_module('flowbatch', run_name='__main__')\n"
    )
    out = run_python(code, cwd=tmp_path)
    assert out.returncode == 2  # the command's own exit code, through the shutdown
    assert out.stdout == "frozen True\n"
    assert "one.flow: ok" in out.stderr and "nowhere.flow" in out.stderr


@pytest.mark.slow
def test_a_runs_start_up_goes_without_the_cycle_collector_and_its_jobs_with_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "one.flow").write_text(PLAIN)
    code = (
        "import atexit, gc, runpy, sys\n"
        "import flowbatch.cli.common as common\n"
        "seen = []\n"
        "over = common.startup_over\n"
        "def watched():\n"
        "    seen.append(gc.isenabled())\n"
        "    over()\n"
        "    seen.append(gc.isenabled())\n"
        "common.startup_over = watched\n"
        "atexit.register(lambda: print(seen))\n"
        "sys.argv = ['flowbatch', 'run', 'one.flow', '--state-dir', 'state']\n"
        "runpy.run_module('flowbatch', run_name='__main__')\n"
    )
    out = run_python(code, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "[False, True]\n"  # once, before the first job


def test_importing_the_package_imports_no_front_half() -> None:
    # The command line starts through the package: its public names come on first use.
    code = (
        "import sys, flowbatch\n"
        "print(sorted(m for m in sys.modules if m.startswith('flowbatch.')))\n"
        "plan = flowbatch.load_text('job a {\\n  command = \"true\"\\n}\\n')\n"
        "print(len(plan), flowbatch.Plan is type(plan), 'run_plan' in dir(flowbatch))\n"
    )
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "[]\n1 True True\n"


def test_a_command_invoked_in_process_leaves_the_collector_as_it_was(tmp_path: Path) -> None:
    # Only `main` (the process's entry point) turns the collector off and freezes.
    (tmp_path / "one.flow").write_text(PLAIN)
    frozen = gc.get_freeze_count()
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "one.flow")])
    assert result.exit_code == 0, result.output
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen


@pytest.mark.slow
def test_the_runs_store_keeps_a_small_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "one.flow").write_text(PLAIN)
    caches: list[int] = []
    opened = Store.open.__func__  # type: ignore[attr-defined]

    def spy(cls: type[Store], state_dir: Path, **kwargs: Any) -> Store:
        store: Store = opened(cls, state_dir, **kwargs)
        caches.append(store._conn.execute("PRAGMA cache_size").fetchone()[0])
        return store

    monkeypatch.setattr(Store, "open", classmethod(spy))
    state = tmp_path / "state"
    result = CliRunner().invoke(app, ["run", str(tmp_path / "one.flow"), "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    assert caches[0] == -512  # KiB; SQLite's default is -2000


# A sitecustomize, as a coverage tool's: its atexit handler must run; what the
# interpreter's own shutdown runs first (threading's hooks) must not.
_SITE = (
    "import atexit, os, threading\n"
    "atexit.register(lambda: os.write(1, b'atexit\\n'))\n"
    "threading._register_atexit(lambda: os.write(1, b'shutdown\\n'))\n"
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("launcher", "command", "code", "last"),
    [
        ("-m", "true", 0, "succeeded"),
        ("-m", "exit 3", 1, "--state-dir state"),
        ("script", "true", 0, "succeeded"),
    ],
)
def test_a_run_as_the_program_ends_without_the_interpreters_shutdown(
    tmp_path: Path, launcher: str, command: str, code: int, last: str
) -> None:
    """`python -m flowbatch run` (or the `flowbatch` script) ends once all it opened is
    closed, with the run's exit status and its messages whole, without the
    interpreter's shutdown; the atexit handlers still run."""
    (tmp_path / "one.flow").write_text(f'job one {{\n  command = "{command}"\n}}\n')
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_SITE)
    # The console script as pip writes it.
    (site / "flowbatch").write_text(
        "import sys\nfrom flowbatch.cli import main\nsys.exit(main())\n"
    )
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{site}"}
    env.pop("FLOWBATCH_SERVER", None)
    program = ["-m", "flowbatch"] if launcher == "-m" else [str(site / "flowbatch")]
    argv = [sys.executable, *program, "run", "one.flow", "--state-dir", "state"]
    out = run_to_end(argv, cwd=tmp_path, env=env)
    assert out.returncode == code, out.stderr
    assert out.stdout == "atexit\n"
    assert out.stderr.endswith(f"{last}\n")  # the messages after the store closed
    with Store.open(tmp_path / "state", create=False) as store:
        assert [r.status.value for r in store.run_records()] == [
            "SUCCEEDED" if code == 0 else "FAILED"
        ]
