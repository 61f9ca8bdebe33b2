"""A pipeline as Graphviz DOT text: what `flowbatch graph` prints.

One node per job (arrays as a stacked `box3d` labelled with their size), one edge per
dependency, drawn so that each kind reads apart even in greyscale: whole-job solid,
one element dotted and labelled `[7]`, N_TO_N a bold double line labelled `1:1`,
SEQUENTIAL a dashed self-loop. A legend explains the kinds present. With a run's
states, nodes are filled by state and arrays show their children per state.
"""

from __future__ import annotations

from collections.abc import Mapping

from flowbatch.lang.compile import Plan
from flowbatch.outputs.graph import (
    LEGEND_TEXT,
    NOT_IN_RUN,
    STATE_LOOK,
    Edge,
    EdgeKind,
    Look,
    StateView,
    by_queue,
    edge_kinds,
    edges,
    heading,
    look_of,
    made_from,
    queue_text,
    resources,
    state_line,
    title,
    what,
)
from flowbatch.outputs.jobview import visible

FONT = "DejaVu Sans"
INK = "#404040"

EDGE_ATTRS: Mapping[EdgeKind, str] = {
    EdgeKind.WHOLE: "style=solid",
    EdgeKind.ELEMENT: "style=dotted, penwidth=1.6",
    # Three colours joined by ':' draw parallel lines: a double line.
    EdgeKind.N_TO_N: f'style=bold, color="{INK}:invis:{INK}"',
    EdgeKind.SEQUENTIAL: "style=dashed, dir=forward",
}

LEGEND_SAMPLE: Mapping[EdgeKind, str] = {
    EdgeKind.WHOLE: "───▶",
    EdgeKind.ELEMENT: "┈┈┈▶",
    EdgeKind.N_TO_N: "═══▶",
    EdgeKind.SEQUENTIAL: "╌╌╌↺",
}


def quote(text: str) -> str:
    """A DOT double-quoted id or string holding `text`, control characters written out:
    Graphviz copies it into SVG, where XML cannot hold them."""
    text = visible(text, keep="\n")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def html(text: str) -> str:
    """`text` safe inside a Graphviz HTML-like label (XML: no control characters)."""
    return (
        visible(text)
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
    )


def to_dot(
    plan: Plan,
    *,
    group_by_queue: bool = False,
    states: Mapping[str, StateView] | None = None,
    legend: bool = True,
    run: str | None = None,
) -> str:
    """The plan as DOT text, deterministic for a given plan and states.

    `group_by_queue` puts each queue's jobs in a cluster titled with the queue's
    priority and compute environments; `states` (job name -> StateView) colours nodes
    by the outcome of run `run` (named in the caption); `legend` adds a legend of the
    edge kinds (and states) shown.
    """
    names = sorted(plan.jobs())
    drawn = edges(plan)
    caption = title(plan) + (f" · run {run}" if run else "")
    out = [
        f"digraph {quote(title(plan))} {{",
        f'  graph [rankdir=LR, fontname="{FONT}", labelloc=t, labeljust=l,'
        f" nodesep=0.3, ranksep=0.55, fontsize=10,",
        f"    label={_header(caption, edge_kinds(drawn), states, names, legend)}];",
        f'  node [shape=box, style="rounded,filled", fillcolor="#ffffff", color="{INK}",'
        f' fontname="{FONT}", fontsize=10, margin="0.14,0.06"];',
        f'  edge [color="{INK}", fontname="{FONT}", fontsize=9, arrowsize=0.7];',
    ]
    if group_by_queue:
        for queue, members in by_queue(plan, names):
            out.append(f"  subgraph {quote(f'cluster_{queue}')} {{")
            out.append(
                f'    graph [label=<{html(queue_text(plan, queue))}>, style="rounded,dashed",'
                f' color="#808080", fontsize=10, margin=12];'
            )
            out.extend("  " + _node(plan, name, states) for name in members)
            out.append("  }")
    else:
        out.extend(_node(plan, name, states) for name in names)
    out.extend(_edge(edge) for edge in drawn)
    out.append("}")
    return "\n".join(out) + "\n"


def _node(plan: Plan, name: str, states: Mapping[str, StateView] | None) -> str:
    spec = plan.job(name)
    lines = [f"<b>{html(heading(spec))}</b>" + html(" " + made_from(spec)).rstrip()]
    small = [what(spec), resources(spec)]
    attrs: list[str] = []
    if spec.is_array:
        attrs.append('shape=box3d, style="filled", margin="0.18,0.1"')
    if states is not None:
        view = states.get(name)
        small.append(state_line(view) if view is not None else "not in this run")
        attrs.append(_look(look_of(view), rounded=not spec.is_array))
    lines.extend(f'<font point-size="9">{html(text)}</font>' for text in small if text)
    attrs.insert(0, f"label=<{'<br/>'.join(lines)}>")
    return f"  {quote(name)} [{', '.join(attrs)}];"


def _look(look: Look, *, rounded: bool) -> str:
    style = ["rounded"] if rounded else []
    style += ["filled"] + (["dashed"] if look.dashed else [])
    return (
        f'style="{",".join(style)}", fillcolor="{look.fill}", color="{look.border}",'
        f" penwidth={look.width:g}"
    )


def _edge(edge: Edge) -> str:
    attrs = EDGE_ATTRS[edge.kind]
    if edge.label:
        attrs += f", label={quote(' ' + edge.label + ' ')}"
    return f"  {quote(edge.tail)} -> {quote(edge.head)} [{attrs}];"


def _header(
    caption: str,
    kinds: list[EdgeKind],
    states: Mapping[str, StateView] | None,
    names: list[str],
    legend: bool,
) -> str:
    """The graph's label: the caption, then a legend of the edge kinds drawn and, for a
    run, the states shown. Being a label, it takes no part in the layout."""
    rows = [f'<tr><td align="left"><b>{html(caption)}</b></td></tr>']
    if legend and kinds:
        cells = "".join(
            f'<td align="left">{html(LEGEND_SAMPLE[kind] + " " + LEGEND_TEXT[kind])}</td>'
            for kind in kinds
        )
        rows.append(
            f'<tr><td align="left"><table border="0" cellspacing="6"><tr>{cells}'
            "</tr></table></td></tr>"
        )
    if legend and states is not None:
        present = {states[n].shown_state() if n in states else None for n in names}
        cells = "".join(
            f'<td bgcolor="{look.fill}" color="{look.border}" border="1" style="rounded">'
            f"{state.value.lower()}</td>"
            for state, look in STATE_LOOK.items()
            if state in present
        )
        if None in present:
            cells += (
                f'<td color="{NOT_IN_RUN.border}" border="1" style="rounded">not in this run</td>'
            )
        rows.append(
            f'<tr><td align="left"><table border="0" cellspacing="6"><tr>{cells}'
            "</tr></table></td></tr>"
        )
    return f'<<table border="0" cellspacing="0" cellpadding="1">{"".join(rows)}</table>>'
