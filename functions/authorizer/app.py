"""HTTP API Lambda authorizer: an API key (Authorization: Bearer <key>) maps to one tenant."""
from __future__ import annotations

import hashlib
from typing import Any

from a3s_core.runtime import get_runtime


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def handler(event: dict, context: Any) -> dict:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    auth = headers.get("authorization", "")
    key = auth[7:].strip() if auth.lower().startswith("bearer ") else auth.strip()
    tenant = get_runtime().store.tenant_for_key(key_hash(key)) if key else None
    return {"isAuthorized": tenant is not None, "context": {"tenant_id": tenant or ""}}
