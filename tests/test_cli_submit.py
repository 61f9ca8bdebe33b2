"""`flowbatch submit`'s translation of a pipeline into AWS Batch requests, without a
server: each array child runs exactly the command the language renders for it (hostile
values included), `job.id` comes from $AWS_BATCH_JOB_ID, and dependencies, retries,
timeouts and names take AWS's shapes. The requests against a server are in
test_cli_remote.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from flowbatch.cli.submitting import (
    MAX_COMMAND_BYTES,
    Marker,
    SubmitError,
    case_script,
    definition_request,
    depends_on,
    job_requests,
    rendered_command,
    retry_strategy,
    sanitized,
    submit_request,
    with_job_id,
)
from flowbatch.lang.compile import Plan
from flowbatch.lang.load import load_text
from flowbatch.lang.template import Context, render_command

HOSTILE = [
    "'; echo PWNED; '",
    "$(echo PWNED)",
    "`echo PWNED`",
    "a\nb; echo PWNED",
    "*",
    "Ref::x",
    "{{ 7*7 }}",
    '"; esac; echo PWNED; case x in x) "',
    ";; 9) echo PWNED",
    "\\",
]


def _plan(text: str, **params: str) -> Plan:
    return load_text(text, "/tmp/p.flow", params)


def _run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    return subprocess.run(argv, env=full, capture_output=True, text=True, timeout=30)


def _language(plan: Plan, name: str, index: int | None, job_id: str) -> str | tuple[str, ...]:
    spec = plan.job(name)
    ctx = Context(
        params=plan.params,
        job_name=name,
        job_id=job_id,
        attempt=1,
        index=index,
        size=spec.array_size,
    )
    return render_command(spec.command, ctx, spec.parameters)


@pytest.mark.slow
@pytest.mark.parametrize("list_command", [False, True])
def test_each_array_child_runs_exactly_its_own_rendered_command(list_command: bool) -> None:
    value = "{{ params['v' ~ array.index] }}"
    command = (
        f'["printf", "[%s]\\\\n", "{value}", "{{{{ job.id }}}}"]'
        if list_command
        else f"\"printf '[%s]\\\\n' {value} {{{{ job.id }}}} # the end\""
    )
    declared = "".join(f'param v{i} = ""\n' for i in range(len(HOSTILE)))
    plan = _plan(
        f"{declared}job each {{\n  command = {command}\n  array = {len(HOSTILE)}\n}}\n",
        **{f"v{i}": value for i, value in enumerate(HOSTILE)},
    )
    argv = rendered_command(plan.job("each"), plan.params)
    assert argv[:2] == ["/bin/sh", "-c"]
    for index in range(len(HOSTILE)):
        job_id = f"0a1b2c3d-e4f5-4789-abcd-ef0123456789:{index}"
        env = {"AWS_BATCH_JOB_ID": job_id, "AWS_BATCH_JOB_ARRAY_INDEX": str(index)}
        got = _run(argv, **env)
        want = _language(plan, "each", index, job_id)
        expected = _run(["/bin/sh", "-c", want] if isinstance(want, str) else list(want), **env)
        assert (got.returncode, got.stdout, got.stderr) == (
            expected.returncode,
            expected.stdout,
            expected.stderr,
        )
        assert got.stdout == f"[{HOSTILE[index]}]\n[{job_id}]\n"
        assert "PWNED" not in got.stdout.replace(HOSTILE[index], "")


def test_case_script_keeps_each_child_apart() -> None:
    # A child's trailing comment and a child's syntax error touch no other child.
    children = ["echo zero # ;; 1) echo nope", "echo 'unbalanced", ("printf", "%s", "two")]
    script = case_script(children)
    assert _run(["/bin/sh", "-c", script], AWS_BATCH_JOB_ARRAY_INDEX="0").stdout == "zero\n"
    assert _run(["/bin/sh", "-c", script], AWS_BATCH_JOB_ARRAY_INDEX="1").returncode != 0
    assert _run(["/bin/sh", "-c", script], AWS_BATCH_JOB_ARRAY_INDEX="2").stdout == "two"
    missing = _run(["/bin/sh", "-c", script], AWS_BATCH_JOB_ARRAY_INDEX="3")
    assert missing.returncode == 1
    assert "no command for array index 3" in missing.stderr


def test_array_with_one_rendered_command_is_sent_once() -> None:
    plan = _plan('job each {\n  command = ["echo", "same"]\n  array = 3\n}\n')
    assert rendered_command(plan.job("each"), plan.params) == ["echo", "same"]
    plan = _plan('job one {\n  command = "echo {{ params.x }}"\n}\nparam x = "a b"\n')
    assert rendered_command(plan.job("one"), plan.params) == ["/bin/sh", "-c", "echo 'a b'"]


def test_job_id_inside_a_quoted_value_is_the_id() -> None:
    plan = _plan("job one {\n  command = \"printf '%s\\\\n' {{ job.id ~ ' x;y' }}\"\n}\n")
    argv = rendered_command(plan.job("one"), plan.params)
    assert _run(argv, AWS_BATCH_JOB_ID="abc-1").stdout == "abc-1 x;y\n"


def test_job_id_of_a_strange_shape_is_refused_at_run_time() -> None:
    marker = Marker.new()
    argv = with_job_id(f"echo {marker.text}", marker)
    done = _run(argv, AWS_BATCH_JOB_ID="a b;*")
    assert done.returncode == 1
    assert "unexpected AWS_BATCH_JOB_ID" in done.stderr


@pytest.mark.parametrize("use", ["job.id | upper", "job.id | length", "job.id[:4]"])
def test_a_transformed_job_id_is_refused(use: str) -> None:
    plan = _plan(f'job one {{\n  command = "echo {{{{ {use} }}}}"\n}}\n')
    with pytest.raises(SubmitError, match=r"changes `job.id`"):
        rendered_command(plan.job("one"), plan.params)


def test_a_command_over_the_request_limit_is_refused_with_a_hint() -> None:
    plan = _plan(
        f'param big = "{"x" * 300}"\n'
        'job each {\n  command = "echo {{ array.index }} {{ params.big }}"\n  array = 4000\n}\n'
    )
    with pytest.raises(SubmitError) as err:
        rendered_command(plan.job("each"), plan.params)
    assert f"{MAX_COMMAND_BYTES:,}" in err.value.message
    assert "AWS_BATCH_JOB_ARRAY_INDEX" in (err.value.hint or "")


PIPELINE = """
compute local {
  vcpus = 8
  memory = 8GiB
  gpus = 1
}
queue fast { compute = [local] }
job prep {
  command = "echo prep"
  image = "busybox"
  vcpus = 2
  memory = 512MiB
  gpus = 1
  timeout = 90s
  env = { A = "1" }
  tags = { team = "x" }
  queue = fast
  retry {
    attempts = 3
    evaluate_on_exit = [
      { on_exit_code = "137", action = "retry" },
      { on_status_reason = "Host EC2*", on_reason = "x*", action = "exit" },
    ]
  }
}
job frames {
  command = "echo {{ array.index }}"
  array = 4
  sequential = true
  after = [prep]
}
job each {
  command = "echo each"
  array = 4
  after = [n_to_n(frames), frames[2], prep]
}
"""


def test_dependencies_take_aws_shapes() -> None:
    plan = _plan(PIPELINE)
    ids = {"prep": "P", "frames": "F", "each": "E"}
    assert depends_on(plan.job("prep"), ids) == []
    assert depends_on(plan.job("frames"), ids) == [{"jobId": "P"}, {"type": "SEQUENTIAL"}]
    assert depends_on(plan.job("each"), ids) == [
        {"jobId": "F", "type": "N_TO_N"},
        {"jobId": "F:2"},
        {"jobId": "P"},
    ]


def test_definition_and_submit_requests() -> None:
    plan = _plan(PIPELINE)
    spec = plan.job("prep")
    definition = definition_request(spec, "/work/x/p.flow", ["/bin/sh", "-c", "echo prep"])
    assert definition == {
        "jobDefinitionName": "p-prep",
        "type": "container",
        "containerProperties": {
            "command": ["/bin/sh", "-c", "echo prep"],
            "image": "busybox",
            "resourceRequirements": [
                {"type": "VCPU", "value": "2"},
                {"type": "MEMORY", "value": "512"},
                {"type": "GPU", "value": "1"},
            ],
            "environment": [{"name": "A", "value": "1"}],
        },
        "retryStrategy": {
            "attempts": 3,
            "evaluateOnExit": [
                {"action": "RETRY", "onExitCode": "137"},
                {"action": "EXIT", "onStatusReason": "Host EC2*", "onReason": "x*"},
            ],
        },
        "timeout": {"attemptDurationSeconds": 90},
        "tags": {"flowbatch:pipeline": "/work/x/p.flow"},
    }
    request = submit_request(plan.job("frames"), "/work/x/p.flow", "ARN", {"prep": "P"})
    assert request == {
        "jobName": "frames",
        "jobQueue": "default",
        "jobDefinition": "ARN",
        "tags": {"flowbatch:pipeline": "/work/x/p.flow", "flowbatch:job": "frames"},
        "dependsOn": [{"jobId": "P"}, {"type": "SEQUENTIAL"}],
        "arrayProperties": {"size": 4},
    }
    assert submit_request(spec, "p.flow", "ARN", {})["tags"]["team"] == "x"
    assert retry_strategy(plan.job("each").retry) == {"attempts": 1}


def test_timeout_under_a_minute_is_refused() -> None:
    plan = _plan('job one {\n  command = "true"\n  timeout = 30s\n}\n')
    with pytest.raises(SubmitError, match="below AWS Batch's minimum of 60s"):
        job_requests(plan)


def test_env_from_host_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "s3cret")
    plan = _plan('job one {\n  command = "true"\n  env_from_host = ["SECRET_TOKEN"]\n}\n')
    with pytest.raises(SubmitError, match="SECRET_TOKEN") as err:
        job_requests(plan)
    assert "s3cret" not in str(err.value)


def test_names_are_sanitized() -> None:
    assert sanitized("my.pipe-line x") == "my_pipe-line_x"
    assert sanitized("_x") == "j_x"
    assert len(sanitized("a" * 300)) == 128
    plan = _plan('job one {\n  command = "true"\n}\n')
    assert job_requests(plan)[0].definition["jobDefinitionName"] == "p-one"


def test_pipeline_path_tag_fits(tmp_path: Path) -> None:
    plan = _plan('job one {\n  command = "true"\n}\n')
    long = "/" + "d" * 300 + "/p.flow"
    request = submit_request(plan.job("one"), long, "ARN", {})
    assert len(request["tags"]["flowbatch:pipeline"]) == 256
    assert request["tags"]["flowbatch:pipeline"].endswith("/p.flow")


def test_an_empty_argument_reaches_the_program_without_an_empty_string_sent() -> None:
    plan = _plan('param x = ""\njob one {\n  command = ["printf", "[%s]", "{{ params.x }}"]\n}\n')
    argv = rendered_command(plan.job("one"), plan.params)
    assert "" not in argv
    assert _run(argv).stdout == "[]"
