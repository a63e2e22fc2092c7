"""API key authorizer: an API key (Authorization: Bearer <key>) maps to one tenant.

The HTTP API asks with a v2 event and takes a simple answer; the WebSocket API's $connect asks
with a REQUEST event (methodArn) and takes an IAM policy, and a browser, which cannot set headers
on a WebSocket, may send the key as the `key` query parameter."""
from __future__ import annotations

import hashlib

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from a3s_core import telemetry
from a3s_core.runtime import get_runtime

logger = Logger()
tracer = Tracer(patch_modules=telemetry.TRACED_MODULES)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict, context: LambdaContext) -> dict:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    auth = headers.get("authorization", "")
    if "methodArn" in event and not auth:
        auth = (event.get("queryStringParameters") or {}).get("key") or ""
    key = auth[7:].strip() if auth.lower().startswith("bearer ") else auth.strip()
    tenant = get_runtime().tenant_for_key(key_hash(key)) if key else None
    if tenant is None:  # never the key itself: its hash prefix is enough to tell callers apart
        logger.info("api key refused", extra={"key_hash": key_hash(key)[:12] if key else None})
    if "methodArn" in event:  # the WebSocket API
        effect = "Allow" if tenant else "Deny"
        return {"principalId": tenant or "anonymous", "context": {"tenant": tenant or ""},
                "policyDocument": {"Version": "2012-10-17", "Statement": [
                    {"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["methodArn"]}]}}
    return {"isAuthorized": tenant is not None, "context": {"tenant_id": tenant or ""}}
