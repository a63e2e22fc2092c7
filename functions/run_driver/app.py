"""Runs-queue consumer: each message advances one run or fires one task timeout.

A failed record is reported back (ReportBatchItemFailures) so only it is delivered again; on its
last delivery (A3S_MAX_RECEIVE_COUNT, the queue's maxReceiveCount) its work is given up instead.
"""
from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from a3s_core.containment import deliver, parse_body
from a3s_core.runtime import get_runtime

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: Any) -> dict:
    rt = get_runtime()
    max_receive_count = int(os.environ.get("A3S_MAX_RECEIVE_COUNT") or 0)

    def record(record: SQSRecord) -> None:
        body = parse_body(record.body)
        logger.append_keys(tenant=(body or {}).get("tenant"), run_id=(body or {}).get("run_id"))
        given_up = deliver(rt, body, int(record.attributes.approximate_receive_count), max_receive_count,
                           context.get_remaining_time_in_millis)
        if given_up:
            logger.error("runs-queue message given up", extra={**given_up, "body": record.body[:1000]})

    return process_partial_response(event=event, record_handler=record, processor=processor, context=context)
