"""Scheduled every minute: the backstop for timeouts beyond SQS delays and for lost messages."""
from __future__ import annotations

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from a3s_core import telemetry
from a3s_core.engine.sweeper import sweep
from a3s_core.runtime import get_runtime

logger = Logger()
tracer = Tracer(patch_modules=telemetry.TRACED_MODULES)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@telemetry.instrumented
def handler(event: dict, context: LambdaContext) -> dict:
    result = sweep(get_runtime())
    # A quiet minute is DEBUG: at INFO it would be 1,440 identical lines a day.
    (logger.info if any(result.values()) else logger.debug)("swept", extra=result)
    return result
