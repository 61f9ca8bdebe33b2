"""Compile a checked `Pipeline` into a frozen `Plan`: the job DAG, its order, its cycles.

An array job is one node, whatever its size, so planning cost grows with the number of
stages, not the number of processes.

The DAG is kept in plain tuples (graphlib orders it), so flowbatch needs no graph library;
`Plan.digraph()` builds a networkx view on demand for a caller who wants graph algorithms,
and networkx is an optional extra for it (`pip install 'flowbatch[networkx]'`).
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from flowbatch.lang.diagnostics import FlowError
from flowbatch.lang.model import ComputeEnv, Dependency, JobSpec, ParamValue, Pipeline, Queue

if TYPE_CHECKING:
    import networkx as nx


class Plan:
    """A pipeline ready to run: read-only, with the DAG's order precomputed."""

    __slots__ = ("_critical", "_dependents", "_deps", "_order", "pipeline")

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        jobs = pipeline.jobs
        deps = {name: spec.after for name, spec in jobs.items()}
        dependents: dict[str, list[str]] = {name: [] for name in jobs}
        for name, spec in jobs.items():
            for dep_job in dict.fromkeys(d.job for d in spec.after):
                dependents[dep_job].append(name)
        self._deps: Mapping[str, tuple[Dependency, ...]] = MappingProxyType(deps)
        self._dependents: Mapping[str, tuple[str, ...]] = MappingProxyType(
            {name: tuple(sorted(ds)) for name, ds in dependents.items()}
        )
        self._order = _topological_order(pipeline)
        self._critical = _critical_path(self._order, jobs, self._dependents)

    # -- the pipeline's parts ---------------------------------------------------------
    @property
    def path(self) -> str:
        return self.pipeline.path

    @property
    def params(self) -> Mapping[str, ParamValue]:
        return self.pipeline.params

    @property
    def queues(self) -> Mapping[str, Queue]:
        return self.pipeline.queues

    @property
    def computes(self) -> Mapping[str, ComputeEnv]:
        return self.pipeline.computes

    def job(self, name: str) -> JobSpec:
        return self.pipeline.jobs[name]

    def __contains__(self, name: object) -> bool:
        return name in self.pipeline.jobs

    def __len__(self) -> int:
        return len(self.pipeline.jobs)

    # -- the DAG ------------------------------------------------------------------------
    def jobs(self) -> tuple[str, ...]:
        """Every job, in topological order (ties in source order)."""
        return self._order

    def deps(self, name: str) -> tuple[Dependency, ...]:
        """What `name` waits for, as written."""
        return self._deps[name]

    def dependents(self, name: str) -> tuple[str, ...]:
        """The jobs that wait for `name`, sorted by name."""
        return self._dependents[name]

    def critical_path(self, name: str) -> int:
        """The length of the longest chain of work from `name` to the end of the pipeline,
        counting a sequential array as its size and any other job as 1. The scheduler
        starts the runnable job with the longest critical path first."""
        return self._critical[name]

    def process_count(self) -> int:
        """How many processes the pipeline stands for (array children counted)."""
        return sum(spec.size for spec in self.pipeline.jobs.values())

    def digraph(self) -> nx.DiGraph:
        """A new networkx DiGraph of the plan: nodes carry `spec`, edges carry `deps`."""
        try:
            import networkx as nx
        except ImportError as exc:
            raise ImportError(
                "Plan.digraph() needs networkx, an optional extra: "
                "pip install 'flowbatch[networkx]'"
            ) from exc

        graph: nx.DiGraph = nx.DiGraph()
        for name in self._order:
            graph.add_node(name, spec=self.job(name))
        for name in self._order:
            for dep in self._deps[name]:
                if graph.has_edge(dep.job, name):
                    graph.edges[dep.job, name]["deps"] += (dep,)
                else:
                    graph.add_edge(dep.job, name, deps=(dep,))
        return graph


def compile_pipeline(pipeline: Pipeline) -> Plan:
    """The Plan of a checked pipeline; raises FlowError(Kind.CYCLE) showing the cycle."""
    return Plan(pipeline)


def _topological_order(pipeline: Pipeline) -> tuple[str, ...]:
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    position = {name: i for i, name in enumerate(pipeline.jobs)}
    for name, spec in pipeline.jobs.items():
        sorter.add(name, *(d.job for d in spec.after))
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        raise _cycle_error(pipeline, list(exc.args[1])) from None
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    return tuple(order)


def _cycle_error(pipeline: Pipeline, cycle: list[str]) -> FlowError:
    from flowbatch.lang.messages import flow_error  # on an error only

    # graphlib lists the cycle against the edges (each waits for the one before it);
    # show it as written: "a waits for b waits for ... a", starting at the job that
    # comes first in the source so the message is the same on every run.
    names = list(reversed(cycle[:-1]))
    position = {name: i for i, name in enumerate(pipeline.jobs)}
    start = min(range(len(names)), key=lambda i: position[names[i]])
    names = names[start:] + names[:start]
    loop = (*names, names[0])
    first, second = loop[0], loop[1]
    dep = next(d for d in pipeline.jobs[first].after if d.job == second)
    return flow_error("dependency-cycle", dep.span or pipeline.jobs[first].span, cycle=loop)


def _critical_path(
    order: tuple[str, ...],
    jobs: Mapping[str, JobSpec],
    dependents: Mapping[str, tuple[str, ...]],
) -> Mapping[str, int]:
    length: dict[str, int] = {}
    for name in reversed(order):
        spec = jobs[name]
        own = spec.size if spec.sequential else 1
        length[name] = own + max((length[d] for d in dependents[name]), default=0)
    return MappingProxyType(length)
