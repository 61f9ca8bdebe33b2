"""Property-based tests: whatever text the parser and checker are fed, they either
return a Plan or raise the project's own FlowError, never another exception."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowbatch import FlowError, load_text
from flowbatch.computes import Machine

PIPELINES = sorted((Path(__file__).parent.parent / "pipelines").glob("*.flow"))
SEEDS = [p.read_text() for p in PIPELINES] + [
    (Path(__file__).parent / "golden" / "errors" / "cycle.flow").read_text()
]
MACHINE = Machine(vcpus=2, memory=4096)
CHARS = st.sampled_from(list('{}[]()=:,."#\n\\ \t*abcjobqueuparmn_01289GiBMhs|%'))
# Whole tokens as well as characters, so that mutations reach the checker, not just the lexer.
PIECES = st.text(CHARS, max_size=6) | st.sampled_from(
    ["{{", "}}", "job x {", "}", "after = [", "array = 3", "n_to_n(", "params.", "\n"]
)


def check(text: str) -> None:
    try:
        load_text(text, "fuzz.flow", read=lambda p: "", machine=MACHINE)
    except FlowError as err:
        assert str(err)  # rendering must not crash either
        assert err.errors


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(CHARS, max_size=200))
def test_random_text_raises_only_flow_errors(text: str) -> None:
    check(text)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(SEEDS),
    cuts=st.lists(
        st.tuples(st.integers(0, 5000), st.integers(0, 40), PIECES), min_size=1, max_size=4
    ),
)
def test_mutated_pipelines_raise_only_flow_errors(
    seed: str, cuts: list[tuple[int, int, str]]
) -> None:
    text = seed
    for at, width, insert in cuts:
        at %= len(text) + 1
        text = text[:at] + insert + text[at + width :]
    check(text)
