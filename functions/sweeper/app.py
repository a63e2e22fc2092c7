"""Scheduled every minute: the backstop for timeouts beyond SQS delays and for lost messages."""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from a3s_core.runtime import get_runtime
from a3s_core.sweeper import sweep

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: Any) -> dict:
    result = sweep(get_runtime())
    logger.info("swept", extra=result)
    return result
