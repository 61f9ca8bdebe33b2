"""Command templates: the fast path for plain value insertion means exactly what Jinja
means, and anything else still goes through Jinja's sandbox."""

from __future__ import annotations

import pytest

from flowbatch.lang.template import Context, TemplateError, _render_jinja, _simple_parts, render

CTX = Context(params={"q": "a b; rm -rf ~", "n": 3, "f": True, "x": 0.5}, job_name="j",
              job_id="id-1", attempt=2, index=4, size=10)  # fmt: skip
SINGLE = Context(params={"q": "v"}, job_name="j")

SIMPLE = [
    "echo {{ params.q }} {{ array.index }}/{{array.size}} {{ params.q | raw }}",
    "{{ params.f }} {{ params.x }} {{ job.name }} {{ job.id }} {{ job.attempt }}",
    "no values at all {{ params.n }}\n",
]


@pytest.mark.parametrize("text", SIMPLE)
@pytest.mark.parametrize("shell", [True, False])
def test_the_fast_path_renders_what_jinja_renders(text: str, shell: bool) -> None:
    assert _simple_parts(text) is not None
    assert render(text, CTX, shell=shell, parameters={}) == _render_jinja(text, CTX, shell)


@pytest.mark.parametrize(
    "text", ["{{ '%04d' % array.index }}", "{% if params.f %}x{% endif %}", "{{ params.q|upper }}"]
)
def test_expressions_go_to_jinja(text: str) -> None:
    assert _simple_parts(text) is None
    assert render(text, CTX, shell=True, parameters={}) == _render_jinja(text, CTX, True)


@pytest.mark.parametrize(
    ("text", "ctx", "name"),
    [("{{ params.nope }}", CTX, "params.nope"), ("{{ array.index }}", SINGLE, "array.index")],
)
def test_unknown_names_are_errors_on_both_paths(text: str, ctx: Context, name: str) -> None:
    with pytest.raises(TemplateError) as fast:
        render(text, ctx, shell=True, parameters={})
    with pytest.raises(TemplateError) as slow:
        _render_jinja(text, ctx, True)
    assert fast.value.name == slow.value.name == name
