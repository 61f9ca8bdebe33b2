"""The words of every error flowbatch finds in a pipeline, in one table.

A check says *what* it found and the facts (`flow_error("unknown-queue", span,
name=..., known=...)`); this table turns those facts into the message and the hint.
The facts stay on the error as its `detail`, so that a test, an editor or a later
output reads them without parsing text. `diagnostics.render` gives the text its shape
(path:line:col, the line, a caret, the hint).

The checks import this module on their first error only: a valid pipeline (and so
`flowbatch validate`'s start-up) never pays for the words.

Syntax errors are worded by `parse_errors` (what the parser expected, in words), and a
template's own error by `template`: each is the one place for its family.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flowbatch.lang.diagnostics import FlowError, Kind, Span, did_you_mean

Facts = Mapping[str, Any]
Words = Callable[[Facts], str]
Hint = Callable[[Facts], str | None]


@dataclass(frozen=True, slots=True)
class Message:
    kind: Kind
    text: Words
    hint: Hint | None = None


def _arrows(names: Iterable[str]) -> str:
    return " -> ".join(f"`{n}`" for n in names)


def _fixed(text: str) -> Words:
    return lambda _d: text


def _suggest(what: str) -> Words:
    """The hint of a failed lookup of `d["name"]` among `d["known"]`."""
    return lambda d: did_you_mean(d["name"], d["known"], what)


def _import_chain(d: Facts) -> str:
    shown = [f"`{p}`" for p in d["chain"]]
    if len(shown) > 5:
        shown = [*shown[:2], "...", *shown[-2:]]
    return f"imports nested more than {d['limit']} deep: " + " -> ".join(shown)


def _override_hint(d: Facts) -> str:
    hint = f"give a value like its default here, e.g. -p {d['param']}={d['example']}"
    if d["as_in_files"]:
        hint += "; numbers are written as in a .flow file: digits with an optional"
        hint += " `.` fraction, no sign, exponent, `_` or spaces"
    return hint


def _not_a_pipeline(max_mib: int) -> str:
    return f"an import names a `.flow` file: UTF-8 text of at most {max_mib} MiB"


def _template_hint(d: Facts) -> str | None:
    """What to do about a template that fails: for an unknown name, what is known."""
    name: str | None = d["name"]
    if not name:
        return d["own_hint"]  # type: ignore[no-any-return]
    if name.startswith("array.") and not d["is_array"]:
        return f"`{d['job']}` is not an array job; `array.*` exists in arrays only"
    if name.startswith("params."):
        return did_you_mean(name.split(".", 1)[1], d["params"], "parameter")
    if name.startswith("Ref::"):
        known = did_you_mean(name[5:], d["parameters"], "parameter")
        return f"placeholders are filled from the job's `parameters`; {known}"
    return (
        "templates can use params.NAME, array.index, array.size, job.name, job.id and job.attempt"
    )


_RELATIVE = "import paths are relative to the importing file"

# what -> its kind and words; `d` is the error's detail (its facts).
MESSAGES: Mapping[str, Message] = {
    # -- reading and importing files --------------------------------------------------
    "unreadable-file": Message(Kind.IMPORT, lambda d: f"cannot read `{d['path']}`: {d['why']}"),
    "unreadable-import": Message(
        Kind.IMPORT,
        lambda d: f"cannot import `{d['target']}`: {d['why']}",
        lambda d: _not_a_pipeline(d["max_mib"]) if d["not_a_pipeline"] else _RELATIVE,
    ),
    "import-cycle": Message(
        Kind.IMPORT_CYCLE,
        lambda d: "imports form a cycle: " + _arrows(d["cycle"]),
        _fixed("move what both files need into a third file that both import"),
    ),
    "imports-too-deep": Message(
        Kind.TOO_DEEP,
        _import_chain,
        lambda d: (
            f"a chain of imports is at most {d['limit']} files long; "
            "import the files you need from fewer levels"
        ),
    ),
    "imported-job": Message(
        Kind.IMPORT,
        lambda d: f"job `{d['name']}` is in an imported file",
        _fixed(
            "an import brings in definitions, queues and compute "
            "environments; declare jobs in the pipeline file itself"
        ),
    ),
    # -- the shape of the text ----------------------------------------------------------
    "nested-too-deep": Message(
        Kind.TOO_DEEP,
        lambda d: f"nested more than {d['limit']} deep",
        lambda d: f"lists and maps may be nested at most {d['limit']} deep",
    ),
    "key-set-twice": Message(
        Kind.DUPLICATE,
        lambda d: f"{d['what']} `{d['key']}` is set twice",
        lambda d: (
            f"first set on line {d['first'].line}, column {d['first'].col}; "
            f"a {'block' if d['what'] == 'attribute' else 'map'} sets each key once"
        ),
    ),
    # -- names ----------------------------------------------------------------------------
    "defined-twice": Message(
        Kind.DUPLICATE,
        lambda d: f"{d['what']} `{d['name']}` is defined twice",
        lambda d: f"first defined at {d['first'].path}:{d['first'].line}",
    ),
    "unknown-compute": Message(
        Kind.UNKNOWN_NAME,
        lambda d: f"unknown compute environment `{d['name']}`",
        _suggest("compute environment"),
    ),
    "unknown-queue": Message(
        Kind.UNKNOWN_NAME, lambda d: f"unknown queue `{d['name']}`", _suggest("queue")
    ),
    "unknown-definition": Message(
        Kind.UNKNOWN_NAME, lambda d: f"unknown definition `{d['name']}`", _suggest("definition")
    ),
    "unknown-after": Message(
        Kind.UNKNOWN_NAME, lambda d: f"unknown job `{d['name']}` in `after`", _suggest("job")
    ),
    "unknown-parameter": Message(
        Kind.UNKNOWN_NAME, lambda d: f"unknown parameter `{d['name']}`", _suggest("parameter")
    ),
    "unknown-dependency-type": Message(
        Kind.UNKNOWN_NAME,
        lambda d: f"unknown dependency type `{d['name']}(...)`",
        _suggest("dependency type"),
    ),
    # -- parameters -----------------------------------------------------------------------
    "unknown-override": Message(
        Kind.UNKNOWN_NAME,
        lambda d: f"`-p {d['name']}=...`: unknown parameter `{d['name']}`",
        _suggest("parameter"),
    ),
    "override-type": Message(
        Kind.PARAM_TYPE,
        lambda d: f"`-p {d['param']}={d['value']}`: parameter `{d['param']}` is {d['wanted']}",
        _override_hint,
    ),
    "not-a-parameter-reference": Message(
        Kind.BAD_VALUE,
        lambda d: f"`{d['ref']}` is not a parameter reference",
        _fixed("write `params.NAME`"),
    ),
    # -- definitions ----------------------------------------------------------------------
    "definition-cycle": Message(
        Kind.CYCLE,
        lambda d: "definitions extend each other in a cycle: " + _arrows(d["cycle"]),
        _fixed("a definition cannot extend itself, directly or through others"),
    ),
    "definitions-too-deep": Message(
        Kind.TOO_DEEP,
        lambda d: f"definitions extend each other more than {d['limit']} deep",
        lambda d: f"a chain of `definition a: b` is at most {d['limit']} long",
    ),
    # -- dependencies ---------------------------------------------------------------------
    "dependency-cycle": Message(
        Kind.CYCLE,
        lambda d: "dependency cycle: " + _arrows(d["cycle"]),
        _fixed(
            "a job cannot wait, directly or through others, for itself; "
            "remove one of these dependencies"
        ),
    ),
    "too-many-dependencies": Message(
        Kind.TOO_MANY_DEPS,
        lambda d: (
            f"job `{d['job']}` has {d['count']} dependencies; AWS Batch allows at most {d['limit']}"
        ),
        _fixed("wait for an array, or add a fan-in job"),
    ),
    "index-of-non-array": Message(
        Kind.ARRAY_INDEX,
        lambda d: f"`{d['dependency']}`: `{d['job']}` is not an array job",
        lambda d: f"wait for the whole job: after = [{d['job']}]",
    ),
    "index-out-of-range": Message(
        Kind.ARRAY_INDEX,
        lambda d: f"`{d['dependency']}` is out of range: `{d['job']}` has {d['size']} children",
        lambda d: f"indexes run from 0 to {d['size'] - 1}",
    ),
    "n-to-n-non-array": Message(
        Kind.N_TO_N,
        lambda d: f"`n_to_n({d['job']})` needs two arrays, but `{d['which']}` is not an array job",
        _fixed("n_to_n makes child i wait for child i: both jobs need `array` of the same size"),
    ),
    "n-to-n-sizes": Message(
        Kind.N_TO_N,
        lambda d: (
            f"`n_to_n({d['job']})` joins arrays of different "
            f"sizes: `{d['name']}` has {d['size']} children, `{d['job']}` has {d['other_size']}"
        ),
        _fixed("give both the same `array` size (a shared param helps)"),
    ),
    "dependency-shape": Message(
        Kind.BAD_VALUE,
        lambda d: f"a dependency is a job name, `job[i]` or `n_to_n(job)`, not {d['got']}",
    ),
    # -- values -----------------------------------------------------------------------------
    "wrong-type": Message(
        Kind.BAD_VALUE,
        lambda d: f"`{d['key']}` must be {d['wanted']}, not {d['got']}",
        lambda d: f"for example: {d['key']} = {d['example']}",
    ),
    "below-minimum": Message(
        Kind.BAD_VALUE, lambda d: f"`{d['key']}` must be at least {d['minimum']:g}"
    ),
    "out-of-bounds": Message(
        Kind.BAD_VALUE, lambda d: f"`{d['key']}` must be {d['bounds']}, not {d['value']}"
    ),
    "not-positive": Message(Kind.BAD_VALUE, lambda d: f"`{d['key']}` must be more than zero"),
    "parameter-type": Message(
        Kind.BAD_VALUE,
        lambda d: (
            f"a parameter must be a string, number, boolean, size or duration, not {d['got']}"
        ),
    ),
    # -- attributes -------------------------------------------------------------------------
    "unknown-attribute": Message(
        Kind.UNKNOWN_ATTRIBUTE,
        lambda d: f"unknown attribute `{d['name']}` in {d['what']} `{d['block']}`",
        lambda d: (
            f"`{d['name']}` is for jobs only; a definition is a template"
            if d.get("job_only")
            else did_you_mean(d["name"], d["known"], "attribute")
        ),
    ),
    "attribute-set-twice": Message(
        Kind.DUPLICATE,
        lambda d: f"attribute `{d['name']}` is set twice",
        lambda d: f"first set on line {d['first'].line}" if d.get("first") else None,
    ),
    "attribute-for-other-type": Message(
        Kind.UNKNOWN_ATTRIBUTE,
        lambda d: f"`{d['name']}` is for {d['for_type']} compute environments, not {d['type']}",
    ),
    "missing-command": Message(
        Kind.MISSING_ATTRIBUTE,
        lambda d: f"job `{d['job']}` has no `command`",
        lambda d: (
            'give it one (command = "echo hello") or a definition that has one: '
            f"job {d['job']}: DEFINITION {{ ... }}"
        ),
    ),
    "command-type": Message(
        Kind.BAD_VALUE,
        lambda d: f"`command` must be a string or a list of strings, not {d['got']}",
        _fixed('command = "echo hello" or command = ["echo", "hello"]'),
    ),
    "array-size": Message(
        Kind.ARRAY_SIZE,
        lambda d: f"array size {d['size']} is outside {d['minimum']}..{d['maximum']}",
        _fixed("AWS Batch arrays have 2 to 10,000 children; a single job needs no `array`"),
    ),
    "sequential-non-array": Message(
        Kind.SEQUENTIAL,
        lambda d: f"`sequential` is set on `{d['job']}`, which is not an array",
        _fixed("add `array = N`, or remove `sequential`"),
    ),
    "env-and-env-from-host": Message(
        Kind.DUPLICATE,
        lambda d: f"`{d['name']}` is in both `env` and `env_from_host` of `{d['job']}`",
        _fixed(
            "keep it in one: `env` gives it a value, `env_from_host` takes "
            "the value of the runner's environment"
        ),
    ),
    "unschedulable": Message(
        Kind.UNSCHEDULABLE,
        lambda d: (
            f"job `{d['job']}` needs {d['need']}, more than any host of queue `{d['queue']}` has"
        ),
        lambda d: f"it would stay RUNNABLE forever; capacity per host: {d['have']}",
    ),
    # -- templates (the template's own words come from `template`) ------------------------
    "template": Message(
        Kind.TEMPLATE,
        lambda d: (
            "template error"
            + (f" in job `{d['job']}`" if d["inherited"] else "")
            + f"{d['where']}: {d['error']}"
        ),
        lambda d: _template_hint(d),
    ),
    "template-misplaced": Message(
        Kind.TEMPLATE,
        lambda d: f"template error: `{d['text']}` is {d['where']}, {d['why']}",
        lambda d: d["hint"],
    ),
    # -- environment variables --------------------------------------------------------------
    "env-value-nul": Message(
        Kind.BAD_VALUE,
        lambda d: f"the value of `{d['name']}` contains a NUL character",
        _fixed("an environment variable cannot hold a NUL"),
    ),
    "reserved-env": Message(
        Kind.RESERVED,
        lambda d: f"`{d['name']}` is reserved",
        lambda d: (
            "names starting with `fb_` are flowbatch's own in the shell that starts "
            "a job on ssh and SLURM; choose another name"
            if d["name"].startswith("fb_")
            else "flowbatch sets AWS_BATCH_* and FLOWBATCH_* variables for every job itself"
        ),
    ),
    "env-name": Message(
        Kind.BAD_VALUE,
        lambda d: f"`{d['name']}` is not a valid environment variable name",
        _fixed("use letters, digits and `_`, not starting with a digit (e.g. HF_TOKEN)"),
    ),
    # -- queues and compute environments ----------------------------------------------------
    "queue-compute-count": Message(
        Kind.BAD_VALUE,
        lambda d: f"a queue lists 1 to 3 compute environments, not {d['count']}",
    ),
    "queue-state": Message(
        Kind.BAD_VALUE,
        lambda d: f"unknown queue state `{d['state']}`",
        _fixed('state is "enabled" or "disabled"'),
    ),
    "compute-type": Message(
        Kind.BAD_VALUE,
        lambda d: f"unknown compute environment type `{d['name']}`",
        lambda d: did_you_mean(d["name"], d["known"], "type"),
    ),
    "placement": Message(
        Kind.BAD_VALUE,
        lambda d: f"unknown placement `{d['placement']}`",
        _fixed('placement is "binpack" (the default) or "exclusive" (one job per host)'),
    ),
    "interruption-rate": Message(
        Kind.BAD_VALUE, _fixed("`interruption_rate` is a chance per attempt, from 0 to 1")
    ),
    "ssh-no-hosts": Message(
        Kind.MISSING_ATTRIBUTE,
        lambda d: f"ssh compute environment `{d['name']}` lists no hosts",
        _fixed('hosts = [{ address = "10.0.0.5", user = "batch", vcpus = 8, memory = 16GiB }]'),
    ),
    "ssh-no-known-hosts": Message(
        Kind.MISSING_ATTRIBUTE,
        lambda d: f"ssh compute environment `{d['name']}` has no `known_hosts`",
        _fixed('host keys are checked, never trusted silently: known_hosts = "~/.ssh/known_hosts"'),
    ),
    "unknown-host-attribute": Message(
        Kind.UNKNOWN_ATTRIBUTE,
        lambda d: f"unknown host attribute `{d['name']}`",
        lambda d: did_you_mean(d["name"], d["known"], "attribute"),
    ),
    "host-address": Message(Kind.MISSING_ATTRIBUTE, _fixed("a host needs an `address`")),
    # -- retry strategies -------------------------------------------------------------------
    "unknown-retry-attribute": Message(
        Kind.UNKNOWN_ATTRIBUTE,
        lambda d: f"unknown retry attribute `{d['name']}`",
        lambda d: did_you_mean(d["name"], d["known"], "attribute"),
    ),
    "retry-attempts": Message(
        Kind.RETRY,
        lambda d: f"`attempts` must be 1 to {d['limit']}, not {d['attempts']}",
        lambda d: f"AWS Batch allows 1 to {d['limit']} attempts",
    ),
    "retry-rules": Message(
        Kind.RETRY,
        lambda d: f"{d['count']} `evaluate_on_exit` rules; AWS Batch allows at most {d['limit']}",
    ),
    "unknown-rule-attribute": Message(
        Kind.RETRY,
        lambda d: f"unknown rule attribute `{d['name']}`",
        lambda d: did_you_mean(d["name"], d["known"], "attribute"),
    ),
    "rule-action-missing": Message(
        Kind.RETRY,
        _fixed("a retry rule needs an `action`"),
        _fixed('action = "retry" or action = "exit"'),
    ),
    "rule-action": Message(
        Kind.RETRY,
        lambda d: f"unknown action `{d['action']}`",
        _fixed('action is "retry" or "exit"'),
    ),
    "pattern-length": Message(
        Kind.RETRY, lambda d: f"`{d['name']}` is longer than {d['limit']} characters"
    ),
    "pattern-star": Message(
        Kind.RETRY,
        lambda d: f"`{d['name']}`: `*` may only end a pattern",
        _fixed("patterns match exactly, or by prefix when they end in `*`"),
    ),
    "exit-code-pattern": Message(
        Kind.RETRY,
        lambda d: f"`on_exit_code` must be digits, optionally ending in `*`, not `{d['text']}`",
        _fixed('for example: on_exit_code = "137"'),
    ),
    # -- AWS Batch's own limits (`aws_limits`) ---------------------------------------------
    "aws-no-image": Message(
        Kind.AWS_LIMIT,
        lambda d: f"job `{d['job']}` has no `image`; AWS Batch runs every job in a container",
        _fixed('give it one (image = "public.ecr.aws/docker/library/python:3.12-slim")'),
    ),
    "aws-timeout": Message(
        Kind.AWS_LIMIT,
        lambda d: (
            f"`timeout` of `{d['job']}` is {d['seconds']:g}s; AWS Batch's is at least "
            f"{d['limit']} seconds"
        ),
        lambda d: f"timeout = {d['limit']}s or more, or no timeout",
    ),
    "aws-vcpus": Message(
        Kind.AWS_LIMIT,
        lambda d: (
            f"`vcpus` of `{d['job']}` is {d['vcpus']:g}; AWS Batch on EC2 reserves whole vCPUs"
        ),
        _fixed("vcpus = 1 or another whole number"),
    ),
    "aws-memory": Message(
        Kind.AWS_LIMIT,
        lambda d: (
            f"`memory` of `{d['job']}` is {d['memory']} MiB; AWS Batch gives a job at least "
            f"{d['limit']} MiB"
        ),
        lambda d: f"memory = {d['limit']}MiB or more",
    ),
    "aws-pattern": Message(
        Kind.AWS_LIMIT,
        lambda d: f"`{d['name']}` has `{d['char']}`, which AWS Batch does not take in a pattern",
        _fixed(
            "AWS matches reasons with letters, digits, `.`, `:` and spaces, optionally "
            "ending in `*`: cut the pattern before the character and end it with `*`"
        ),
    ),
    "aws-tag-count": Message(
        Kind.AWS_LIMIT,
        lambda d: f"{d['count']} tags; on AWS Batch a job has at most {d['limit']} of its own",
        _fixed(
            "AWS allows 50 tags per resource, and flowbatch adds 2 (flowbatch:pipeline, :digest)"
        ),
    ),
    "aws-tag-reserved": Message(
        Kind.AWS_LIMIT,
        lambda d: f"tag `{d['key']}` is reserved",
        _fixed("tags starting `aws:` are AWS's, and those starting `flowbatch:` flowbatch's"),
    ),
    "aws-tag-text": Message(
        Kind.AWS_LIMIT,
        lambda d: f"AWS Batch does not take this tag {d['what']}",
        lambda d: (
            f"a tag {d['what']} is at most {d['limit']} letters, digits, spaces "
            "and `_ . : / = + - @`"
        ),
    ),
    # -- aws_batch compute environments ----------------------------------------------------
    "aws-credentials": Message(
        Kind.CREDENTIALS,
        lambda d: f"{d['what']} looks like an AWS credential; a .flow file never holds one",
        _fixed(
            "credentials come from botocore's standard chain: AWS_* environment variables, "
            '~/.aws (name it with profile = "NAME"), SSO or an instance role'
        ),
    ),
    "aws-missing": Message(
        Kind.MISSING_ATTRIBUTE,
        lambda d: f"aws_batch compute environment `{d['name']}` has no `{d['key']}`",
        lambda d: d["example"],
    ),
    "aws-endpoint": Message(
        Kind.BAD_VALUE,
        lambda d: f"`endpoint` must be an http:// or https:// URL, not `{d['url']}`",
        _fixed('for example: endpoint = "http://127.0.0.1:8910"'),
    ),
}


def flow_error(what: str, span: Span | None, /, **facts: Any) -> FlowError:
    """The FlowError `what` (a key of MESSAGES) at `span`, worded from `facts`, which
    become its `detail` (a `known` collection of names is kept sorted, as a tuple)."""
    message = MESSAGES[what]
    if "known" in facts:
        facts["known"] = tuple(sorted(set(facts["known"])))
    hint = message.hint(facts) if message.hint is not None else None
    return FlowError(message.kind, message.text(facts), span, hint=hint, detail=facts, what=what)
