"""Dependencies: `after = [job, job[i], n_to_n(job)]` read into `Dependency`s, and the
checks that need every job: unknown names, indexes in range, N_TO_N between arrays of
one size, at most 20 per job (AWS Batch's rules). Cycles are `compile`'s.
"""

from __future__ import annotations

from collections.abc import Mapping

import flowbatch.lang.syntax as s
from flowbatch.lang.model import MAX_DEPENDENCIES, Dependency, DepKind, JobSpec
from flowbatch.lang.values import Collector, expect_list, expect_name, invalid


def check_dependencies(
    blocks: Mapping[str, s.Block], specs: Mapping[str, JobSpec], errors: Collector
) -> None:
    """Record an error for every dependency that names no job or breaks AWS's rules."""
    for name, spec in specs.items():
        if len(spec.after) > MAX_DEPENDENCIES:
            extra = spec.after[MAX_DEPENDENCIES]
            errors.report(
                "too-many-dependencies",
                extra.span,
                job=name,
                count=len(spec.after),
                limit=MAX_DEPENDENCIES,
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
            errors.report("unknown-after", dep.span, name=dep.job, known=blocks)
        return
    if dep.kind is DepKind.ELEMENT:
        assert dep.index is not None
        if target.array_size is None:
            errors.report("index-of-non-array", dep.span, dependency=str(dep), job=dep.job)
        elif not 0 <= dep.index < target.array_size:
            errors.report(
                "index-out-of-range",
                dep.span,
                dependency=str(dep),
                job=dep.job,
                size=target.array_size,
            )
    elif dep.kind is DepKind.N_TO_N:
        if target.array_size is None or spec.array_size is None:
            which = spec.name if spec.array_size is None else dep.job
            errors.report("n-to-n-non-array", dep.span, job=dep.job, which=which)
        elif target.array_size != spec.array_size:
            errors.report(
                "n-to-n-sizes",
                dep.span,
                job=dep.job,
                name=spec.name,
                size=spec.array_size,
                other_size=target.array_size,
            )


def parse_after(value: s.Value, key: str) -> tuple[Dependency, ...]:
    deps: list[Dependency] = []
    for item in expect_list(value, key):
        if isinstance(item, s.Ref) and len(item.parts) == 1:
            deps.append(Dependency(job=item.parts[0], span=item.span.copy()))
        elif isinstance(item, s.Index):
            deps.append(
                Dependency(
                    job=item.name, kind=DepKind.ELEMENT, index=item.index, span=item.span.copy()
                )
            )
        elif isinstance(item, s.Call) and item.func == "n_to_n":
            target, _ = expect_name(item.arg, "n_to_n")
            deps.append(Dependency(job=target, kind=DepKind.N_TO_N, span=item.arg.span.copy()))
        elif isinstance(item, s.Call):
            raise invalid(
                "unknown-dependency-type", item.func_span, name=item.func, known=["n_to_n"]
            )
        else:
            raise invalid("dependency-shape", item.span, got=s.describe(item))
    return tuple(deps)


def depends_on(spec: JobSpec, job_ids: Mapping[str, str]) -> list[dict[str, str]]:
    """`after` (and `sequential`) as AWS's dependsOn: the ids `job_ids` gives the jobs
    waited for, with type N_TO_N or SEQUENTIAL where so (the store shows it, `submit`
    sends it)."""
    out: list[dict[str, str]] = []
    for dep in spec.after:
        target = job_ids[dep.job]
        if dep.kind is DepKind.ELEMENT:
            out.append({"jobId": f"{target}:{dep.index}"})
        elif dep.kind is DepKind.N_TO_N:
            out.append({"jobId": target, "type": "N_TO_N"})
        else:
            out.append({"jobId": target})
    if spec.sequential:
        out.append({"type": "SEQUENTIAL"})
    return out
