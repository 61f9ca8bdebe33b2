"""A pipeline as a Mermaid flowchart: for Markdown, READMEs and CI step summaries.

The same picture as the DOT output in Mermaid's vocabulary: arrays are subroutine
nodes (`[[...]]`) labelled with their size, whole-job edges solid, one-element edges
dotted and labelled `[7]`, N_TO_N edges thick and labelled `1:1`, SEQUENTIAL a dashed
self-loop. With a run's states, each node gets a `classDef` per state.

Node ids are `n0, n1, ...` in job-name order: job names may hold `-` and words such as
`end` that Mermaid's lexer treats specially, so names appear only inside quoted labels.
"""

from __future__ import annotations

from collections.abc import Mapping

from flowbatch.lang.compile import Plan
from flowbatch.outputs.graph import (
    NOT_IN_RUN,
    STATE_LOOK,
    EdgeKind,
    StateView,
    by_queue,
    edges,
    heading,
    made_from,
    queue_text,
    resources,
    state_line,
    title,
    what,
)
from flowbatch.outputs.jobview import visible
from flowbatch.run.state import JobState

ARROW: Mapping[EdgeKind, str] = {
    EdgeKind.WHOLE: "-->",
    EdgeKind.ELEMENT: "-.->",
    EdgeKind.N_TO_N: "==>",
    EdgeKind.SEQUENTIAL: "-->",  # dashed through linkStyle: Mermaid has no dashed arrow
}

_ESCAPES = str.maketrans(
    {
        "#": "#35;",
        "%": "#37;",  # `%%{init: ...}%%` is a directive wherever it stands
        '"': "#quot;",
        "&": "#amp;",
        "<": "#lt;",
        ">": "#gt;",
        "`": "#96;",
        "|": "#124;",
        "\n": " ",
    }
)


def text(value: str) -> str:
    """`value` safe inside a double-quoted Mermaid label (as entity codes), on one line
    whatever it holds: a CR or a line separator in a name must not end the Markdown
    code block the graph sits in (a step summary), and no `%%{` starts a directive."""
    return visible(value.translate(_ESCAPES))


def to_mermaid(
    plan: Plan,
    *,
    group_by_queue: bool = False,
    states: Mapping[str, StateView] | None = None,
    run: str | None = None,
) -> str:
    """The plan as a Mermaid `flowchart LR`, deterministic for a given plan and states.

    `group_by_queue` wraps each queue's jobs in a subgraph; `states` (job name ->
    StateView) styles nodes by the outcome of run `run` (named in a comment)."""
    names = sorted(plan.jobs())
    ids = {name: f"n{i}" for i, name in enumerate(names)}
    comment = visible(title(plan) + (f" · run {run}" if run else "")).replace("%", "#37;")
    out = ["flowchart LR", f"  %% {comment}"]
    if group_by_queue:
        for i, (queue, members) in enumerate(by_queue(plan, names)):
            out.append(f'  subgraph q{i}["{text(queue_text(plan, queue))}"]')
            out.extend("  " + _node(plan, name, ids[name], states) for name in members)
            out.append("  end")
    else:
        out.extend(_node(plan, name, ids[name], states) for name in names)
    dashed: list[int] = []
    for number, edge in enumerate(edges(plan)):
        label = f'|"{text(edge.label)}"|' if edge.label else ""
        out.append(f"  {ids[edge.tail]} {ARROW[edge.kind]}{label} {ids[edge.head]}")
        if edge.kind is EdgeKind.SEQUENTIAL:
            dashed.append(number)
    if dashed:
        out.append(f"  linkStyle {','.join(map(str, dashed))} stroke-dasharray:6 4")
    if states is not None:
        out.extend(_classes(names, ids, states))
    return "\n".join(out) + "\n"


def _node(plan: Plan, name: str, node_id: str, states: Mapping[str, StateView] | None) -> str:
    spec = plan.job(name)
    head = f"<b>{text(heading(spec))}</b>" + text(" " + made_from(spec)).rstrip()
    lines = [head, text(what(spec)), text(resources(spec))]
    if states is not None:
        view = states.get(name)
        lines.append(text(state_line(view)) if view is not None else "not in this run")
    label = "<br/>".join(line for line in lines if line)
    if spec.is_array:
        return f'  {node_id}[["{label}"]]'
    return f'  {node_id}("{label}")'


def _classes(
    names: list[str], ids: Mapping[str, str], states: Mapping[str, StateView]
) -> list[str]:
    """A classDef per state shown and the class of each node; jobs the run does not
    know keep Mermaid's default look, with a dashed border."""
    members: dict[JobState | None, list[str]] = {}  # None: not in this run
    for name in names:
        view = states.get(name)
        members.setdefault(None if view is None else view.shown_state(), []).append(ids[name])
    out = []
    for state in [*STATE_LOOK, None]:
        if state not in members:
            continue
        cls = "not_in_run" if state is None else state.value.lower()
        look = NOT_IN_RUN if state is None else STATE_LOOK[state]
        dash = ",stroke-dasharray:4 3" if look.dashed else ""
        out.append(
            f"  classDef {cls} fill:{look.fill},stroke:{look.border},"
            f"stroke-width:{look.width:g}px,color:#000000{dash}"
        )
        out.append(f"  class {','.join(members[state])} {cls}")
    return out
