"""Runs-queue consumer: each message advances one run or fires one task timeout.

A failed record is reported back (ReportBatchItemFailures) so only it is delivered again; on its
last delivery (A3S_MAX_RECEIVE_COUNT, the queue's maxReceiveCount) its work is given up instead.
A message may also come as the event of an asynchronous invocation (a run handed over, queues.py):
if it fails, Lambda sends it to the function's on-failure destination, the runs queue.
"""
from __future__ import annotations

import json
import os

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from a3s_core import telemetry
from a3s_core.engine.containment import deliver, parse_body
from a3s_core.engine.dispatch import Busy
from a3s_core.runtime import get_runtime

logger = Logger()
tracer = Tracer(patch_modules=telemetry.TRACED_MODULES)
processor = BatchProcessor(event_type=EventType.SQS)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@telemetry.instrumented
def handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse | None:
    rt = get_runtime()
    if "Records" not in event:  # invoked with the message itself: a failure is raised, for Lambda
        with telemetry.sqs_record(None, event, deferred=(Busy,)):
            given_up = deliver(rt, event, 0, 0, context.get_remaining_time_in_millis)
            if given_up:
                telemetry.message_given_up("hand-over", given_up, json.dumps(event))
        return None
    max_receive_count = int(os.environ.get("A3S_MAX_RECEIVE_COUNT") or 0)

    def record(record: SQSRecord) -> None:
        body = parse_body(record.body)
        with telemetry.sqs_record(record, body, deferred=(Busy,)):
            given_up = deliver(rt, body, int(record.attributes.approximate_receive_count), max_receive_count,
                               context.get_remaining_time_in_millis)
            if given_up:
                telemetry.message_given_up("runs-queue", given_up, record.body)

    return process_partial_response(event=event, record_handler=record, processor=processor, context=context)
