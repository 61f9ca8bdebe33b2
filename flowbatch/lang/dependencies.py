"""Dependencies: `after = [job, job[i], n_to_n(job)]` read into `Dependency`s, and the
checks that need every job: unknown names, indexes in range, N_TO_N between arrays of
one size, at most 20 per job (AWS Batch's rules). Cycles are `compile`'s.
"""

from __future__ import annotations

from collections.abc import Mapping

import flowbatch.lang.syntax as s
from flowbatch.lang.diagnostics import Kind, did_you_mean
from flowbatch.lang.model import MAX_DEPENDENCIES, Dependency, DepKind, JobSpec
from flowbatch.lang.values import Collector, expect_list, expect_name, invalid


def check_dependencies(
    blocks: Mapping[str, s.Block], specs: Mapping[str, JobSpec], errors: Collector
) -> None:
    """Record an error for every dependency that names no job or breaks AWS's rules."""
    for name, spec in specs.items():
        if len(spec.after) > MAX_DEPENDENCIES:
            extra = spec.after[MAX_DEPENDENCIES]
            errors.error(
                Kind.TOO_MANY_DEPS,
                f"job `{name}` has {len(spec.after)} dependencies; "
                f"AWS Batch allows at most {MAX_DEPENDENCIES}",
                extra.span,
                hint="wait for an array, or add a fan-in job",
            )
        for dep in spec.after:
            _check_dependency(spec, dep, blocks, specs, errors)


def _check_dependency(
    spec: JobSpec,
    dep: Dependency,
    blocks: Mapping[str, s.Block],
    specs: Mapping[str, JobSpec],
    errors: Collector,
) -> None:
    target = specs.get(dep.job)
    if target is None:
        if dep.job not in blocks:  # a job that failed to build was reported already
            errors.error(
                Kind.UNKNOWN_NAME,
                f"unknown job `{dep.job}` in `after`",
                dep.span,
                hint=did_you_mean(dep.job, blocks, "job"),
            )
        return
    if dep.kind is DepKind.ELEMENT:
        assert dep.index is not None
        if target.array_size is None:
            errors.error(
                Kind.ARRAY_INDEX,
                f"`{dep}`: `{dep.job}` is not an array job",
                dep.span,
                hint=f"wait for the whole job: after = [{dep.job}]",
            )
        elif not 0 <= dep.index < target.array_size:
            errors.error(
                Kind.ARRAY_INDEX,
                f"`{dep}` is out of range: `{dep.job}` has {target.array_size} children",
                dep.span,
                hint=f"indexes run from 0 to {target.array_size - 1}",
            )
    elif dep.kind is DepKind.N_TO_N:
        if target.array_size is None or spec.array_size is None:
            which = spec.name if spec.array_size is None else dep.job
            errors.error(
                Kind.N_TO_N,
                f"`n_to_n({dep.job})` needs two arrays, but `{which}` is not an array job",
                dep.span,
                hint="n_to_n makes child i wait for child i: both jobs "
                "need `array` of the same size",
            )
        elif target.array_size != spec.array_size:
            errors.error(
                Kind.N_TO_N,
                f"`n_to_n({dep.job})` joins arrays of different "
                f"sizes: `{spec.name}` has {spec.array_size} children, "
                f"`{dep.job}` has {target.array_size}",
                dep.span,
                hint="give both the same `array` size (a shared param helps)",
            )


def parse_after(value: s.Value, key: str) -> tuple[Dependency, ...]:
    deps: list[Dependency] = []
    for item in expect_list(value, key):
        if isinstance(item, s.Ref) and len(item.parts) == 1:
            deps.append(Dependency(job=item.parts[0], span=item.span))
        elif isinstance(item, s.Index):
            deps.append(
                Dependency(job=item.name, kind=DepKind.ELEMENT, index=item.index, span=item.span)
            )
        elif isinstance(item, s.Call) and item.func == "n_to_n":
            target, _ = expect_name(item.arg, "n_to_n")
            deps.append(Dependency(job=target, kind=DepKind.N_TO_N, span=item.arg.span))
        elif isinstance(item, s.Call):
            raise invalid(
                f"unknown dependency type `{item.func}(...)`",
                item.func_span,
                hint=did_you_mean(item.func, ["n_to_n"], "dependency type"),
                kind=Kind.UNKNOWN_NAME,
            )
        else:
            raise invalid(
                f"a dependency is a job name, `job[i]` or `n_to_n(job)`, not {s.describe(item)}",
                item.span,
            )
    return tuple(deps)
