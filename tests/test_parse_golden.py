"""Golden files for parsing: each tests/golden/parse/NAME.flow is paired with
NAME.tree, the dump of the model it compiles to. `pytest --update-goldens` rewrites them."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowbatch import load_text
from flowbatch.lang.computes import Machine
from flowbatch.lang.model import dump

PARSE = Path(__file__).parent / "golden" / "parse"
CASES = sorted(p.stem for p in PARSE.glob("*.flow") if p.stem != "lib")


@pytest.mark.parametrize("name", CASES)
def test_parse_tree(name: str, golden: object) -> None:
    path = PARSE / f"{name}.flow"
    plan = load_text(
        path.read_text(),
        f"{name}.flow",
        read=lambda p: (PARSE / p).read_text(),
        machine=Machine(vcpus=2, memory=4096),
    )
    golden(dump(plan.pipeline), PARSE / f"{name}.tree")  # type: ignore[operator]
