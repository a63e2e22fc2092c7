"""The tool sandbox: one tool call on a workspace handed over as presigned URLs.

Its role may write its own logs and nothing else (not even X-Ray: no Tracer here), and Lambda's
per-tenant isolation gives each tenant execution environments of its own (callers invoke it with
TenantId). See a3s_core.tools.sandbox.
"""
from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from a3s_core.tools import isolation
from a3s_core.tools.sandbox import serve

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict:
    # This process holds the function's credentials: commands may not read its environment, and
    # anything a command leaves behind (even by killing its runner) comes back here to be ended.
    isolation.not_dumpable()
    isolation.become_reaper()
    try:
        return serve(event)
    finally:
        isolation.reap_all()
