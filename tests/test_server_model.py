"""botocore's Batch model as the server reads it: routes by method and raw path, and
every request's input checked against its shape, problems named by member path."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from botocore.loaders import Loader
from server_helpers import minimal

from flowbatch.server.errors import ClientException
from flowbatch.server.model import MAX_REPORTED, ServiceModel, load, parse_json

RAW = Loader().load_service_model("batch", "service-2")
MODEL = load()
ARN = "arn:aws:batch:us-east-1:000000000000:job-queue/q:1"


def _submit(document: Any) -> dict[str, Any]:
    return MODEL.operations["SubmitJob"].parse({}, "", document)


def _problems(document: Any) -> list[str]:
    with pytest.raises(ClientException) as raised:
        _submit(document)
    return raised.value.message.split("; ")


BASE = {"jobName": "j", "jobQueue": "q", "jobDefinition": "d"}


def test_every_operation_is_routed_by_its_method_and_uri() -> None:
    assert MODEL.operations.keys() == RAW["operations"].keys()
    for name, raw in RAW["operations"].items():
        method, uri = raw["http"]["method"], raw["http"]["requestUri"]
        path = uri.replace("{resourceArn}", quote(ARN, safe=""))
        routed = MODEL.route(method, path)
        assert routed is not None, name
        operation, labels = routed
        assert operation.name == name
        assert labels == ({"resourceArn": ARN} if "{" in uri else {})


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/submitjob"),
        ("POST", "/v1/submitjob/"),
        ("POST", "/v1/SubmitJob"),
        ("POST", "/v1/tags/"),
        ("PUT", "/v1/tags/x"),
        ("GET", "/v1/tags/a/b"),
    ],
)
def test_what_the_model_does_not_route(method: str, path: str) -> None:
    assert MODEL.route(method, path) is None


def test_a_valid_request_is_passed_on_as_sent() -> None:
    document = {
        **BASE,
        "arrayProperties": {"size": 10},
        "dependsOn": [{"jobId": "a", "type": "N_TO_N"}, {"type": "SEQUENTIAL"}],
        "parameters": {"p": "v"},
        "containerOverrides": {
            "command": ["echo", "Ref::p"],
            "environment": [{"name": "A", "value": "1"}],
            "resourceRequirements": [{"type": "VCPU", "value": "2"}],
        },
        "retryStrategy": {"attempts": 3, "evaluateOnExit": [{"action": "retry"}]},
        "timeout": {"attemptDurationSeconds": 60},
        "propagateTags": True,
        "tags": {"k": "v"},
        "schedulingPriorityOverride": 0,
    }
    assert _submit(document) == document


def test_every_operations_minimal_input_is_valid() -> None:
    for name, operation in MODEL.operations.items():
        if operation.input_shape:
            sent = minimal(RAW["shapes"], operation.input_shape)
            labels = {"resourceArn": sent.pop("resourceArn")} if "{" in operation.uri else {}
            query = "&".join(f"tagKeys={quote(k)}" for k in sent.pop("tagKeys", []))
            assert operation.parse(labels, query, sent) is not None, name


def test_required_members_are_named_by_their_path() -> None:
    assert _problems({}) == ["jobName: required", "jobQueue: required", "jobDefinition: required"]
    assert _problems(
        {
            **BASE,
            "containerOverrides": {"resourceRequirements": [{"type": "VCPU"}, {"value": "1"}]},
            "retryStrategy": {"evaluateOnExit": [{"onExitCode": "1"}]},
        }
    ) == [
        "containerOverrides.resourceRequirements[0].value: required",
        "containerOverrides.resourceRequirements[1].type: required",
        "retryStrategy.evaluateOnExit[0].action: required",
    ]


def test_null_is_absent() -> None:
    assert _submit({**BASE, "timeout": None, "tags": None}) == BASE
    assert _problems({**BASE, "jobQueue": None}) == ["jobQueue: required"]


def test_unknown_members_are_dropped_at_every_depth() -> None:
    sent = {**BASE, "future": {"x": 1}, "timeout": {"attemptDurationSeconds": 60, "new": 1}}
    assert _submit(sent) == {**BASE, "timeout": {"attemptDurationSeconds": 60}}


@pytest.mark.parametrize(
    ("member", "value", "problem"),
    [
        ("jobName", 5, "jobName: expected a string, got a number"),
        ("jobName", ["j"], "jobName: expected a string, got a list"),
        ("propagateTags", "true", "propagateTags: expected a boolean, got a string"),
        ("schedulingPriorityOverride", True, "expected an integer, got a boolean"),
        ("schedulingPriorityOverride", 2.5, "expected an integer, got a number"),
        ("schedulingPriorityOverride", "1", "expected an integer, got a string"),
        ("schedulingPriorityOverride", 2**31, "must be at most 2147483647 (got 2147483648)"),
        ("schedulingPriorityOverride", -(2**31) - 1, "must be at least -2147483648"),
        ("dependsOn", {"jobId": "a"}, "dependsOn: expected a list, got an object"),
        ("dependsOn", [{"type": "BOTH"}], "dependsOn[0].type: must be one of N_TO_N, SEQUENTIAL"),
        ("dependsOn", ["a"], "dependsOn[0]: expected an object, got a string"),
        ("parameters", {"p": 1}, 'parameters["p"]: expected a string, got a number'),
        ("parameters", [], "parameters: expected an object, got a list"),
        ("tags", {}, "tags: must have at least 1 entry (got 0)"),
        ("tags", {str(i): "" for i in range(51)}, "tags: must have at most 50 entries (got 51)"),
        ("tags", {"": "v"}, "tags: key '' must have at least 1 character (got 0)"),
        ("tags", {"k": "v" * 257}, 'tags["k"]: must have at most 256 characters (got 257)'),
    ],
)
def test_types_enums_and_limits(member: str, value: Any, problem: str) -> None:
    [found] = _problems({**BASE, member: value})
    assert found.startswith(member) and problem in found


def test_an_enum_documented_as_any_case_is_matched_in_any_case() -> None:
    rules = [{"action": "retry"}, {"action": "Exit"}]
    sent = {**BASE, "retryStrategy": {"evaluateOnExit": rules}}
    assert _submit(sent) == sent
    requirements = [{"type": "vcpu", "value": "1"}]
    [found] = _problems({**BASE, "containerOverrides": {"resourceRequirements": requirements}})
    assert found.startswith("containerOverrides.resourceRequirements[0].type: must be one of")


def test_whole_numbers_may_come_as_floats_and_are_passed_on_as_ints() -> None:
    cleaned = _submit({**BASE, "arrayProperties": {"size": 4.0}})
    assert cleaned["arrayProperties"]["size"] == 4
    assert type(cleaned["arrayProperties"]["size"]) is int


def test_a_long_list_of_problems_is_cut_short() -> None:
    problems = _problems({**BASE, "dependsOn": [{"type": "X"}] * (MAX_REPORTED + 5)})
    assert len(problems) == MAX_REPORTED + 1
    assert problems[-1] == "and 5 more"


def test_path_and_query_members_win_over_the_body() -> None:
    untag = MODEL.operations["UntagResource"]
    params = untag.parse(
        {"resourceArn": ARN},
        "tagKeys=a%20b&other=1&tagKeys=c%26d&tagKeys=e+f",
        {"resourceArn": "from-body", "tagKeys": ["from-body"]},
    )
    assert params == {"resourceArn": ARN, "tagKeys": ["a b", "c&d", "e f"]}
    with pytest.raises(ClientException, match=r"^tagKeys\[2\]: must have at least 1 character"):
        untag.parse({"resourceArn": ARN}, "tagKeys=a&tagKeys=b&tagKeys=", None)
    with pytest.raises(ClientException, match=r"^tagKeys: required$"):
        untag.parse({"resourceArn": ARN}, "", {"tagKeys": ["from-body"]})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "request body is not valid JSON: Expecting property name"),
        (b"[Infinity]", "request body is not valid JSON: Infinity is not a JSON value"),
        (b"[" * 50_000 + b"]" * 50_000, "request body is not valid JSON: nested too deeply"),
    ],
)
def test_what_is_not_json(body: bytes, message: str) -> None:
    with pytest.raises(ClientException) as raised:
        parse_json(body)
    assert raised.value.message.startswith(message)


def test_an_empty_body_is_an_empty_input() -> None:
    assert parse_json(b"") is None
    assert MODEL.operations["DescribeJobQueues"].parse({}, "", None) == {}
    with pytest.raises(ClientException, match=r"^request body: expected a JSON object, got a"):
        MODEL.operations["DescribeJobQueues"].parse({}, "", "text")


def test_recursive_shapes_greedy_labels_and_unknown_types() -> None:
    # botocore's Batch has none of these today; a newer model may.
    model = ServiceModel(
        {
            "metadata": {},
            "operations": {
                "Put": {
                    "http": {"method": "PUT", "requestUri": "/v1/trees/{name}/{rest+}"},
                    "input": {"shape": "PutRequest"},
                }
            },
            "shapes": {
                "PutRequest": {
                    "type": "structure",
                    "required": ["name", "rest"],
                    "members": {
                        "name": {"shape": "S", "location": "uri", "locationName": "name"},
                        "rest": {"shape": "S", "location": "uri", "locationName": "rest"},
                        "tree": {"shape": "Tree"},
                        "when": {"shape": "T"},
                    },
                },
                "Tree": {
                    "type": "structure",
                    "required": ["label"],
                    "members": {"label": {"shape": "S"}, "children": {"shape": "Trees"}},
                },
                "Trees": {"type": "list", "member": {"shape": "Tree"}},
                "S": {"type": "string"},
                "T": {"type": "timestamp"},
            },
        }
    )
    routed = model.route("PUT", "/v1/trees/a%20b/c/d%2Fe")
    assert routed is not None
    operation, labels = routed
    assert labels == {"name": "a b", "rest": "c/d/e"}
    tree = {"label": "r", "children": [{"label": "a", "children": [{"label": "b"}]}]}
    params = operation.parse(labels, "", {"tree": tree, "when": "2024-01-01T00:00:00Z"})
    assert params["tree"] == tree and params["when"] == "2024-01-01T00:00:00Z"
    with pytest.raises(
        ClientException, match=r"^tree\.children\[0\]\.children\[1\]\.label: required$"
    ):
        operation.parse(
            labels,
            "",
            {
                "tree": {
                    "label": "r",
                    "children": [{"label": "a", "children": [{"label": "b"}, {}]}],
                }
            },
        )


def test_output_shapes_check_answers() -> None:
    assert MODEL.check("SubmitJobResponse", {"jobName": "j", "jobId": "1", "jobArn": "a"}) == []
    assert MODEL.check("SubmitJobResponse", {"jobId": 1}) == [
        "jobId: expected a string, got a number",
        "jobName: required",
    ]
