"""The X-Ray header a queue message carries (on moto's SQS): messages sent while a record is handled
carry its trace, so a run's round trip through SQS stays one trace; others carry none."""
from __future__ import annotations

import secrets

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from a3s_core import telemetry
from a3s_core.engine.messages import Advance
from a3s_core.engine.queues import SqsQueues

HEADER = "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1"


def _record(header: str | None) -> SQSRecord:
    attributes = {"ApproximateReceiveCount": "1", **({"AWSTraceHeader": header} if header else {})}
    return SQSRecord({"messageId": "m-1", "body": "{}", "attributes": attributes, "messageAttributes": {}})


def test_given_a_record_with_a_trace_header_then_messages_sent_while_handling_it_carry_it_and_others_do_not(
        stack, monkeypatch):
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    sqs = stack.boto.client("sqs")
    runs = sqs.create_queue(QueueName=f"trace-runs-{secrets.token_hex(4)}")["QueueUrl"]
    lane = sqs.create_queue(QueueName=f"trace-lane-{secrets.token_hex(4)}")["QueueUrl"]
    queues = SqsQueues(sqs, runs, {"execute": lane})

    with telemetry.sqs_record(_record(HEADER), {"tenant": "t", "run_id": "run-1"}):
        queues.send_run(Advance(tenant="t", run_id="run-1"))
        queues.send_lane("execute", {"tenant": "t", "task_id": "task-1"})
    queues.send_run(Advance(tenant="t", run_id="run-2"))  # no flow, no Lambda: none

    def headers(url: str) -> list[str | None]:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
        return [m["Attributes"].get("AWSTraceHeader") for m in msgs]

    assert sorted(headers(runs), key=str) == sorted([HEADER, None], key=str)
    assert headers(lane) == [HEADER]
