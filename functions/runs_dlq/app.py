"""Runs-DLQ consumer: a message every delivery of which died (a timeout, out of memory) has its
work given up, so the run, workflow or parent it carried does not wait for ever."""
from __future__ import annotations

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from a3s_core import telemetry
from a3s_core.engine.containment import dead_letter, parse_body
from a3s_core.runtime import get_runtime

logger = Logger()
tracer = Tracer(patch_modules=telemetry.TRACED_MODULES)
processor = BatchProcessor(event_type=EventType.SQS)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@telemetry.instrumented
def handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    rt = get_runtime()

    def record(record: SQSRecord) -> None:
        body = parse_body(record.body)
        with telemetry.sqs_record(record, body):
            telemetry.message_given_up("runs-DLQ", dead_letter(rt, body), record.body)

    return process_partial_response(event=event, record_handler=record, processor=processor, context=context)
