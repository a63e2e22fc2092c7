"""Runs-DLQ consumer: a message every delivery of which died (a timeout, out of memory) has its
work given up, so the run, workflow or parent it carried does not wait for ever."""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from a3s_core.containment import dead_letter, parse_body
from a3s_core.runtime import get_runtime

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: Any) -> dict:
    rt = get_runtime()

    def record(record: SQSRecord) -> None:
        body = parse_body(record.body)
        logger.append_keys(tenant=(body or {}).get("tenant"), run_id=(body or {}).get("run_id"))
        given_up = dead_letter(rt, body)
        logger.error("dead-lettered runs-queue message given up", extra={**given_up, "body": record.body[:1000]})

    return process_partial_response(event=event, record_handler=record, processor=processor, context=context)
