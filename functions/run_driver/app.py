"""Runs-queue consumer: each message advances one run or fires one task timeout.

A failed record is reported back (ReportBatchItemFailures) so only it is delivered again.
"""
from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from a3s_core.driver import handle_message
from a3s_core.runtime import get_runtime

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: Any) -> dict:
    rt = get_runtime()

    def record(record: SQSRecord) -> None:
        body = json.loads(record.body)
        logger.append_keys(tenant=body.get("tenant"), run_id=body.get("run_id"))
        handle_message(rt, body, context.get_remaining_time_in_millis)

    return process_partial_response(event=event, record_handler=record, processor=processor, context=context)
