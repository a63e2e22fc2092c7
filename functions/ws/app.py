"""WebSocket API Lambda: $connect, $disconnect, subscribe, unsubscribe, $default (a3s_core/api/subscriptions.py).

The tenant comes from the $connect authorizer's context, which API Gateway hands to every route."""
from __future__ import annotations

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from a3s_core import telemetry
from a3s_core.api import subscriptions
from a3s_core.runtime import get_runtime

logger = Logger()
tracer = Tracer(patch_modules=telemetry.TRACED_MODULES)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict, context: LambdaContext) -> dict:
    ctx = event.get("requestContext") or {}
    route, connection_id = ctx.get("routeKey", ""), ctx.get("connectionId", "")
    tenant = (ctx.get("authorizer") or {}).get("tenant") or ""
    if not tenant or not connection_id:  # only an authorized connection reaches here
        return {"statusCode": 401}
    logger.append_keys(tenant=tenant, connection_id=connection_id, route=route)
    rt = get_runtime()
    if route == "$connect":
        subscriptions.connect(rt, tenant, connection_id)
    elif route == "$disconnect":
        subscriptions.disconnect(rt, tenant, connection_id)
    else:  # subscribe, unsubscribe, and $default (which answers with an error frame)
        subscriptions.message(rt, tenant, connection_id, event.get("body"))
    return {"statusCode": 200}
