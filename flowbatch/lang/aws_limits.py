"""AWS Batch's fixed limits, for the jobs a pipeline sends to an `aws_batch` compute
environment (or every job, under `flowbatch validate --target aws`).

The language already holds every job to the limits AWS shares with it (2 to 10,000
array children, at most 20 dependencies, 1 to 10 attempts and 5 `evaluate_on_exit`
rules, names of at most 128 of `[A-Za-z0-9_-]`, no `AWS_BATCH*` variables). What
only AWS asks is checked here, so that a run finds it before anything is submitted,
not from a ClientException halfway through: a container `image` on every job, a
`timeout` of at least 60 seconds, whole vCPUs (EC2) and at least 4 MiB of memory,
retry patterns in AWS's alphabet, and tags AWS can hold next to flowbatch's own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import flowbatch.lang.syntax as s
from flowbatch.lang.model import ComputeEnv, JobSpec, Queue
from flowbatch.lang.values import Collector

MIN_TIMEOUT = 60  # seconds: AWS's attemptDurationSeconds
MIN_MEMORY = 4  # MiB: "You must specify at least 4 MiB of memory for a job"
MAX_TAGS = 50  # per resource; flowbatch adds two of its own (`flowbatch:` keys)
FLOWBATCH_TAGS = 2  # flowbatch:pipeline, and flowbatch:digest or flowbatch:run
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
# onStatusReason / onReason: letters, numbers, periods, colons and white space,
# optionally ending in `*` (length and the `*` are checked for every target).
_REASON_PATTERN = re.compile(r"[A-Za-z0-9.: \t]*\*?")
# Tag keys and values: letters, numbers, spaces and `_ . : / = + - @` (AWS's rule).
_TAG_TEXT = re.compile(r"[\w .:/=+\-@]*")


@dataclass(frozen=True, slots=True)
class AwsTarget:
    """Which jobs go to AWS Batch: those whose queue lists an `aws_batch` compute
    environment once `overrides` (`--compute OLD=NEW`) are applied, or every job
    (`every_job`, `validate --target aws`)."""

    every_job: bool = False
    images: bool = True  # whether `every_job` needs an image (not on a flowbatch server)
    overrides: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def aims(self, queue: Queue, computes: Mapping[str, ComputeEnv]) -> bool:
        if self.every_job:
            return True
        for name in queue.compute:
            ce = computes.get(self.overrides.get(name, name))
            if ce is not None and ce.type == "aws_batch":
                return True
        return False

    def needs_image(self, queue: Queue, computes: Mapping[str, ComputeEnv]) -> bool:
        """Whether the queue's jobs must name an image: AWS Batch runs nothing else, but
        an `endpoint` of one's own may not be AWS (a flowbatch server runs a job without
        an image on its machine, as a `.flow` file's local jobs run)."""
        if self.every_job:
            return self.images
        for name in queue.compute:
            ce = computes.get(self.overrides.get(name, name))
            if ce is not None and ce.type == "aws_batch" and not ce.options.get("endpoint"):
                return True
        return False


def check_job(
    spec: JobSpec, entries: Mapping[str, s.Entry], errors: Collector, *, image: bool = True
) -> None:
    """Report what AWS Batch would refuse of `spec`; `entries` are its attributes as
    written (merged with its definitions'), for the spans. `image`: whether it must
    name one (see `AwsTarget.needs_image`)."""

    def at(key: str) -> s.Value | None:
        entry = entries.get(key)
        return None if entry is None else entry.value

    if image and spec.image is None:
        errors.report("aws-no-image", spec.span, job=spec.name)
    timeout = at("timeout")
    if spec.timeout is not None and spec.timeout < MIN_TIMEOUT and timeout is not None:
        errors.report(
            "aws-timeout", timeout.span, job=spec.name, seconds=spec.timeout, limit=MIN_TIMEOUT
        )
    vcpus = at("vcpus")
    if vcpus is not None and (not float(spec.vcpus).is_integer() or spec.vcpus < 1):
        errors.report("aws-vcpus", vcpus.span, job=spec.name, vcpus=spec.vcpus)
    memory = at("memory")
    if memory is not None and spec.memory < MIN_MEMORY:
        errors.report(
            "aws-memory", memory.span, job=spec.name, memory=spec.memory, limit=MIN_MEMORY
        )
    retry = at("retry")
    if isinstance(retry, s.Map):
        _check_patterns(retry, errors)
    tags = at("tags")
    if isinstance(tags, s.Map):
        _check_tags(tags, errors)


def _check_patterns(retry: s.Map, errors: Collector) -> None:
    rules = retry.get("evaluate_on_exit")
    if rules is None or not isinstance(rules.value, s.List):
        return
    for item in rules.value.items:
        if not isinstance(item, s.Map):
            continue
        for key in ("on_status_reason", "on_reason"):
            entry = item.get(key)
            if entry is None or not isinstance(entry.value, s.Str):
                continue
            text = entry.value.value
            if not _REASON_PATTERN.fullmatch(text):
                bad = next(c for c in text if not _REASON_PATTERN.fullmatch(c))
                errors.report("aws-pattern", entry.value.span, name=key, text=text, char=bad)


def _check_tags(tags: s.Map, errors: Collector) -> None:
    room = MAX_TAGS - FLOWBATCH_TAGS
    if len(tags.entries) > room:
        errors.report("aws-tag-count", tags.entries[room].span, count=len(tags.entries), limit=room)
    for entry in tags.entries:
        value = entry.value.value if isinstance(entry.value, s.Str) else None
        if entry.key.lower().startswith(("aws:", "flowbatch:")):
            errors.report("aws-tag-reserved", entry.key_span, key=entry.key)
        elif len(entry.key) > MAX_TAG_KEY or not _TAG_TEXT.fullmatch(entry.key):
            errors.report("aws-tag-text", entry.key_span, what="key", limit=MAX_TAG_KEY)
        elif value is not None and (len(value) > MAX_TAG_VALUE or not _TAG_TEXT.fullmatch(value)):
            errors.report("aws-tag-text", entry.value.span, what="value", limit=MAX_TAG_VALUE)
