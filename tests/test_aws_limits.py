"""AWS Batch's own limits (`lang.aws_limits`) and the `aws_batch` compute environment
(`lang.computes`): what `validate --target aws` and a run aimed at AWS refuse, with
the messages users see."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from flowbatch.cli import app
from flowbatch.lang.aws_limits import AwsTarget
from flowbatch.lang.computes import Machine
from flowbatch.lang.diagnostics import FlowError, Kind
from flowbatch.lang.load import load_text

MACHINE = Machine(vcpus=4, memory=8192)
CLOUD = """compute cloud {
  type      = "aws_batch"
  job_queue = "flowbatch-queue"
  region    = "eu-west-1"
}
"""
IMAGE = 'image = "busybox"'


def errors_of(text: str, aws: AwsTarget | None = None) -> list[str]:
    try:
        load_text(text, "p.flow", machine=MACHINE, aws=aws)
    except FlowError as err:
        return [str(e) for e in err.errors]
    return []


def test_a_job_that_runs_locally_is_not_held_to_aws_limits() -> None:
    text = 'job a {\n  command = "true"\n  timeout = 5s\n  vcpus = 0.5\n}\n'
    assert errors_of(text) == []
    assert len(errors_of(text, AwsTarget(every_job=True))) == 3  # image, timeout, vcpus


def test_validate_target_aws_shows_each_limit_where_it_is_written(tmp_path: Path) -> None:
    (tmp_path / "p.flow").write_text(
        "job a {\n"
        '  command = "true"\n'
        "  timeout = 30s\n"
        "  vcpus   = 0.5\n"
        "  memory  = 2MiB\n"
        "  retry {\n"
        "    attempts = 2\n"
        '    evaluate_on_exit = [{ on_reason = "Out-of*", action = "exit" }]\n'
        "  }\n"
        '  tags = { "aws:team" = "x", owner = "a#b" }\n'
        "}\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        plain = CliRunner().invoke(app, ["validate", "p.flow"])
        result = CliRunner().invoke(app, ["validate", "--target", "aws", "p.flow"])
    assert plain.exit_code == 0, plain.stderr
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "p.flow:1:5: error: job `a` has no `image`; AWS Batch runs every job in a container",
        "  |",
        "1 | job a {",
        "  |     ^",
        '  = help: give it one (image = "public.ecr.aws/docker/library/python:3.12-slim")',
        "p.flow:3:13: error: `timeout` of `a` is 30s; AWS Batch's is at least 60 seconds",
        "  |",
        "3 |   timeout = 30s",
        "  |             ^^^",
        "  = help: timeout = 60s or more, or no timeout",
        "p.flow:4:13: error: `vcpus` of `a` is 0.5; AWS Batch on EC2 reserves whole vCPUs",
        "  |",
        "4 |   vcpus   = 0.5",
        "  |             ^^^",
        "  = help: vcpus = 1 or another whole number",
        "p.flow:5:13: error: `memory` of `a` is 2 MiB; AWS Batch gives a job at least 4 MiB",
        "  |",
        "5 |   memory  = 2MiB",
        "  |             ^^^^",
        "  = help: memory = 4MiB or more",
        "p.flow:8:39: error: `on_reason` has `-`, which AWS Batch does not take in a pattern",
        "  |",
        '8 |     evaluate_on_exit = [{ on_reason = "Out-of*", action = "exit" }]',
        "  |                                       ^^^^^^^^^",
        "  = help: AWS matches reasons with letters, digits, `.`, `:` and spaces, optionally "
        "ending in `*`: cut the pattern before the character and end it with `*`",
        "p.flow:10:12: error: tag `aws:team` is reserved",
        "   |",
        '10 |   tags = { "aws:team" = "x", owner = "a#b" }',
        "   |            ^^^^^^^^^^",
        "   = help: tags starting `aws:` are AWS's, and those starting `flowbatch:` flowbatch's",
        "p.flow:10:38: error: AWS Batch does not take this tag value",
        "   |",
        '10 |   tags = { "aws:team" = "x", owner = "a#b" }',
        "   |                                      ^^^^^",
        "   = help: a tag value is at most 256 letters, digits, spaces and `_ . : / = + - @`",
    ]


def test_an_inherited_attribute_is_shown_in_its_definition() -> None:
    text = (
        CLOUD
        + "queue default { compute = [cloud] }\n"
        + f"definition short {{\n  timeout = 10s\n  {IMAGE}\n}}\n"
        + 'job a: short {\n  command = "true"\n}\n'
    )
    with pytest.raises(FlowError) as e:
        load_text(text, "p.flow", machine=MACHINE)
    assert e.value.kind is Kind.AWS_LIMIT
    assert (e.value.span.line, e.value.span.col) == (8, 13)  # the definition's `10s`
    assert e.value.detail == {"job": "a", "seconds": 10.0, "limit": 60}


def test_a_queue_on_aws_batch_is_checked_without_target() -> None:
    text = CLOUD + 'queue default { compute = [cloud] }\njob a {\n  command = "true"\n}\n'
    assert errors_of(text)[0].startswith("p.flow:7:5: error: job `a` has no `image`")
    # ... and a queue that `--compute local=cloud` moves there, as `run` loads it
    local = CLOUD + 'job a {\n  command = "true"\n}\n'
    assert errors_of(local) == []
    moved = errors_of(local, AwsTarget(overrides={"local": "cloud"}))
    assert moved[0].startswith("p.flow:6:5: error: job `a` has no `image`")


def test_run_refuses_a_pipeline_aws_would_refuse_before_submitting(tmp_path: Path) -> None:
    (tmp_path / "p.flow").write_text('job a {\n  command = "true"\n}\n')
    (tmp_path / "aws.flow").write_text(CLOUD)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        result = CliRunner().invoke(
            app, ["run", "p.flow", "--computes", "aws.flow", "--compute", "local=cloud"]
        )
    assert result.exit_code == 2
    assert result.stderr.startswith("p.flow:1:5: error: job `a` has no `image`")
    assert not (tmp_path / ".flowbatch" / "jobs.db").exists()  # nothing was recorded


def test_a_good_job_for_aws_passes() -> None:
    text = (
        CLOUD
        + "queue default { compute = [cloud] }\n"
        + f'job a {{\n  command = "true"\n  {IMAGE}\n  timeout = 2m\n  vcpus = 2\n'
        + '  memory = 512MiB\n  tags = { owner = "data-eng" }\n'
        + '  retry {\n    attempts = 3\n    evaluate_on_exit = [{ on_status_reason = "Host EC2*"'
        + ', action = "retry" }, { on_reason = "OutOfMemoryError:*", action = "exit" }]\n  }\n}\n'
    )
    plan = load_text(text, "p.flow", machine=MACHINE)
    ce = plan.computes["cloud"]
    assert ce.type == "aws_batch"
    assert dict(ce.options) == {
        "job_queue": "flowbatch-queue",
        "region": "eu-west-1",
        "max_vcpus": 256,
    }


def test_too_many_tags_for_aws() -> None:
    tags = ", ".join(f't{i} = "v"' for i in range(49))
    text = f'job a {{\n  command = "true"\n  {IMAGE}\n  tags = {{ {tags} }}\n}}\n'
    (error,) = errors_of(text, AwsTarget(every_job=True))
    assert "49 tags; on AWS Batch a job has at most 48 of its own" in error


# -- the aws_batch compute environment -------------------------------------------------


def test_aws_batch_options_are_checked() -> None:
    text = 'compute cloud {\n  type = "aws_batch"\n  region = "eu-west-1"\n}\n'
    assert errors_of(text) == [
        "p.flow:1:9: error: aws_batch compute environment `cloud` has no `job_queue`\n"
        "  |\n"
        "1 | compute cloud {\n"
        "  |         ^^^^^\n"
        '  = help: job_queue = "my-queue" (a name or an ARN of an existing job queue)'
    ]
    bad = errors_of(
        'compute cloud {\n  type = "aws_batch"\n  job_queue = "q"\n  region = "Europe"\n'
        '  endpoint = "ftp://x"\n  partition = "p"\n}\n'
    )
    assert [e.splitlines()[0] for e in bad] == [
        "p.flow:4:12: error: `region` must be an AWS region, not `Europe`",
        "p.flow:6:15: error: `partition` is for slurm compute environments, not aws_batch",
    ]
    endpoint = errors_of(
        'compute cloud {\n  type = "aws_batch"\n  job_queue = "q"\n  region = "us-east-1"\n'
        '  endpoint = "ftp://x"\n  profile = "dev"\n}\n'
    )
    assert [e.splitlines()[0] for e in endpoint] == [
        "p.flow:5:14: error: `endpoint` must be an http:// or https:// URL, not `ftp://x`"
    ]
    other = errors_of('compute c {\n  job_queue = "q"\n}\n')
    assert other[0].splitlines()[0] == (
        "p.flow:2:15: error: `job_queue` is for aws_batch compute environments, not local"
    )


def test_credentials_in_a_flow_file_are_refused_without_being_quoted() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    key_id = "AKIA" + "IOSFODNN7EXAMPLE"
    text = (
        'compute cloud {\n  type = "aws_batch"\n  job_queue = "q"\n  region = "us-east-1"\n'
        f'  aws_secret_access_key = "{secret}"\n  profile = "{key_id}"\n}}\n'
    )
    try:
        load_text(text, "p.flow", machine=MACHINE)
    except FlowError as err:
        found = err
    else:
        raise AssertionError("credentials were accepted")
    assert [e.kind for e in found.errors] == [Kind.CREDENTIALS, Kind.CREDENTIALS]
    assert [e.message for e in found.errors] == [
        "`aws_secret_access_key` looks like an AWS credential; a .flow file never holds one",
        "the value of `profile` looks like an AWS credential; a .flow file never holds one",
    ]
    assert "standard chain" in (found.errors[0].hint or "")
    # The key's line is quoted (the caret needs it), the secret is not repeated in words.
    assert all(secret not in e.message and key_id not in e.message for e in found.errors)


def test_an_endpoint_of_ones_own_needs_no_image_but_keeps_the_other_limits() -> None:
    own = CLOUD.replace(
        'region    = "eu-west-1"', 'region = "eu-west-1"\n  endpoint = "http://127.0.0.1:8910"'
    )
    text = own + 'queue default { compute = [cloud] }\njob a {\n  command = "true"\n}\n'
    assert errors_of(text) == []
    slow = text.replace('command = "true"', 'command = "true"\n  timeout = 10s')
    assert any("timeout" in e for e in errors_of(slow))
    # `validate --target aws` is about AWS itself: an image is still needed there
    assert any("has no `image`" in e for e in errors_of(text, AwsTarget(every_job=True)))
