"""Errors are data: each carries the facts of what was found (its `detail`), its words
are made from those facts in one table (lang/messages.py), and every error a user can
act on shares one base, FlowbatchError."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowbatch import FlowError, Kind, load, load_text
from flowbatch.errors import FlowbatchError
from flowbatch.executors.container import ContainerError
from flowbatch.executors.ssh import SshError
from flowbatch.lang.messages import MESSAGES
from flowbatch.lang.template_error import TemplateError
from flowbatch.outputs.graph import RenderError
from flowbatch.run.fingerprint import MAX_ENTRIES, InputsError
from flowbatch.run.setup import MissingHostEnv, SetupError, UnknownCompute
from flowbatch.store.jobstore import StoreError

ROOT = Path(__file__).parent.parent
ERRORS = Path(__file__).parent / "golden" / "errors"


def _errors(path: Path) -> tuple[FlowError, ...]:
    with pytest.raises(FlowError) as info:
        load(path)
    return info.value.errors


@pytest.mark.parametrize("path", sorted(ERRORS.glob("*.flow")), ids=lambda p: p.stem)
def test_each_golden_error_is_worded_from_its_facts(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ERRORS.parent)
    for err in _errors(path.relative_to(ERRORS.parent)):
        if err.kind is Kind.SYNTAX:
            continue  # worded by parse_errors, from what the parser expected
        assert err.what in MESSAGES, err
        entry = MESSAGES[err.what]
        assert err.kind is entry.kind
        # The same words again from the facts alone: nothing else went into them.
        assert entry.text(dict(err.detail)) == err.message
        assert (entry.hint(dict(err.detail)) if entry.hint else None) == err.hint


def test_every_message_is_used_by_a_check() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "flowbatch" / "lang").glob("*.py"))
    used = set(re.findall(r'(?:flow_error|report|invalid)\(\s*"([a-z-]+)"', source))
    assert set(MESSAGES) - used == set()
    assert used - set(MESSAGES) == set()


def test_a_failed_lookup_keeps_the_name_and_the_names_known() -> None:
    text = 'queue cpu {\n}\njob a {\n  command = "true"\n  queue = cpux\n}\n'
    with pytest.raises(FlowError) as info:
        load_text(text, "t.flow")
    err = info.value
    assert err.what == "unknown-queue" and err.kind is Kind.UNKNOWN_NAME
    assert err.detail["name"] == "cpux" and err.detail["known"] == ("cpu", "default")
    assert err.hint == "did you mean `cpu`?"


def test_every_error_a_user_can_act_on_shares_one_base() -> None:
    for cls in (
        FlowError,
        TemplateError,
        StoreError,
        InputsError,
        SetupError,
        RenderError,
        ContainerError,
        SshError,
    ):
        assert issubclass(cls, FlowbatchError), cls
    assert issubclass(SetupError, ValueError)  # run_plan documented ValueError before
    assert RenderError.exit_code == 1 and StoreError.exit_code == 2


def test_errors_outside_the_language_carry_typed_fields() -> None:
    err = InputsError("align", "data/**", "scanned")
    assert (err.job, err.pattern, err.limit) == ("align", "data/**", "scanned")
    assert (
        str(err)
        == err.message
        == (
            f"the `inputs`/`outputs` of job `align` read more than {MAX_ENTRIES:,} directory "
            "entries to match (at `data/**`): name the files the job reads more narrowly"
        )
    )
    missing = MissingHostEnv({"TOKEN": ("a", "b")})
    assert missing.missing == {"TOKEN": ("a", "b")}
    assert missing.message == (
        "not set in this environment: `TOKEN` (env_from_host of `a`, `b`); "
        "export it before `flowbatch run`"
    )
    unknown = UnknownCompute("local", "lcoal", "lcoal", ["local", "gpu"])
    assert (unknown.old, unknown.new, unknown.name) == ("local", "lcoal", "lcoal")
    assert unknown.message.endswith("no compute environment `lcoal`; did you mean `local`?")


def test_store_errors_carry_the_run_and_the_schema_they_are_about() -> None:
    from flowbatch.store.schema import NewerSchema, UnknownRun

    newer = NewerSchema(".flowbatch/jobs.db", 9, 3)
    assert isinstance(newer, StoreError) and (newer.version, newer.supported) == (9, 3)
    assert (
        str(newer)
        == "job database `.flowbatch/jobs.db` is schema v9; this flowbatch reads up to v3"
    )
    ids = [f"r{n}" for n in range(7)]
    unknown = UnknownRun("db", "rx", ids)
    assert unknown.run_id == "rx" and unknown.recent == tuple(ids)
    assert unknown.message == "no run `rx` in `db`; recent runs: r0, r1, r2, r3, r4, ..."
    assert UnknownRun("db", None, ()).message == "no runs recorded in `db`"
    assert UnknownRun("db", "rx", ()).message == "no run `rx` in `db`"
