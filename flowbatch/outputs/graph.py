"""Drawing a pipeline: a Plan (optionally coloured by one run's job states) as Graphviz
DOT, Mermaid or JSON text, and DOT as SVG or PNG through Graphviz's `dot` program.

Every output is deterministic: jobs are sorted by name and used (quoted) as ids, edges
are sorted, and nothing depends on addresses, clocks or the source order of jobs. An
array job is one node whatever its size, so drawing is linear in the number of jobs
and dependencies.

`StateView` is how a caller (the CLI, reading the store) tells the renderers what
happened to each job in a run; this module never reads the store itself.
"""

from __future__ import annotations

import enum
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from types import MappingProxyType
from typing import Literal

from flowbatch.errors import FlowbatchError
from flowbatch.lang.compile import Plan
from flowbatch.lang.model import DepKind, JobSpec
from flowbatch.run.state import JobState

S = JobState
STATES = tuple(JobState)
"""AWS Batch's job states, in lifecycle order (the order of per-state counts)."""

NO_COUNTS: Mapping[JobState, int] = MappingProxyType({})


class RenderError(FlowbatchError):
    """Drawing failed outside flowbatch: `dot` is missing or rejected its input."""

    exit_code = 1  # the input was fine; a program flowbatch relies on failed


@dataclass(frozen=True, slots=True)
class StateView:
    """One job's outcome in a run: its status (a `JobState` value) and, for an array
    job, how many children are in each state (AWS's arrayProperties.statusSummary)."""

    status: JobState
    counts: Mapping[JobState, int] = field(default_factory=lambda: NO_COUNTS)

    def shown_state(self) -> JobState:
        """The state to colour the node by. An unfinished array parent is only ever
        PENDING (AWS), which would hide progress: show its most advanced live child."""
        if self.status.done or not self.counts:
            return self.status
        for state in (S.RUNNING, S.STARTING, S.RUNNABLE):
            if self.counts.get(state, 0) > 0:
                return state
        return self.status


@dataclass(frozen=True, slots=True)
class Look:
    """How a node in some state is painted. Fills differ in lightness and borders in
    width and dash, so that states stay apart in greyscale too."""

    fill: str
    border: str
    width: float = 1.0
    dashed: bool = False


STATE_LOOK: Mapping[JobState, Look] = MappingProxyType(
    {
        S.SUBMITTED: Look("#eeeeee", "#666666", dashed=True),
        S.PENDING: Look("#eeeeee", "#666666", dashed=True),
        S.RUNNABLE: Look("#fff2cc", "#bf9000"),
        S.STARTING: Look("#ffe599", "#bf9000"),
        S.RUNNING: Look("#6fa8dc", "#0b5394", width=2.0),
        S.SUCCEEDED: Look("#b6d7a8", "#38761d"),
        S.FAILED: Look("#e06666", "#990000", width=3.0),
    }
)
NOT_IN_RUN = Look("#ffffff", "#999999", dashed=True)
"""A job of the pipeline that the run has no record of (the file changed since)."""


def look_of(view: StateView | None) -> Look:
    if view is None:
        return NOT_IN_RUN
    return STATE_LOOK.get(view.shown_state(), NOT_IN_RUN)


class EdgeKind(enum.Enum):
    """How one job waits for another, as drawn."""

    WHOLE = "whole"  # after = [job]: every child of it succeeded
    ELEMENT = "element"  # after = [job[7]]
    N_TO_N = "n_to_n"  # after = [n_to_n(job)]: child i waits for child i
    SEQUENTIAL = "sequential"  # sequential = true: child i waits for child i-1 (a self-loop)


_KIND_OF = {
    DepKind.WHOLE: EdgeKind.WHOLE,
    DepKind.ELEMENT: EdgeKind.ELEMENT,
    DepKind.N_TO_N: EdgeKind.N_TO_N,
}

LEGEND_TEXT: Mapping[EdgeKind, str] = MappingProxyType(
    {
        EdgeKind.WHOLE: "after = [job]: waits for all of it",
        EdgeKind.ELEMENT: "after = [job[i]]: waits for one child",
        EdgeKind.N_TO_N: "n_to_n(job): child i waits for child i",
        EdgeKind.SEQUENTIAL: "sequential: child i waits for child i-1",
    }
)


@dataclass(frozen=True, slots=True)
class Edge:
    """One drawn dependency: `head` waits for `tail` (a self-loop for SEQUENTIAL)."""

    tail: str
    head: str
    kind: EdgeKind
    index: int | None = None  # the element of an ELEMENT edge

    @property
    def label(self) -> str:
        if self.kind is EdgeKind.ELEMENT:
            return f"[{self.index}]"
        if self.kind is EdgeKind.N_TO_N:
            return "1:1"
        if self.kind is EdgeKind.SEQUENTIAL:
            return "i-1 → i"
        return ""


_KIND_ORDER = {kind: i for i, kind in enumerate(EdgeKind)}


def _edge_key(edge: Edge) -> tuple[str, str, int, int]:
    return (edge.tail, edge.head, _KIND_ORDER[edge.kind], -1 if edge.index is None else edge.index)


def edges(plan: Plan) -> list[Edge]:
    """Every dependency of the plan once, sorted by (tail, head, kind, index);
    a sequential array gets a self-loop."""
    found: set[Edge] = set()
    for name in plan.jobs():
        spec = plan.job(name)
        if spec.sequential:
            found.add(Edge(name, name, EdgeKind.SEQUENTIAL))
        for dep in spec.after:
            index = dep.index if dep.kind is DepKind.ELEMENT else None
            found.add(Edge(dep.job, name, _KIND_OF[dep.kind], index))
    return sorted(found, key=_edge_key)


def edge_kinds(drawn: list[Edge]) -> list[EdgeKind]:
    """The kinds present among `drawn`, in EdgeKind order (what a legend must explain)."""
    present = {e.kind for e in drawn}
    return [kind for kind in EdgeKind if kind in present]


# -- the words on a node ----------------------------------------------------------------


def title(plan: Plan) -> str:
    """The pipeline file's name: never its absolute path, which differs between machines.
    A name that is not valid UTF-8 shows U+FFFD for its bad bytes: it is written out as
    UTF-8 (SVG, JSON, a step summary), which cannot hold the lone surrogates Python
    keeps them as."""
    return os.fsencode(PurePath(plan.path).name).decode("utf-8", "replace")


def heading(spec: JobSpec) -> str:
    """`frames [24]`, `migrate [5] sequential`, or the job's name."""
    if not spec.is_array:
        return spec.name
    return f"{spec.name} [{spec.array_size}]" + (" sequential" if spec.sequential else "")


def what(spec: JobSpec, width: int = 32) -> str:
    """What the job runs: the first words of its command, cut at a word boundary near
    `width` characters (`…` marks a cut)."""
    if isinstance(spec.command, str):
        text = " ".join(spec.command.split())
    else:
        text = " ".join(spec.command)
    if len(text) <= width:
        return text
    cut = text.rfind(" ", 0, width + 1)
    return text[: cut if cut > width // 2 else width] + " …"


def made_from(spec: JobSpec) -> str:
    """`: definition`, as written after `job NAME`, or '' for a job made from none."""
    return f": {spec.definition}" if spec.definition is not None else ""


def resources(spec: JobSpec) -> str:
    """`2 vCPU · 2 GiB`, with GPUs and the container image when there are any."""
    parts = [f"{_number(spec.vcpus)} vCPU", memory_text(spec.memory)]
    if spec.gpus:
        parts.append(f"{spec.gpus} GPU")
    if spec.image:
        parts.append(spec.image)
    return " · ".join(parts)


def memory_text(mib: int) -> str:
    if mib >= 1024 and (mib * 10) % 1024 == 0:  # a whole number of tenths: 1.5 GiB
        return f"{mib / 1024:g} GiB"
    return f"{mib} MiB"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


_SYMBOL = {S.SUCCEEDED: "✓", S.FAILED: "✗"}
# Done first, then the live states from the furthest along, failures last.
_COUNT_ORDER = (S.SUCCEEDED, S.RUNNING, S.STARTING, S.RUNNABLE, S.PENDING, S.SUBMITTED, S.FAILED)


def counts_text(counts: Mapping[JobState, int]) -> str:
    """`20 ✓ 3 running 1 ✗`: children per state, zeros left out."""
    parts = []
    for state in _COUNT_ORDER:
        n = counts.get(state, 0)
        if n:
            parts.append(f"{n} {_SYMBOL.get(state, state.value.lower())}")
    return " ".join(parts)


def state_line(view: StateView) -> str:
    """The run's outcome as a node's last line."""
    return counts_text(view.counts) if view.counts else view.status.value.lower()


def queue_text(plan: Plan, queue: str) -> str:
    """`queue render · priority 10 · workstation, cluster`."""
    q = plan.queues.get(queue)
    if q is None:
        return f"queue {queue}"
    disabled = " · disabled" if q.state == "disabled" else ""
    return f"queue {q.name} · priority {q.priority} · {', '.join(q.compute)}{disabled}"


def by_queue(plan: Plan, names: list[str]) -> Iterator[tuple[str, list[str]]]:
    """The sorted `names` grouped by queue, queues sorted by name."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(plan.job(name).queue, []).append(name)
    for queue in sorted(groups):
        yield queue, groups[queue]


# -- JSON ---------------------------------------------------------------------------------


def to_json(plan: Plan, states: Mapping[str, StateView] | None = None) -> str:
    """Nodes, edges and queues as JSON with sorted keys: for tools and CI summaries."""
    nodes = []
    for name in sorted(plan.jobs()):
        spec = plan.job(name)
        node: dict[str, object] = {
            "name": name,
            "kind": "array" if spec.is_array else "job",
            "size": spec.size,
            "sequential": spec.sequential,
            "queue": spec.queue,
            "definition": spec.definition,
            "command": spec.command if isinstance(spec.command, str) else list(spec.command),
            "image": spec.image,
            "vcpus": spec.vcpus,
            "memory": spec.memory,
            "gpus": spec.gpus,
        }
        if states is not None and name in states:
            view = states[name]
            counts = {state.value: n for state, n in view.counts.items()}
            node["state"] = {"status": view.status.value, "counts": counts}
        nodes.append(node)
    drawn = [
        {"from": e.tail, "to": e.head, "kind": e.kind.value}
        | ({"index": e.index} if e.kind is EdgeKind.ELEMENT else {})
        for e in edges(plan)
    ]
    queues = [
        {"name": q.name, "priority": q.priority, "compute": list(q.compute), "state": q.state}
        for q in sorted(plan.queues.values(), key=lambda q: q.name)
    ]
    doc = {"pipeline": title(plan), "nodes": nodes, "edges": drawn, "queues": queues}
    return json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


# -- images through Graphviz -----------------------------------------------------------------


def dot_to_image(dot_text: str, fmt: Literal["svg", "png"], *, timeout: float = 300) -> bytes:
    """`dot_text` drawn by Graphviz's `dot` program; raises RenderError when `dot` is not
    installed or fails."""
    program = shutil.which("dot")
    if program is None:
        raise RenderError(
            "Graphviz's `dot` program is not on PATH; install Graphviz "
            "(Debian: apt-get install graphviz fonts-dejavu-core), "
            "or write .dot, .mmd or .json instead"
        )
    try:
        done = subprocess.run(
            [program, f"-T{fmt}"],
            input=dot_text.encode(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RenderError(f"`dot -T{fmt}` took longer than {timeout:g} s") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        raise RenderError(f"`dot -T{fmt}` failed (exit {done.returncode}): {message}")
    return done.stdout
