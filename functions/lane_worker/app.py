"""Reference external worker as a Lambda on a lane queue: claim, run the built-in tool (code in
the sandbox), complete.

A task someone else finished (or that timed out) is skipped; one another worker holds, or a crash
before completion, leaves the message to be delivered again.
"""
from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from a3s_core import telemetry
from a3s_core.api.schemas import CompleteTaskBody
from a3s_core.api.service import Service
from a3s_core.runtime import get_runtime
from a3s_core.tools.lane_work import execute_task
from a3s_core.workspace.tenant import workspace_for

logger = Logger()
tracer = Tracer(patch_modules=telemetry.TRACED_MODULES)
processor = BatchProcessor(event_type=EventType.SQS)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@telemetry.instrumented
def handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    rt = get_runtime()

    def record(record: SQSRecord) -> None:
        try:
            message = json.loads(record.body)
        except ValueError:
            message = None
        with telemetry.sqs_record(record, message):
            if not isinstance(message, dict):
                raise ValueError("the lane message is not a JSON object")
            work(message)

    def work(message: dict) -> None:
        tenant, sid, tid = message["tenant"], message["session_id"], message["task_id"]
        now, lease_ms = rt.clock(), context.get_remaining_time_in_millis()
        # The task as stored (not as the message says), leased only before its deadline: its timer
        # tells the model of a late one, and nothing runs late.
        task = rt.store.claim_task(tenant, sid, tid, context.aws_request_id, now, lease_ms)
        if task is None:
            current = rt.store.get_task(tenant, sid, tid)
            if current is not None and current.status == "pending" and current.deadline > now:
                raise RuntimeError(f"task {tid} is leased by another worker; deliver again later")
            return  # finished, timed out or cancelled: nothing left to do
        telemetry.task_claimed(task, context.aws_request_id, now)
        service = Service(rt, tenant)
        session = service.session(sid)
        outcome: dict[str, Any]
        if not session.permissive and not task.approved:
            # Outside permissive mode the kit runs nothing nobody approved (the driver asks first).
            outcome = {"success": False,
                       "error": "refused: the session is not permissive and no one approved this task"}
        else:
            with telemetry.tool_call(tenant, task.run_id, task.command_type, task.lane):
                outcome = execute_task(task.public(), workspace_for(rt, tenant, session.workspace),
                                       rt.tool_sandbox(), tenant, time_left_ms=task.deadline - now)
        service.complete_task(sid, tid, CompleteTaskBody(**outcome))

    return process_partial_response(event=event, record_handler=record, processor=processor, context=context)
