"""provision(): the resources template.yaml declares, created in moto, match the resolved model."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "sdk") not in sys.path:  # the SDK may not be pip-installed in the test venv
    sys.path.insert(0, str(ROOT / "sdk"))

from a3s_local.template import StackModel, load_stack, provision  # noqa: E402

# Not the shared embedded stack's region: provisioning there would reset its queues' settings.
REGION = "eu-west-1"


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    """moto-backed clients with fake credentials (never real ones)."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        yield {name: boto3.client(name, region_name=REGION) for name in ("sqs", "dynamodb", "s3")}


@pytest.fixture
def model() -> StackModel:
    return load_stack(ROOT / "template.yaml", {"EnableLaneWorker": "true"}, region=REGION)


def test_given_the_model_when_provisioned_then_queues_have_their_redrive_and_visibility(
    aws: dict[str, Any], model: StackModel
) -> None:
    sqs = aws["sqs"]

    provision(model, **aws)

    def attrs(name: str) -> dict[str, str]:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]

    for spec in model.queues.values():
        got = attrs(spec.name)
        assert int(got["VisibilityTimeout"]) == spec.visibility_timeout
        if spec.dlq_logical_id is None:
            continue
        redrive = json.loads(got["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == attrs(model.queues[spec.dlq_logical_id].name)["QueueArn"]
        assert int(redrive["maxReceiveCount"]) == spec.max_receive_count == 5
    assert int(attrs(model.queues["RunsQueue"].name)["VisibilityTimeout"]) == 720
    assert int(attrs(model.queues["RunsDLQ"].name)["MessageRetentionPeriod"]) == 1209600


def test_given_the_model_when_provisioned_then_table_has_gsi_and_ttl_and_bucket_exists(
    aws: dict[str, Any], model: StackModel
) -> None:
    ddb = aws["dynamodb"]
    table = model.tables["Table"]

    provision(model, **aws)

    desc = ddb.describe_table(TableName=table.name)["Table"]
    assert [k["AttributeName"] for k in desc["KeySchema"]] == ["pk", "sk"]
    gsi, listing = sorted(desc["GlobalSecondaryIndexes"], key=lambda i: i["IndexName"])
    assert gsi["IndexName"] == "gsi1"
    assert [k["AttributeName"] for k in gsi["KeySchema"]] == ["gsi1pk", "gsi1sk"]
    # keys and a task's deadline only: a checkpoint of a live run never rewrites its index entry
    assert gsi["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["deadline"]}
    assert listing["IndexName"] == "gsi3"  # a tenant's runs: written once, with the run
    assert listing["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["session_id"]}
    ttl = ddb.describe_time_to_live(TableName=table.name)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "ttl")
    aws["s3"].head_bucket(Bucket=model.buckets["WorkspaceBucket"])


def test_given_function_environments_then_queue_urls_match_what_moto_returns(
    aws: dict[str, Any], model: StackModel
) -> None:
    sqs = aws["sqs"]
    provision(model, **aws)
    expected = {
        "A3S_RUNS_QUEUE_URL": "RunsQueue",
        "A3S_LANE_QUEUE_CONTROL": "ControlLaneQueue",
        "A3S_LANE_QUEUE_QUERY": "QueryLaneQueue",
        "A3S_LANE_QUEUE_EXECUTE": "ExecuteLaneQueue",
        "A3S_LANE_QUEUE_GENERATE": "GenerateLaneQueue",
    }

    for fn in model.functions.values():
        if fn.logical_id == "SandboxFunction":
            assert all(fn.environment[var] == "" for var in expected)  # it gets none of the kit's settings
            continue
        for var, queue_id in expected.items():
            assert fn.environment[var] == sqs.get_queue_url(QueueName=model.queues[queue_id].name)["QueueUrl"]
        assert fn.environment["A3S_TABLE"] == model.tables["Table"].name
        assert fn.environment["A3S_BUCKET"] == model.buckets["WorkspaceBucket"]


def test_given_a_provisioned_stack_when_provisioned_again_then_nothing_fails_or_duplicates(
    aws: dict[str, Any], model: StackModel
) -> None:
    provision(model, **aws)

    provision(model, **aws)

    assert len(aws["sqs"].list_queues()["QueueUrls"]) == len(model.queues) == 10
    assert aws["dynamodb"].list_tables()["TableNames"] == [model.tables["Table"].name]
    assert [b["Name"] for b in aws["s3"].list_buckets()["Buckets"]] == [model.buckets["WorkspaceBucket"]]
